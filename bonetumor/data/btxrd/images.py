"""Image files of the BTXRD layout: the header probe used while reading (size as displayed, EXIF orientation,
truncation; no pixels decoded) and :func:`load_image`, which decodes the pixels in the frame LabelMe
annotates in (EXIF orientation applied) as 8-bit grayscale.

Any format Pillow reads is accepted, whatever the file's suffix says (a PNG saved as ``.jpeg`` is read as a
PNG): JPEG, PNG, TIFF and BMP among others, in any bit depth and mode (grayscale, palette, RGB, with or
without alpha, 1-bit, 16-bit). A file that cannot be read is named with the reason: unidentifiable, damaged,
truncated, or larger than Pillow's decompression-bomb limit (:data:`PIL.Image.MAX_IMAGE_PIXELS`).

**Orientation.** The EXIF orientation is read from the header only, and the same function
(:func:`_orientation`) serves the probe and :func:`load_image`, so the size a record gets and the pixels
decoded for it always agree. (A PNG whose ``eXIf`` chunk follows its pixel data is read as stored: finding
that chunk would mean decoding the image.)

**Truncation.** The probe checks a JPEG's end-of-image marker and lets Pillow verify other formats'
structure; :func:`load_image` decodes everything. A JPEG cut in the middle but ending in an end-of-image
marker decodes without any error in libjpeg (which fills the missing part with grey, with a warning Pillow
does not pass on); so for a single-scan JPEG :func:`load_image` decodes the scan data *without* the final
marker (followed by a few zero bytes, so the decoder's look-ahead past the last code is served as the
marker would serve it): complete data decodes to exactly the same pixels, cut data runs short and is
reported as truncated. (Progressive JPEGs are decoded as they are; there the check is the marker only.)
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path

import numpy as np

from bonetumor.data.btxrd.problems import DatasetError

#: Pillow's format names of JPEG files (an MPO is a JPEG with extra frames).
JPEG_FORMATS = ("JPEG", "MPO")
#: Integer modes with 16 bits per pixel: scaled to 8 bits over their full range (65535 → 255).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: Modes without a fixed range (32-bit integer, float): stretched linearly from their minimum to maximum.
UNBOUNDED_MODES = ("I", "F")
#: Bytes after a single-scan JPEG's data, in place of its end marker, for the decoder's look-ahead.
_LOOKAHEAD = b"\0" * 8
# A marker inside entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a restart marker or fill.
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Start-of-frame markers of sequential (single- or multi-scan) and progressive JPEGs
_SEQUENTIAL_SOF = (0xC0, 0xC1)


class BadImage(Exception):
    """The file is not a usable image (the message says why)."""


def probe_image(path: Path) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) from the header, oriented as displayed; raises :class:`BadImage`.

    A JPEG's end-of-image marker is checked to catch truncated files; other formats are verified by PIL
    (its own open, since ``verify()`` must come directly after opening). No pixels are decoded.
    """
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size == 0:
        raise BadImage("empty file")
    try:
        with Image.open(path) as im:
            width, height = im.size
            fmt = im.format
            orientation = _orientation(im)
        if fmt not in JPEG_FORMATS:
            with Image.open(path) as im:
                im.verify()
    except UnidentifiedImageError:
        raise BadImage("not a readable image (PIL cannot identify it)") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"too large to decode safely: {_first_line(exc)}") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, struct.error, ...) for damage
        raise BadImage(f"unreadable image ({type(exc).__name__}: {_first_line(exc)})") from None
    if width < 1 or height < 1:
        raise BadImage(f"image has size {width}x{height}")
    if fmt in JPEG_FORMATS:
        with open(path, "rb") as handle:
            handle.seek(max(0, size - 4096))
            if b"\xff\xd9" not in handle.read():
                raise BadImage("truncated JPEG (no end-of-image marker)")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height, orientation


def _orientation(im) -> int:
    """The EXIF orientation (1–8) found in ``im``'s header without decoding pixels; 1 when there is none, it
    is damaged or out of range."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1  # Pillow would decode the whole image to look for an eXIf chunk after the pixels
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # a damaged EXIF block does not make the pixels unreadable
        return 1
    return orientation if orientation in range(1, 9) else 1


def _transposed(im, orientation: int):
    """``im`` turned from its stored frame into the displayed one (as :func:`PIL.ImageOps.exif_transpose`)."""
    from PIL import Image

    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}.get(orientation)
    return im.transpose(method) if method is not None else im


def _gray8(im):
    """``im`` as 8-bit grayscale (``L``): 16-bit integers scaled over their full range, 32-bit integers and
    floats stretched from their minimum to their maximum, every other mode converted by Pillow (alpha
    dropped, palette and colour to luminance)."""
    from PIL import Image

    if im.mode in SIXTEEN_BIT_MODES + UNBOUNDED_MODES:
        arr = np.asarray(im).astype(np.float64)
        if im.mode in SIXTEEN_BIT_MODES:
            arr = arr / 257.0  # 0..65535 → 0..255, exactly inverting an 8-bit value × 257
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), mode="L")
    return im.convert("L")


def _single_scan_end(data: bytes) -> int | None:
    """The offset of the end-of-image marker that closes a sequential JPEG's one scan, or ``None`` when the
    data is not laid out so (progressive, several scans, damaged headers): see the module docstring."""
    pos, n, sequential = 2, len(data), False
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sequential = marker in _SEQUENTIAL_SOF
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            if not sequential:
                return None
            found = _MARKER.search(data, pos + 2 + length)
            return found.start() if found is not None and data[found.start() + 1] == 0xD9 else None
        pos += 2 + length
    return None


def load_image(file: str | os.PathLike, max_side: int | None = None):
    """An image as an 8-bit grayscale PIL image, EXIF orientation applied (the frame LabelMe annotates in).

    With ``max_side``, a JPEG is decoded at a reduced scale (PIL ``draft``) no smaller than needed for a longest
    side of ``max_side``; the caller still resizes exactly. Every pixel is decoded; a file that cannot be
    (damaged, truncated — also a JPEG cut short before an end-of-image marker —, or too large) raises
    :class:`DatasetError` naming it.
    """
    from PIL import Image

    try:
        source, strict = _source(Path(file))
        with Image.open(source) as im:
            orientation = _orientation(im)
            if max_side and im.format in JPEG_FORMATS:
                w, h = im.size
                scale = max_side / max(w, h)
                if scale < 1:
                    im.draft("L", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
            try:
                im.load()
            except OSError as exc:
                if strict and "truncated" in str(exc):
                    raise DatasetError(f"{file}: truncated JPEG: its image data stops before the last row "
                                       "(an end-of-image marker follows the cut)") from exc
                raise
            return _gray8(_transposed(im, orientation))
    except DatasetError:
        raise
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{file}: too large to decode safely: {_first_line(exc)}") from exc
    except Exception as exc:  # Pillow raises many types for damaged files
        raise DatasetError(f"{file}: cannot decode the image ({type(exc).__name__}: {_first_line(exc)})") from exc


def _source(path: Path):
    """What to hand to ``Image.open``: a single-scan JPEG's data without its end marker (see the module
    docstring) and ``True``, else the path and ``False``."""
    with open(path, "rb") as handle:
        if handle.read(2) != b"\xff\xd8":
            return path, False
        data = b"\xff\xd8" + handle.read()
    end = _single_scan_end(data)
    if end is None:
        return io.BytesIO(data), False
    return io.BytesIO(data[:end] + _LOOKAHEAD), True


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters (messages are one line)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"
