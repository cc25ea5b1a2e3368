"""Phantom v2's lesions, drawn in canvas coordinates with the box size the plan chose (an ellipse of the
planned width and height, its outline bent a little) and every contrast scaled by the lesion's
**conspicuity** ``c`` (0–1, see :mod:`.plan_v2`):

=====================  ===========================================================================
kind (subtypes)        appearance, each amplitude × ``c``
=====================  ===========================================================================
exostosis              osteochondroma, multiple osteochondromas: a bony outgrowth (cortex and
                       cancellous bone) at the bone's edge, pointing away from it
bodies                 synovial osteochondroma: ring-calcified loose bodies clustered in the box
benign lytic           simple bone cyst, giant cell tumour, osteofibroma, other bt: lucency with a
                       narrow zone of transition, thin sclerotic rim, septa (giant cell tumour,
                       osteofibroma), expanded thin cortex where it bulges past the bone
malignant              osteosarcoma, other mt: ill-defined (wide transition) moth-eaten lysis,
                       cloud-like tumour bone, soft-tissue mass, spicules (osteosarcoma) or
                       lamellated periosteal reaction (other mt)
=====================  ===========================================================================

A lesion's style (outline, rim, septa, depth) comes from the patient's generator, so all of the patient's
views show the same lesion; its noise comes from the image's generator.
"""

from __future__ import annotations

import math

import numpy as np

from bonetumor.data.phantom.geometry import bandpass, chord, ellipse_r, harmonics

KIND = {"osteochondroma": "exostosis", "multiple osteochondromas": "exostosis", "synovial osteochondroma": "bodies",
        "simple bone cyst": "benign", "giant cell tumor": "benign", "osteofibroma": "benign", "other bt": "benign",
        "osteosarcoma": "malignant", "other mt": "malignant"}


def lesion_style(subtype: str, rp: np.random.Generator) -> dict:
    """The patient's drawing parameters of one lesion of ``subtype`` (outline, depth, rim, septa, mass)."""
    U = rp.uniform
    kind = KIND[subtype]
    style = {"kind": kind, "harm": harmonics(rp, 0.05 if kind != "malignant" else 0.15, 6),
             "depth": U(0.35, 0.7), "rim": U(0.1, 0.45), "septa": 0.0, "sclerotic": 0.0, "mass": 0.0,
             "spicules": False, "lamellae": False, "density": U(0.8, 1.2), "bodies": []}
    if subtype in ("giant cell tumor", "osteofibroma"):
        style["septa"] = U(0.2, 0.5)
    if kind == "malignant":
        style.update(depth=U(0.25, 0.6), rim=0.0, sclerotic=U(0.1, 0.6), mass=U(0.4, 1.0),
                     spicules=subtype == "osteosarcoma" and rp.random() < 0.6,
                     lamellae=subtype == "other mt" and rp.random() < 0.6)
    if kind == "bodies":
        style["bodies"] = [(U(-0.8, 0.8), U(-0.8, 0.8), U(0.12, 0.3)) for _ in range(int(rp.integers(4, 14)))]
    return style


class Canvas:
    """What a lesion draws into: pixel centres, the bones' ``μ·t`` (thinned by lysis), the added ``μ·t``,
    the image's generator, the attenuation coefficients and the scene scale ``S`` (pixels)."""

    def __init__(self, x, y, A_bones, A_add, rng, mu, S, px):
        self.x, self.y, self.A_bones, self.A_add, self.rng, self.mu, self.S, self.px = \
            x, y, A_bones, A_add, rng, mu, S, px

    def window(self, centre, half):
        """Slices of the box around ``centre`` with half-sides ``half`` (+ margin), and the box's pixel grid."""
        W, H = len(self.x), len(self.y)
        mx, my = 1.25 * half[0] + 2, 1.25 * half[1] + 2
        x0, x1 = max(0, int(centre[0] - mx)), min(W, int(math.ceil(centre[0] + mx)) + 1)
        y0, y1 = max(0, int(centre[1] - my)), min(H, int(math.ceil(centre[1] + my)) + 1)
        win = (slice(y0, y1), slice(x0, x1))
        return win, self.x[x0:x1][None, :], self.y[y0:y1][:, None]

    def noise(self, win, s1, s2):
        shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        return bandpass(self.rng, shape, max(s1 * self.px, 0.0), max(s2 * self.px, 0.6))


