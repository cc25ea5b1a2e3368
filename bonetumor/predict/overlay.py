"""Overlay PNGs of ``bonetumor predict``: the radiograph with each detection's mask filled semi-transparent,
its box and ``"<class> <score>"``; one file per image, named after it and written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from bonetumor.predict.images import OVERLAY_SUFFIX

#: Overlay colours (RGB) per class name.
COLOURS = {"benign": (40, 200, 80), "malignant": (230, 40, 40)}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow without a scalable default font
        return ImageFont.load_default()


def draw_overlay(image, detections: Sequence[dict], masks: Sequence[np.ndarray]):
    """RGB PIL image: ``image`` (grayscale PIL) with each detection's mask filled semi-transparent, its box
    and ``"<class> <score>"``. ``detections``: dicts with ``class``, ``score``, ``box`` (original pixels)."""
    from PIL import Image, ImageDraw

    base = image.convert("RGBA")
    width = max(2, round(max(image.size) / 300))
    font = _font(max(12, round(max(image.size) / 40)))
    for det, mask in zip(detections, masks):
        colour = COLOURS.get(det["class"], (255, 200, 0))
        layer = Image.new("RGBA", base.size, colour + (0,))
        alpha = Image.fromarray((np.asarray(mask, bool) * 96).astype(np.uint8), mode="L")
        layer.putalpha(alpha)
        base = Image.alpha_composite(base, layer)
    draw = ImageDraw.Draw(base)
    for det in detections:
        colour = COLOURS.get(det["class"], (255, 200, 0))
        x0, y0, x1, y1 = det["box"]
        draw.rectangle([x0, y0, x1, y1], outline=colour + (255,), width=width)
        text = f"{det['class']} {det['score']:.2f}"
        tx, ty = x0, max(0, y0 - font.size - 2 * width) if hasattr(font, "size") else max(0, y0 - 14)
        bbox = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle(bbox, fill=(0, 0, 0, 170))
        draw.text((tx, ty), text, fill=colour + (255,), font=font)
    return base.convert("RGB")


def overlay_name(file: Path, used: set[str]) -> str:
    """``<stem>_overlay.png``, or a variant not in ``used`` (two inputs with one stem); added to ``used``."""
    name = f"{file.stem}{OVERLAY_SUFFIX}"
    k = 2
    while name in used:
        name = f"{file.stem}_{file.suffix.lstrip('.')}{OVERLAY_SUFFIX}" if k == 2 else f"{file.stem}_{k}{OVERLAY_SUFFIX}"
        k += 1
    used.add(name)
    return name


def write_overlay(image, dets, masks, out_dir: Path, name: str) -> str:
    """Draw and write ``out_dir/name`` atomically; returns ``name``."""
    from bonetumor.io import atomic_path

    with atomic_path(out_dir / name) as tmp:
        draw_overlay(image, dets, masks).save(tmp, format="PNG")
    return name
