"""Reading one's own radiographs for the detector: the files to read (:func:`collect_images`) and a torch
Dataset (:class:`RadiographFiles`) whose items are the model's inputs, decoded and resized exactly as the
training images were — by :func:`bonetumor.data.btxrd.cache.decode_resized`, the resize cache's own function
(a JPEG decoded at a reduced scale when that still serves the model's size, then Lanczos to the longest side
``image_size``, aspect kept). :func:`image_loader` batches them with a torch DataLoader.

An item never raises: a file that cannot be read becomes an item whose ``error`` names it, so one bad file in
a folder of thousands (or in a DataLoader worker) does not stop the others."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from bonetumor.data.btxrd import IMAGE_SUFFIXES

#: Suffix of the overlay PNGs ``bonetumor predict`` writes (never taken as inputs).
OVERLAY_SUFFIX = "_overlay.png"


def collect_images(paths: Iterable[str | os.PathLike], outputs: str | os.PathLike | None = None) -> list[Path]:
    """The given files, and the image files (by suffix, sorted) directly inside any given folder. Paths that
    do not exist are kept, so that they are reported as errors rather than silently dropped. Overlays this
    command wrote before (``*_overlay.png`` inside the ``outputs`` folder) are never taken as inputs."""
    outputs = Path(outputs).resolve() if outputs is not None else None

    def is_output(f: Path) -> bool:
        return outputs is not None and f.name.endswith(OVERLAY_SUFFIX) and f.resolve().parent == outputs

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                              and not f.name.startswith(".") and not is_output(f)))
        else:
            out.append(p)
    return out


def read_image(file: str | os.PathLike):
    """An 8-bit grayscale PIL image in full (colour → luma, EXIF orientation applied); ``ValueError`` naming
    the file when it cannot be decoded."""
    from bonetumor.data.btxrd import load_image

    file = Path(file)
    if not file.is_file():
        raise ValueError(f"{file}: no such file")
    try:
        return load_image(file)
    except Exception as exc:  # DatasetError (a ValueError) names the file already; anything else: say so
        raise ValueError(_naming(file, exc)) from exc


def _naming(file: Path, exc: BaseException) -> str:
    """``exc``'s message on one line, prefixed with ``file`` unless it names it already."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if str(file) in msg else f"{file}: {msg}"


@dataclass
class LoadedImage:
    """One file ready for the model: ``tensor`` ``[3, h, w]`` in [0, 1] (grey on 3 channels), the
    ``original_size`` ``(W, H)`` boxes and masks are mapped back to, the ``model_size`` ``(w, h)``, and
    ``full`` (the grayscale PIL image at ``original_size``) when overlays are drawn. When the file could not
    be read, ``error`` names it and the other fields are ``None``."""

    index: int
    file: Path
    tensor: object = None
    original_size: tuple[int, int] | None = None
    model_size: tuple[int, int] | None = None
    full: object = None
    error: str | None = None


def load_for_model(file: str | os.PathLike, image_size: int, preprocess: bool | Callable = False,
                   keep_full: bool = False, index: int = 0) -> LoadedImage:
    """``file`` read and resized as the training images were (see the module docstring); raises
    ``ValueError`` naming the file when it cannot be read. ``keep_full``: also keep the image at its full
    size (decoded a second time only when the first decode was at a reduced scale)."""
    from bonetumor.data.btxrd.cache import decode_resized
    from bonetumor.data.btxrd.images import BadImage, probe_image

    file = Path(file)
    if not file.is_file():
        raise ValueError(f"{file}: no such file")
    try:
        width, height, _ = probe_image(file)
        decoded, small = decode_resized(file, width, height, image_size)
    except (BadImage, OSError, ValueError) as exc:
        raise ValueError(_naming(file, exc)) from exc
    full = None
    if keep_full:
        full = decoded if decoded.size == (width, height) else read_image(file)
    return LoadedImage(index, file, model_tensor(small, preprocess), (width, height), small.size, full)


def model_tensor(image, preprocess: bool | Callable = False):
    """A resized grayscale PIL image as the model's input: ``[3, h, w]`` float in [0, 1], grey replicated on 3
    channels; ``preprocess`` (``True`` → :func:`bonetumor.preprocess.preprocess_radiograph`, or a callable on
    the ``[h, w]`` array) applied first, as the run's Dataset applied it."""
    import torch

    gray = np.asarray(image, dtype=np.float32) / 255.0
    if preprocess:
        from bonetumor.preprocess import preprocess_radiograph

        fn = preprocess_radiograph if preprocess is True else preprocess
        gray = np.asarray(fn(gray), dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(gray)).clamp(0, 1)[None].expand(3, -1, -1).contiguous()


def preprocess_as_cached(gray: np.ndarray) -> np.ndarray:
    """The paper's Figure 4b preprocessing (:func:`bonetumor.preprocess.preprocess_radiograph`) rounded to
    8 bits, as :mod:`bonetumor.preprocess.cache` stores it for a run trained with ``data.preprocess``: the
    input such a run was trained on."""
    from bonetumor.preprocess import preprocess_radiograph

    return np.round(np.asarray(preprocess_radiograph(gray), dtype=np.float64) * 255) / 255


class RadiographFiles:
    """A map-style torch Dataset of image files: item ``i`` is :func:`load_for_model` of ``files[i]``, or a
    :class:`LoadedImage` carrying the ``error`` when the file cannot be read (never an exception)."""

    def __init__(self, files: Sequence[str | os.PathLike], image_size: int, preprocess: bool | Callable = False,
                 keep_full: bool = False):
        self.files = [Path(f) for f in files]
        self.image_size, self.preprocess, self.keep_full = int(image_size), preprocess, keep_full

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> LoadedImage:
        file = self.files[i]
        try:
            return load_for_model(file, self.image_size, self.preprocess, self.keep_full, index=i)
        except Exception as exc:  # one bad image must not stop the others (nor a DataLoader worker)
            return LoadedImage(i, file, error=_naming(file, exc))


def image_loader(files: Sequence[str | os.PathLike], image_size: int, preprocess: bool | Callable = False,
                 keep_full: bool = False, batch_size: int = 1, workers: int = 0):
    """A torch DataLoader over :class:`RadiographFiles` in the files' order, yielding lists of
    :class:`LoadedImage` (``batch_size`` at most; images of different sizes are batched as torchvision's
    detection models batch them). ``workers`` > 0 reads in that many processes (``preprocess`` must then be
    picklable)."""
    from torch.utils.data import DataLoader

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if int(workers) < 0:
        raise ValueError(f"workers must be 0 or more, not {workers}")
    return DataLoader(RadiographFiles(files, image_size, preprocess, keep_full), batch_size=int(batch_size),
                      shuffle=False, num_workers=int(workers), collate_fn=list)
