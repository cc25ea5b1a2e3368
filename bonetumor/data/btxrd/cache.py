"""The once-only resize cache: each image resized once (longest side ``image_size``, aspect kept, 8-bit
grayscale PNG) under ``cache/<image_size>px/``, keyed by the source file's content; records pointed at it
with their boxes and polygons scaled (:func:`resize_records`). :func:`resized_size` is the one resize rule,
shared with inference on new images."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

from bonetumor import paths
from bonetumor.data.btxrd.images import load_image
from bonetumor.data.btxrd.problems import DatasetError
from bonetumor.data.coco import scale_lesion
from bonetumor.io import atomic_path

_CACHE_VERSION = "v1"


def resized_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    """``(width, height)`` with the longest side ``image_size`` and the aspect kept."""
    scale = image_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_records(records: Sequence[dict], image_size: int, cache_dir: str | os.PathLike | None = None,
                   progress: bool = True) -> list[dict]:
    """Each image resized once (longest side ``image_size``, aspect kept, 8-bit grayscale PNG) into the cache;
    new records point ``file`` at the cached image with scaled boxes and polygons.

    The cache file is ``<cache_dir>/<image_size>px/<key>.png`` where ``key`` hashes the source file's content
    (see :func:`_file_key`) and the cache version, so a second call finds it without decoding the original;
    a changed source file gets a new key. The original file and size are kept as ``orig_file``,
    ``orig_width`` and ``orig_height``.
    """
    if int(image_size) < 1:
        raise ValueError(f"image_size must be positive, not {image_size}")
    image_size = int(image_size)
    folder = Path(cache_dir if cache_dir is not None else paths.CACHE) / f"{image_size}px"
    folder.mkdir(parents=True, exist_ok=True)
    iterator: Iterable = records
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(records, desc=f"resize to {image_size}px", unit="image")
    out = []
    for rec in iterator:
        w, h = int(rec["width"]), int(rec["height"])
        nw, nh = resized_size(w, h, image_size)
        target = _cached_image(Path(rec["file"]), w, h, nw, nh, folder, image_size)
        sx, sy = nw / w, nh / h
        new = dict(rec)
        new.update(file=str(target), width=nw, height=nh, orig_file=rec.get("orig_file", rec["file"]),
                   orig_width=rec.get("orig_width", w), orig_height=rec.get("orig_height", h))
        new.pop("exif_orientation", None)  # the cached pixels are already upright
        new["lesions"] = [scale_lesion(lesion, sx, sy) for lesion in rec["lesions"]]
        out.append(new)
    return out


def _cached_image(source: Path, w: int, h: int, nw: int, nh: int, folder: Path, image_size: int) -> Path:
    """The cache file of ``source`` (a ``w`` × ``h`` record) resized to ``nw`` × ``nh``, written if missing."""
    try:
        key = hashlib.sha1(f"{_CACHE_VERSION}\0{_file_key(source)}".encode()).hexdigest()
    except OSError as exc:
        raise DatasetError(f"{source}: cannot read ({exc})") from exc
    target = folder / f"{key}.png"
    if not target.is_file():
        image = load_image(source, max_side=image_size)
        iw, ih = image.size
        if abs((iw / ih) / (w / h) - 1) > 0.05:  # e.g. an orientation the header did not show
            raise DatasetError(f"{source}: decoded image is {iw}x{ih}, not the shape of the record's {w}x{h} "
                               "(was the file replaced after reading the dataset?)")
        from PIL import Image

        image = image.resize((nw, nh), Image.Resampling.LANCZOS)
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG")
    return target


def _file_key(path: Path) -> str:
    """SHA-1 of the file's size and bytes (head and tail 1 MiB for larger files): content, not mtime."""
    size = path.stat().st_size
    digest = hashlib.sha1(f"{size}\0".encode())
    with open(path, "rb") as handle:
        if size <= 2 << 20:
            digest.update(handle.read())
        else:
            digest.update(handle.read(1 << 20))
            handle.seek(size - (1 << 20))
            digest.update(handle.read())
    return digest.hexdigest()
