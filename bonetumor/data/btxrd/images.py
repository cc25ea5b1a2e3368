"""Image files of the BTXRD layout: the header probe used while reading (size as displayed, EXIF orientation,
truncation; no pixels decoded) and :func:`load_image`, which decodes the pixels in the frame LabelMe
annotates in (EXIF orientation applied)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from bonetumor.data.btxrd.problems import DatasetError


class BadImage(Exception):
    """The file is not a usable image (the message says why)."""


def probe_image(path: Path) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) from the header, oriented as displayed; raises :class:`BadImage`.

    A JPEG's end-of-image marker is checked to catch truncated files; other formats are verified by PIL.
    """
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size == 0:
        raise BadImage("empty file")
    try:
        with Image.open(path) as im:
            width, height = im.size
            fmt = im.format
            try:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # a damaged EXIF block does not make the pixels unreadable
                orientation = 1
            if fmt not in ("JPEG", "MPO"):
                im.verify()
    except UnidentifiedImageError:
        raise BadImage("not a readable image (PIL cannot identify it)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"unreadable image ({type(exc).__name__}: {exc})") from None
    if width < 1 or height < 1:
        raise BadImage(f"image has size {width}x{height}")
    if fmt in ("JPEG", "MPO"):
        with open(path, "rb") as handle:
            handle.seek(max(0, size - 4096))
            if b"\xff\xd9" not in handle.read():
                raise BadImage("truncated JPEG (no end-of-image marker)")
    if orientation not in range(1, 9):
        orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height, orientation


def load_image(file: str | os.PathLike, max_side: int | None = None):
    """An image as an 8-bit grayscale PIL image, EXIF orientation applied (the frame LabelMe annotates in).

    With ``max_side``, a JPEG is decoded at a reduced scale (PIL ``draft``) no smaller than needed for a longest
    side of ``max_side``; the caller still resizes exactly.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(file) as im:
            if max_side and im.format in ("JPEG", "MPO"):
                w, h = im.size
                scale = max_side / max(w, h)
                if scale < 1:
                    im.draft("L", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
                return Image.fromarray(np.round(arr).astype(np.uint8), mode="L")
            return im.convert("L")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{file}: cannot decode the image ({type(exc).__name__}: {exc})") from exc
