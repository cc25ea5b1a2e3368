"""The torch Dataset: records → ``(image, target)`` in torchvision's detection contract, with paired
augmentations that move image, boxes and masks together.

Contract (what ``torchvision.models.detection.MaskRCNN`` takes in training):

* ``image``: float32 tensor [3, H, W] in [0, 1] — the grayscale radiograph repeated on three channels;
* ``target``: ``boxes`` float32 [N, 4] (XYXY, pixels), ``labels`` int64 [N] (1 benign, 2 malignant,
  :data:`bonetumor.LABEL_TO_ID`), ``masks`` uint8 [N, H, W], ``image_id`` (int), ``area`` float32 [N]
  (mask pixels), ``iscrowd`` int64 [N] (zeros). A normal image has N = 0, with the same ranks.

Records already point at images at the model's size (the resize cache), so nothing is resized here; a
file whose size disagrees with its record's ``width``/``height`` is an error (its annotations would not fit).
Pixels are read in ``__getitem__`` (PIL), so a DataLoader with ``num_workers > 0`` works; use
:func:`collate_fn` and, for reproducible augmentation, seed with ``torch.manual_seed`` (or the loader's
``generator``) and pass :func:`seed_worker` as ``worker_init_fn``.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from bonetumor import LABEL_TO_ID
from bonetumor.preprocess import preprocess_radiograph, read_grayscale

__all__ = ["BoneTumourDataset", "PairedAugment", "LesionCentredCrop", "collate_fn", "seed_worker", "lesion_polygons",
           "rasterise_lesion", "boxes_from_masks"]


def lesion_polygons(lesion: dict) -> list[list[float]]:
    """The lesion's polygons with at least 3 points; its box as a rectangle when it has none."""
    polygons = [[float(v) for v in p] for p in lesion.get("polygons") or () if len(p) >= 6]
    if not polygons:
        if lesion.get("box") is None:
            raise ValueError(f"lesion has neither a polygon nor a box: {lesion}")
        x0, y0, x1, y1 = (float(v) for v in lesion["box"])
        polygons = [[x0, y0, x1, y0, x1, y1, x0, y1]]
    return polygons


def rasterise_lesion(lesion: dict, height: int, width: int) -> np.ndarray:
    """uint8 (H, W) mask of one lesion: the union of its polygons (or its box), rasterised by pycocotools,
    the same rasteriser the COCO evaluation uses, so training targets and test ground truth are one mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.merge(mask_utils.frPyObjects(lesion_polygons(lesion), height, width))
    return mask_utils.decode(rle).astype(np.uint8)


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (float32 [N, 4]) of binary masks [N, H, W]: ``[x_min, y_min, x_max + 1, y_max + 1]``
    in pixel-edge coordinates (an empty mask gives zeros)."""
    n = masks.shape[0]
    out = torch.zeros((n, 4), dtype=torch.float32)
    for k in range(n):
        ys, xs = torch.nonzero(masks[k], as_tuple=True)
        if len(xs):
            out[k] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    return out


#: Keyword arguments of :class:`PairedAugment` for each ``train.augment_strength``.
AUGMENT_STRENGTHS = {
    "standard": {},
    "strong": {"degrees": 20.0, "scale": (0.7, 1.4), "translate": (0.1, 0.1), "brightness": 0.4, "contrast": 0.4},
}


def class_balanced_sampler(records: Sequence[dict], generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """Draws ``len(records)`` training images a pass, with replacement, each with weight ``1 / (images of its
    class)`` (``record["label"]``: normal, benign, malignant), so every class present comes equally often —
    the rare malignant images several times an epoch, the common ones not every epoch."""
    labels = [r["label"] for r in records]
    if not labels:
        raise ValueError("class-balanced sampling needs at least one training image")
    counts = Counter(labels)
    weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)


class PairedAugment:
    """Training augmentation applied to image and target together (``torchvision.transforms.v2`` on
    ``tv_tensors``): horizontal flip (p = ``flip``), a small affine (rotation ±``degrees``, scale
    ``scale``, translation up to ``translate`` of the size; bilinear for the image, nearest for masks,
    zero fill) and brightness/contrast jitter (image only).

    After the geometric steps boxes are re-derived from the transformed masks (a rotated rectangle's
    enclosing box would be loose), and lesions with fewer than ``min_area`` mask pixels left in the image
    (or, for a lesion smaller than ``2 × min_area``, under half of its pixels) are dropped from boxes,
    labels and masks together. Randomness comes from torch's global generator, so
    ``torch.manual_seed`` (and DataLoader worker seeding) makes it reproducible.
    """

    def __init__(self, flip: float = 0.5, degrees: float = 10.0, scale: tuple[float, float] = (0.9, 1.1),
                 translate: tuple[float, float] = (0.05, 0.05), brightness: float = 0.2, contrast: float = 0.2,
                 min_area: int = 16):
        self.geometric = v2.Compose([
            v2.RandomHorizontalFlip(p=flip),
            v2.RandomAffine(degrees=degrees, translate=translate, scale=scale,
                            interpolation=v2.InterpolationMode.BILINEAR, fill=0),
        ])
        self.photometric = v2.ColorJitter(brightness=brightness, contrast=contrast)
        self.min_area = int(min_area)

    def __call__(self, image: tv_tensors.Image, target: dict) -> tuple[tv_tensors.Image, dict]:
        before = target["masks"].flatten(1).sum(1).float()
        image, target = self.geometric(image, target)
        image = self.photometric(image).clamp_(0.0, 1.0)
        return image, _keep_lesions(image, target, before, self.min_area)

    def __repr__(self) -> str:
        return f"PairedAugment({self.geometric}, {self.photometric}, min_area={self.min_area})"