def draw(style: dict, centre, half, conspicuity: float, canvas: Canvas, outward=(0.0, 0.0)) -> np.ndarray:
    """Draw one lesion; return its mask on the whole canvas. ``outward``: the unit vector from the bone's
    axis to the lesion (exostoses point along it)."""
    win, xw, yw = canvas.window(centre, half)
    u, v = xw - centre[0], yw - centre[1]
    bulge = 1.0 + max(0.0, max(sum(a * math.cos(k * t + ph) for k, a, ph in style["harm"])
                               for t in np.linspace(0, 2 * math.pi, 72)))
    r = ellipse_r(u, v, 0.0, 0.0, half[0] / bulge, half[1] / bulge, style["harm"])  # box ≈ the planned one
    c = float(conspicuity)
    _DRAW[style["kind"]](style, canvas, win, u, v, r, c, half, outward)
    mask = np.zeros((len(canvas.y), len(canvas.x)), bool)
    mask[win] = r < 1.0
    return mask


def _exostosis(style, cv: Canvas, win, u, v, r, c, half, outward):
    """A bony outgrowth: an ellipsoid of bone whose cap, away from the parent bone, is densest."""
    depth = 0.5 * min(half)
    outer, inner = chord(1.0, r) * depth, chord(0.85, r) * depth
    tex = 1.0 + 0.3 * cv.noise(win, 0.8, 2.5)
    proj = (u * outward[0] + v * outward[1]) / max(max(half), 1.0)
    cap = 0.8 + 0.4 * np.clip(proj + 0.5, 0, 1)
    cv.A_add[win] += c * style["density"] * cap * (cv.mu["c"] * 0.7 * (outer - inner) + cv.mu["t"] * tex * inner)


def _bodies(style, cv: Canvas, win, u, v, r, c, half, outward):
    """Loose bodies: calcified rings scattered inside the lesion's box."""
    scale = min(half)
    for bu, bv, br in style["bodies"]:
        rb = np.hypot(u - bu * half[0], v - bv * half[1]) / max(br * scale, 1.0)
        cv.A_add[win] += c * cv.mu["c"] * 0.25 * cv.S * (0.4 * np.sqrt(np.clip(1 - rb * rb, 0, 1))
                                                         + np.exp(-((rb - 0.8) / 0.2) ** 2))


def _benign(style, cv: Canvas, win, u, v, r, c, half, outward):
    """Well-defined lucency (narrow transition), thin sclerotic rim, septa, expanded thin cortex."""
    w = np.clip((1.0 - r) / 0.1 + 0.5, 0, 1)
    lysis = c * style["depth"] * w * (0.7 + 0.3 * np.sqrt(np.clip(1 - r * r, 0, 1)))
    cv.A_bones[win] *= 1.0 - lysis
    bone_there = np.clip(cv.A_bones[win] / (cv.mu["t"] * cv.S + 1e-6), 0, 1)
    rim = np.exp(-((r - 1.0) / 0.07) ** 2)
    cv.A_add[win] += c * cv.mu["c"] * 0.3 * cv.S * (style["rim"] * rim * (0.3 + 0.7 * bone_there) + 0.15 * rim)
    if style["septa"]:
        n = cv.noise(win, 2.0, 6.0)
        cv.A_add[win] += c * style["septa"] * cv.mu["c"] * 0.2 * cv.S * np.exp(-(n / 0.2) ** 2) * (r < 0.95)


def _malignant(style, cv: Canvas, win, u, v, r, c, half, outward):
    """Ill-defined moth-eaten lysis, tumour bone, soft-tissue mass, spicules or lamellae."""
    zone = np.clip((1.2 - r) / 0.7, 0, 1)
    holes = np.clip((cv.noise(win, 1.5, 4.5) + 0.3) / 1.2, 0, 1)
    cv.A_bones[win] *= 1.0 - np.clip(c * style["depth"] * zone * (0.5 + 0.8 * holes), 0, 0.95)
    if style["sclerotic"]:
        cloud = np.clip(cv.noise(win, 2.0, 6.0) - 0.2, 0, None)
        cv.A_add[win] += c * style["sclerotic"] * cv.mu["t"] * cv.S * cloud * zone
    cv.A_add[win] += c * style["mass"] * cv.mu["muscle"] * chord(1.0, r) * 0.5 * min(half) * zone
    if style["spicules"]:
        ang = np.arctan2(v, u)
        spacing = 0.18
        delta = (ang - (np.floor(ang / spacing) + 0.5) * spacing) * np.hypot(u, v)
        cv.A_add[win] += c * cv.mu["c"] * 0.15 * cv.S * np.exp(-(delta / max(cv.px, 0.6)) ** 2) \
            * (r > 0.35) * (r < 1.0)
    if style["lamellae"]:
        rings = np.exp(-((r % 0.2 - 0.1) / 0.03) ** 2) * (r > 0.5) * (r < 1.0)
        cv.A_add[win] += c * cv.mu["c"] * 0.12 * cv.S * rings


_DRAW = {"exostosis": _exostosis, "bodies": _bodies, "benign": _benign, "malignant": _malignant}
