"""The once-only resize cache: each image resized once (longest side ``image_size``, aspect kept, 8-bit
grayscale PNG) under ``cache/<image_size>px/``, keyed by the source file's content; records pointed at it
with their boxes and polygons scaled (:func:`resize_records`). :func:`resized_size` is the one resize rule,
shared with inference on new images.

Making a cache file is the one place where every image of a dataset is decoded in full (reading the dataset
only probes headers), so it is also where an image that cannot be decoded — damaged, or a JPEG cut short
before an end-of-image marker — is found: with ``problems`` it becomes a :class:`Problem` naming the file and
its record is left out, so training never sees it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

from bonetumor import paths
from bonetumor.data.btxrd.images import load_image
from bonetumor.data.btxrd.problems import DatasetError, Problem
from bonetumor.data.coco import scale_lesion
from bonetumor.io import atomic_path

_CACHE_VERSION = "v1"


def resized_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    """``(width, height)`` with the longest side ``image_size`` and the aspect kept."""
    scale = image_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_records(records: Sequence[dict], image_size: int, cache_dir: str | os.PathLike | None = None,
                   progress: bool = True, problems: list | None = None) -> list[dict]:
    """Each image resized once (longest side ``image_size``, aspect kept, 8-bit grayscale PNG) into the cache;
    new records point ``file`` at the cached image with scaled boxes and polygons.

    The cache file is ``<cache_dir>/<image_size>px/<key>.png`` where ``key`` hashes the source file's content
    (see :func:`_file_key`) and the cache version, so a second call finds it without decoding the original;
    a changed source file gets a new key. The original file and size are kept as ``orig_file``,
    ``orig_width`` and ``orig_height``.

    An image that cannot be decoded (or no longer has the record's shape) raises :class:`DatasetError`
    naming it; when a ``problems`` list is given, a :class:`Problem` (kind ``image``, the file relative to
    the dataset folder) is appended to it instead and the record is left out of the result.
    """
    if int(image_size) < 1:
        raise ValueError(f"image_size must be positive, not {image_size}")
    image_size = int(image_size)
    folder = Path(cache_dir if cache_dir is not None else paths.CACHE) / f"{image_size}px"
    folder.mkdir(parents=True, exist_ok=True)
    iterator: Iterable = records
    if progress:
        from bonetumor.progress import progress_bar

        iterator = progress_bar(records, desc=f"resize to {image_size}px", unit="image")
    out = []
    for rec in iterator:
        w, h = int(rec["width"]), int(rec["height"])
        nw, nh = resized_size(w, h, image_size)
        try:
            target = _cached_image(Path(rec["file"]), w, h, folder, image_size)
        except DatasetError as exc:
            if problems is None:
                raise
            problems.append(Problem(_dataset_relative(rec["file"]), f"{getattr(exc, 'reason', exc)}; image skipped",
                                    "image"))
            continue
        sx, sy = nw / w, nh / h
        new = dict(rec)
        new.update(file=str(target), width=nw, height=nh, orig_file=rec.get("orig_file", rec["file"]),
                   orig_width=rec.get("orig_width", w), orig_height=rec.get("orig_height", h))
        new.pop("exif_orientation", None)  # the cached pixels are already upright
        new["lesions"] = [scale_lesion(lesion, sx, sy) for lesion in rec["lesions"]]
        out.append(new)
    return out


def _cached_image(source: Path, w: int, h: int, folder: Path, image_size: int) -> Path:
    """The cache file of ``source`` (a ``w`` × ``h`` record) resized to longest side ``image_size``, written if
    missing."""
    try:
        key = hashlib.sha1(f"{_CACHE_VERSION}\0{_file_key(source)}".encode()).hexdigest()
    except OSError as exc:
        raise _ImageError(source, f"cannot read ({exc})") from exc
    target = folder / f"{key}.png"
    if not target.is_file():
        _, image = decode_resized(source, w, h, image_size)
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG")
    return target


def decode_resized(source: str | os.PathLike, w: int, h: int, image_size: int):
    """``(decoded, resized)``: the one way an image file becomes a model's input, shared by this cache and
    ``bonetumor predict``. ``source`` (``w`` × ``h`` as displayed, e.g. from
    :func:`~bonetumor.data.btxrd.images.probe_image`) is decoded by :func:`load_image` with ``max_side`` (a
    JPEG at a reduced scale that still serves ``image_size``; ``decoded`` is then smaller than ``w`` × ``h``)
    and resized with Lanczos to :func:`resized_size`. Raises :class:`DatasetError` naming the file when it
    cannot be decoded or its decoded shape is not ``w`` × ``h``'s."""
    source = Path(source)
    try:
        decoded = load_image(source, max_side=image_size)
    except DatasetError as exc:
        reason = str(exc)
        reason = reason[len(f"{source}: "):] if reason.startswith(f"{source}: ") else reason
        raise _ImageError(source, reason) from exc
    iw, ih = decoded.size
    if abs((iw / ih) / (w / h) - 1) > 0.05:  # e.g. an orientation the header did not show
        raise _ImageError(source, f"decoded image is {iw}x{ih}, not the shape of the record's {w}x{h} "
                                  "(was the file replaced after reading the dataset?)")
    from PIL import Image

    return decoded, decoded.resize(resized_size(w, h, image_size), Image.Resampling.LANCZOS)


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


class _ImageError(DatasetError):
    """One image of the cache cannot be made: ``file`` and ``reason`` (the message is ``file: reason``)."""

    def __init__(self, file: Path, reason: str):
        self.file, self.reason = file, reason
        super().__init__(f"{file}: {reason}")


def _dataset_relative(file: str | os.PathLike) -> str:
    """``file`` relative to its dataset folder (the parent of the ``images/`` folder holding it, as the
    reader's problems name files), else as given."""
    path = Path(file)
    for parent in path.parents:
        if parent.name.lower() == "images":
            return path.relative_to(parent.parent).as_posix()
    return str(path)