def _keep_lesions(image: tv_tensors.Image, target: dict, before: torch.Tensor, min_area: int) -> dict:
    """``target`` without the lesions that a crop or a geometric transform left with fewer than ``min_area``
    mask pixels (or, for a lesion smaller than ``2 × min_area``, under half of its ``before`` pixels); boxes
    re-derived from the masks left."""
    masks = target["masks"]
    after = masks.flatten(1).sum(1).float()
    keep = (after >= torch.clamp(before / 2, max=float(min_area))) & (after > 0)
    masks = masks[keep]
    out = dict(target)
    out["masks"] = tv_tensors.Mask(masks)
    out["labels"] = target["labels"][keep]
    out["boxes"] = tv_tensors.BoundingBoxes(boxes_from_masks(masks), format="XYXY",
                                            canvas_size=tuple(image.shape[-2:]))
    return out


class LesionCentredCrop:
    """A ``size``×``size`` training crop (smaller sides are kept whole): on an image with lesions, around one
    of them chosen at random, placed at a random position such that the lesion's box lies inside the crop
    when it fits; on a normal image, anywhere. Lesions the crop cuts down below ``min_area`` pixels are
    dropped as in :class:`PairedAugment`. Seen at full resolution, a lesion covers more pixels than in a
    whole image shrunk to the same cost, and every tumour crop carries a positive; the rest of the crop and
    the normal images' crops are the negatives. Randomness comes from torch's global generator."""

    def __init__(self, size: int, min_area: int = 16):
        if size < 1:
            raise ValueError(f"crop size must be positive, got {size}")
        self.size = int(size)
        self.min_area = int(min_area)

    @staticmethod
    def _start(low: float, high: float, length: int, extent: int) -> int:
        """A random start in ``[0, extent - length]`` such that ``[low, high)`` lies inside the window where
        it fits (its centre does otherwise)."""
        last = extent - length
        if high - low > length:
            low = high = (low + high) / 2
        lo, hi = max(0, int(np.ceil(high)) - length), min(last, int(np.floor(low)))
        if lo > hi:
            lo = hi = min(max(0, int(round((low + high) / 2 - length / 2))), last)
        return int(torch.randint(lo, hi + 1, ()).item())

    def __call__(self, image: tv_tensors.Image, target: dict) -> tuple[tv_tensors.Image, dict]:
        height, width = image.shape[-2:]
        crop_h, crop_w = min(self.size, height), min(self.size, width)
        boxes = target["boxes"].as_subclass(torch.Tensor)
        if len(boxes):
            x0, y0, x1, y1 = boxes[int(torch.randint(len(boxes), ()).item())].tolist()
            top = self._start(y0, y1, crop_h, height)
            left = self._start(x0, x1, crop_w, width)
        else:
            top = int(torch.randint(height - crop_h + 1, ()).item())
            left = int(torch.randint(width - crop_w + 1, ()).item())
        before = target["masks"].flatten(1).sum(1).float()
        image = v2.functional.crop(image, top, left, crop_h, crop_w)
        target = {**target, "masks": v2.functional.crop(target["masks"], top, left, crop_h, crop_w)}
        return image, _keep_lesions(image, target, before, self.min_area)  # boxes from the cropped masks

    def __repr__(self) -> str:
        return f"LesionCentredCrop({self.size}, min_area={self.min_area})"


