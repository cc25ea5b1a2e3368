"""Label-free objects in phantom v2's images, as :func:`~bonetumor.data.phantom.plan_v2.distractors` planned
them (independently of the class): *lead* objects that go through the detector like bone, only far denser
(a laterality letter R/L, a radiopaque ruler, a calibration ball or an arrow), and objects *burnt in* after
processing (a letter, a block of text lines). Strokes are drawn with Pillow, which is deterministic."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

#: Letter strokes in a unit box (x right, y down).
GLYPHS = {"R": [[(0, 1), (0, 0), (0.65, 0), (0.85, 0.12), (0.85, 0.38), (0.65, 0.5), (0, 0.5)], [(0.4, 0.5), (0.9, 1)]],
          "L": [[(0, 0), (0, 1), (0.75, 1)]]}
LEAD_MU = 4.0  # μ·t of a lead marker: far above any bone, so it shows white


def _layer(shape, paint) -> np.ndarray:
    """A float mask (0–1) of what ``paint(draw, W, H)`` draws on an empty canvas of ``shape``."""
    H, W = shape
    im = Image.new("L", (W, H), 0)
    paint(ImageDraw.Draw(im), W, H)
    return np.asarray(im, np.float32) / 255.0


def _letter(letter, xy, size):
    """Painter of a letter of height ``size`` (fraction of the shorter side) centred at ``xy`` (fractions)."""
    def paint(draw, W, H):
        h = size * min(W, H)
        x0, y0 = xy[0] * W - 0.45 * h, xy[1] * H - 0.5 * h
        width = max(1, int(round(0.14 * h)))
        for stroke in GLYPHS[letter]:
            draw.line([(x0 + px * 0.9 * h, y0 + py * h) for px, py in stroke], fill=255, width=width, joint="curve")
    return paint


def _ruler(spec):
    """Painter of a ruler along an edge: a strip with a tick every ``tick`` and a long tick every fifth."""
    def paint(draw, W, H):
        vertical = spec["edge"] in ("left", "right")
        side, along = (W, H) if vertical else (H, W)
        off = spec["offset"] * side if spec["edge"] in ("left", "top") else (1 - spec["offset"]) * side
        a0, a1 = spec["start"] * along, min(along, (spec["start"] + spec["length"]) * along)
        step, k, a = max(spec["tick"] * along, 3.0), 0, a0
        line = max(1, int(round(0.004 * min(W, H))))
        while a <= a1:
            n = (0.035 if k % 5 == 0 else 0.018) * min(W, H)
            seg = [(off, a), (off + n, a)] if vertical else [(a, off), (a, off + n)]
            draw.line(seg, fill=255, width=line)
            a, k = a + step, k + 1
        draw.line([(off, a0), (off, a1)] if vertical else [(a0, off), (a1, off)], fill=255, width=line)
    return paint


def _marker(spec):
    """Painter of a calibration ball (a disc) or an arrow."""
    def paint(draw, W, H):
        cx, cy, s = spec["xy"][0] * W, spec["xy"][1] * H, spec["size"] * min(W, H)
        if spec["kind"] == "ball":
            draw.ellipse([cx - s, cy - s, cx + s, cy + s], fill=255)
            return
        c, d = math.cos(spec["angle"]), math.sin(spec["angle"])
        tip, tail = (cx + 1.5 * s * c, cy + 1.5 * s * d), (cx - 1.5 * s * c, cy - 1.5 * s * d)
        draw.line([tail, tip], fill=255, width=max(1, int(0.25 * s)))
        draw.polygon([tip, (tip[0] - s * c + 0.6 * s * d, tip[1] - s * d - 0.6 * s * c),
                      (tip[0] - s * c - 0.6 * s * d, tip[1] - s * d + 0.6 * s * c)], fill=255)
    return paint


def _text(spec, rng: np.random.Generator):
    """Painter of burnt-in text: lines of word-like bars (patient data, dates)."""
    words = [[float(rng.uniform(0.2, 1.0)) for _ in range(int(rng.integers(2, 6)))] for _ in range(spec["lines"])]

    def paint(draw, W, H):
        h = 0.022 * min(W, H)
        x, y = spec["xy"][0] * W, spec["xy"][1] * H
        for k, line in enumerate(words):
            pos = x
            for length in line:
                wlen = length * spec["width"] * W / 4
                draw.rectangle([pos, y + k * 1.6 * h, pos + wlen, y + k * 1.6 * h + h], fill=255)
                pos += wlen + 0.6 * h
    return paint


def add_lead(A: np.ndarray, plan: dict) -> np.ndarray:
    """``A`` with the plan's lead objects (letter unless burnt in, ruler, marker) added as dense ``μ·t``."""
    painters = []
    if plan["letter"] and not plan["letter_burnt"]:
        painters.append(_letter(plan["letter"], plan["letter_xy"], plan["letter_size"]))
    if plan["ruler"]:
        painters.append(_ruler(plan["ruler"]))
    if plan["marker"]:
        painters.append(_marker(plan["marker"]))
    for paint in painters:
        A = A + LEAD_MU * _layer(A.shape, paint)
    return A


def burn_in(img: np.ndarray, plan: dict, rng: np.random.Generator) -> np.ndarray:
    """The 8-bit image with the plan's burnt-in objects (a letter, text lines) drawn white over it."""
    painters = []
    if plan["letter"] and plan["letter_burnt"]:
        painters.append(_letter(plan["letter"], plan["letter_xy"], plan["letter_size"]))
    if plan["text"]:
        painters.append(_text(plan["text"], rng))
    if not painters:
        return img
    out = img.astype(np.float32)
    for paint in painters:
        layer = _layer(img.shape, paint)
        out = out * (1 - layer) + 250.0 * layer
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
