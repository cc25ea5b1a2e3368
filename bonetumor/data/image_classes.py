"""Records → ``(image, class)`` for the whole-image classifiers Table 2 compares against: the detector's own
dataset (:class:`bonetumor.data.dataset.BoneTumourDataset`: the same cached images, the same optional
preprocessing and the same training augmentation), each image scaled so its longest side is ``size`` and
padded with black to a ``size × size`` square, with its image class (0 normal, 1 benign, 2 malignant)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from bonetumor import IMAGE_LABELS
from bonetumor.data.dataset import BoneTumourDataset

#: Class index of each image label: the order of :data:`bonetumor.IMAGE_LABELS` (normal, benign, malignant).
CLASS_INDEX = {label: k for k, label in enumerate(IMAGE_LABELS)}


def letterbox(image: torch.Tensor, size: int) -> torch.Tensor:
    """``(C, H, W)`` → ``(C, size, size)``: scaled (antialiased) so the longest side is ``size``, then padded
    with zeros on the right and bottom."""
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    if scale != 1:
        new = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = F.interpolate(image[None], size=new, mode="bilinear", antialias=True, align_corners=False)[0]
    return F.pad(image, (0, size - image.shape[-1], 0, size - image.shape[-2]))


class ImageClassDataset(torch.utils.data.Dataset):
    """``(image [1, size, size] float32 in [0, 1], class index)`` per record; ``train`` turns on the
    detector's augmentation (flip, small affine, brightness/contrast)."""

    def __init__(self, records: Sequence[dict], size: int, train: bool = False, preprocess: bool = False):
        unknown = sorted({str(r.get("label")) for r in records} - set(CLASS_INDEX))
        if unknown:
            raise ValueError(f"records with labels {unknown}: expected {', '.join(CLASS_INDEX)}")
        self.images = BoneTumourDataset(records, train=train, preprocess=preprocess)
        self.records = self.images.records
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, _ = self.images[index]
        return letterbox(image[:1], self.size), CLASS_INDEX[self.records[index]["label"]]

    def labels(self) -> list[int]:
        return [CLASS_INDEX[r["label"]] for r in self.records]