class BoneTumourDataset(torch.utils.data.Dataset):
    """Records → ``(image, target)`` for torchvision's Mask R-CNN (see the module docstring for shapes).

    ``train``: default for ``augment``. ``augment``: ``None`` → :class:`PairedAugment` when ``train``, else
    none; ``True``/``False`` force it on/off; or any callable ``(tv_tensors.Image [1,H,W], target) →
    (image, target)`` that keeps ``boxes`` (BoundingBoxes), ``labels`` and ``masks`` (Mask) consistent.
    ``preprocess``: ``False``; ``True`` → :func:`bonetumor.preprocess.preprocess_radiograph` (the paper's
    normalisation and denoising, step 1.1) on the grayscale image before augmentation; or a callable
    ``(H, W) float32 → (H, W) float32 in [0, 1]``. ``crop``: ``None`` or a callable like ``augment``,
    applied before it (:class:`LesionCentredCrop` for ``train.crop_size``).

    Masks are the union of each lesion's polygons; boxes are always the masks' tight bounds — with or
    without augmentation, and in the evaluation's ground truth (:mod:`bonetumor.data.coco`) — so the model is
    scored against the boxes it was taught. BTXRD's annotator rectangles stay in the records.
    """

    def __init__(self, records: Sequence[dict], train: bool = False, augment: bool | Callable | None = None,
                 preprocess: bool | Callable = False, crop: Callable | None = None):
        self.records = list(records)
        self.train = bool(train)
        self.crop = crop
        if augment is None:
            augment = self.train
        if augment is True:
            self.augment: Callable | None = PairedAugment()
        elif augment is False:
            self.augment = None
        elif callable(augment):
            self.augment = augment
        else:
            raise TypeError(f"augment must be None, a bool or a callable, not {type(augment).__name__}")
        if preprocess is True:
            self.preprocess: Callable | None = preprocess_radiograph
        elif preprocess is False or preprocess is None:
            self.preprocess = None
        elif callable(preprocess):
            self.preprocess = preprocess
        else:
            raise TypeError(f"preprocess must be a bool or a callable, not {type(preprocess).__name__}")

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, rec: dict) -> np.ndarray:
        gray = read_grayscale(rec["file"])
        height, width = gray.shape
        expected = (rec.get("height"), rec.get("width"))
        if None not in expected and (int(expected[0]), int(expected[1])) != (height, width):
            raise ValueError(f"{rec['file']} is {width}×{height} px but its record says "
                             f"{expected[1]}×{expected[0]}: annotations would not match the pixels")
        return gray

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        rec = self.records[index]
        gray = self._read(rec)
        if self.preprocess is not None:
            gray = np.asarray(self.preprocess(gray), dtype=np.float32)
        height, width = gray.shape
        lesions = rec.get("lesions") or []
        masks = np.zeros((len(lesions), height, width), dtype=np.uint8)
        boxes = np.zeros((len(lesions), 4), dtype=np.float32)
        labels = np.zeros(len(lesions), dtype=np.int64)
        for k, lesion in enumerate(lesions):
            masks[k] = rasterise_lesion(lesion, height, width)
            category = lesion.get("category") or rec["label"]
            labels[k] = LABEL_TO_ID[category]
        # the tight bounds of each mask, as after augmentation and in the evaluation's ground truth
        boxes = boxes_from_masks(torch.from_numpy(masks)).numpy() if len(lesions) else boxes

        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[None])
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(height, width)),
            "labels": torch.from_numpy(labels),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
        }
        if self.crop is not None:
            image, target = self.crop(image, target)
        if self.augment is not None:
            image, target = self.augment(image, target)

        masks_t = target["masks"].as_subclass(torch.Tensor).to(torch.uint8)
        image_t = image.as_subclass(torch.Tensor).to(torch.float32).clamp(0.0, 1.0)
        image_t = image_t.expand(3, -1, -1).contiguous() if image_t.shape[0] == 1 else image_t
        n = masks_t.shape[0]
        return image_t, {
            "boxes": target["boxes"].as_subclass(torch.Tensor).to(torch.float32).reshape(n, 4),
            "labels": target["labels"].as_subclass(torch.Tensor).to(torch.int64).reshape(n),
            "masks": masks_t.reshape(n, *image_t.shape[-2:]),
            "image_id": int(rec["image_id"]),
            "area": masks_t.flatten(1).sum(1).to(torch.float32) if n else torch.zeros(0, dtype=torch.float32),
            "iscrowd": torch.zeros(n, dtype=torch.int64),
        }

    def __repr__(self) -> str:
        return (f"BoneTumourDataset({len(self)} images, train={self.train}, augment={self.augment!r}, "
                f"preprocess={getattr(self.preprocess, '__name__', self.preprocess)!r})")


def collate_fn(batch):
    """Keep images (of possibly different sizes) and targets as tuples: ``(images, targets)``."""
    return tuple(zip(*batch))


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader: seed Python's and numpy's generators from the worker's torch seed.

    DataLoader already seeds torch in each worker with ``base_seed + worker_id``, ``base_seed`` drawn from
    the main process's generator (``torch.manual_seed`` or the loader's ``generator``), so the torch-based
    augmentation is reproducible; this makes any numpy/``random`` use in custom transforms so too."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
