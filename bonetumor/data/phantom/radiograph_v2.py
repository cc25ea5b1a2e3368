"""One phantom-v2 radiograph from a :func:`~bonetumor.data.phantom.plan_v2.plan_v2` entry (:func:`render`).

The steps (random numbers from the same generators as version 1: the patient's ``SeedSequence([seed, 1,
patient])`` for anatomy and lesion style, shared by the patient's views; the image's ``SeedSequence([seed, 2,
key])`` for pose, zoom, exposure and noise):

1. the region (:func:`_region`): a long-bone joint region of version 1 (with a patella over the knee) at a
   wider range of zoom, or a hand, foot or pelvis (:mod:`.anatomy_v2`), with soft tissue and lesion sites;
2. collimation (:func:`_collimation`): shutters on up to four edges, sometimes shown black (masked by the
   processing) instead of white;
3. lesions (:mod:`.lesions_v2`) of the planned box size and conspicuity, placed on a lesion site in the open
   field;
4. lead distractors (:mod:`.distractors`), then the detector (:func:`_detector`): Beer–Lambert, scatter (a
   blurred fraction of the primary beam), quantum noise, blur, unsharp mask, a random window and gamma;
5. the canvas turned to the stored orientation, burnt-in distractors (letters, text) drawn over it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from bonetumor.data.phantom import anatomy_v2, distractors, lesions_v2
from bonetumor.data.phantom.anatomy import BONES, TEMPLATES, Limb, skeleton, soft_tissue
from bonetumor.data.phantom.geometry import bandpass
from bonetumor.data.phantom.radiograph import CENTRE_STYLE, VIEW_ANGLE, _attenuation, _frame, _orient

SPREAD = {"frontal": 1.0, "oblique": 0.6, "lateral": 0.25}  # how far apart the rays of a hand/foot stay


@dataclasses.dataclass
class Region:
    """A drawn region on the canonical canvas: ``μ·t`` maps, lesion sites, the scene scale and orientation."""

    x: np.ndarray
    y: np.ndarray
    A_bones: np.ndarray
    A_soft: np.ndarray
    sites: list  # (bone, u_lo, u_hi)
    S: float
    mu: dict
    turn: tuple  # (flip_lr, flip_ud, landscape)


def render(entry: dict, size: int) -> tuple[np.ndarray, list[dict]]:
    """Pixels (uint8, H×W) and lesions (``{"subtype", "mask"}``, boolean H×W masks) of one v2 plan entry."""
    seed = entry["seed"]
    rp = np.random.default_rng(np.random.SeedSequence([seed, 1, entry["patient"]]))
    ri = np.random.default_rng(np.random.SeedSequence([seed, 2, entry["key"]]))
    px = size / 512.0
    region = _region(entry, size, rp, ri)
    H, W = region.A_bones.shape
    open_field, shutter = _collimation((H, W), ri)
    A_add = np.zeros((H, W), np.float32)
    canvas = lesions_v2.Canvas(region.x, region.y, region.A_bones, A_add, ri, region.mu, region.S, px)
    masks = _draw_lesions(entry, region, canvas, open_field, rp)
    A = region.A_soft + region.A_bones + A_add
    if shutter > 0:
        A = A + (~_field_mask((H, W), open_field)) * shutter
    A = distractors.add_lead(A, entry["distractors"])
    img = _detector(A, CENTRE_STYLE[entry["centre"]], px, size, ri)
    if shutter == 0:
        img = np.where(_field_mask((H, W), open_field), img, np.uint8(ri.integers(0, 12)))
    img = distractors.burn_in(_orient(img, region.turn), entry["distractors"], ri)
    out = []
    for m in masks:
        m = _orient(m, region.turn)
        if m.sum() >= 4:
            out.append({"subtype": entry["subtype"], "mask": m})
    return img, out


def _region(entry: dict, size: int, rp: np.random.Generator, ri: np.random.Generator) -> Region:
    """The region of the entry's template, drawn on its canonical canvas."""
    template = entry["template"]
    if template in ("hand", "foot"):
        return _rays(entry, size, ri)
    if template == "pelvis":
        return _pelvis(entry, size, ri)
    return _long_bones(entry, size, rp, ri)


def _limb(entry: dict, rp: np.random.Generator) -> Limb:
    """The patient's anatomy (bone proportions, pair separation, limb girth, growth plates)."""
    ratios = {name: rp.uniform(*spec[1]) for name, spec in BONES.items()}
    return Limb(ratios=ratios, pair_off=rp.uniform(1.6, 2.0), limb_mod=rp.uniform(0.9, 1.15, 2),
                physis=entry["age"] < 16)


def _long_bones(entry: dict, size: int, rp: np.random.Generator, ri: np.random.Generator) -> Region:
    """A version-1 joint region at a zoom of 0.55–1.4 × version 1's, with a patella over the knee."""
    template = entry["template"]
    target_names, _, limb_radii = TEMPLATES[template]
    frame, turn = _frame(entry["view"], size, target_names[0], ri)
    zoom = ri.uniform(0.55, 1.4)
    frame = dataclasses.replace(frame, S=frame.S * zoom, gap=frame.gap * zoom)
    limb = _limb(entry, rp)
    mu = _attenuation(frame.S, ri)
    tex = 1.0 + ri.uniform(0.15, 0.25) * bandpass(ri, (frame.H, frame.W), size / 512, 3.0 * size / 512)
    A_soft = soft_tissue(frame, limb, limb_radii, mu, rp)
    A_other, A_target, bone = skeleton(frame, limb, template, entry["site"], tex, mu, ri)
    A_bones = A_other + A_target
    if template.startswith("knee"):
        sign = 1.0 if template == "knee_femur" else -1.0
        lateral = 1.0 - frame.pair_fac
        centre = bone.xy(sign * (0.55 * bone.Rm + 0.5 * frame.gap) - (1 - sign) * frame.gap, 1.1 * bone.Rm * lateral)
        anatomy_v2.add_ellipsoid(frame.x, frame.y[:, 0], centre, (0.55 * bone.Rm, 0.7 * bone.Rm), frame.theta,
                                 A_bones, tex, mu)
    u_max = max((frame.H * 0.95 - bone.ey) / max(abs(bone.dy), 0.5), 2.0 * bone.Rm)
    return Region(frame.x, frame.y[:, 0], A_bones, A_soft, [(bone, 0.3 * bone.Rm, u_max)], frame.S, mu, turn)


def _canvas(size: int, ri: np.random.Generator, landscape_canvas: bool):
    """Pixel centres of a canvas (portrait, or landscape for the pelvis)."""
    long_side, short_side = int(size), int(round(size * ri.uniform(0.62, 1.0)))
    H, W = (short_side, long_side) if landscape_canvas else (long_side, short_side)
    return np.arange(W, dtype=np.float32) + 0.5, np.arange(H, dtype=np.float32) + 0.5


def _rays(entry: dict, size: int, ri: np.random.Generator) -> Region:
    """A hand or foot, fingers or toes up, in the entry's view (a lateral view crowds the rays)."""
    x, y = _canvas(size, ri, False)
    turn = (bool(ri.random() < 0.5), bool(ri.random() < 0.5), bool(ri.random() < 0.2))
    H, W = len(y), len(x)
    length = ri.uniform(0.7, 0.95) * H * (1.0 if entry["template"] == "hand" else 1.05)
    origin = (W / 2 + ri.uniform(-0.06, 0.06) * W, ri.uniform(0.86, 0.97) * H)
    tilt = math.radians(float(np.clip(ri.normal(0, 8), -20, 20)))
    S = 0.03 * length
    mu = _attenuation(S, ri)
    tex = 1.0 + ri.uniform(0.15, 0.25) * bandpass(ri, (H, W), size / 512, 3.0 * size / 512)
    A_bones, A_soft, sites = anatomy_v2.rays_region(x, y, tex, mu, entry["template"], length, origin, tilt,
                                                    SPREAD[entry["view"]], entry["age"] < 16)
    return Region(x, y, A_bones, A_soft, sites, S, mu, turn)


def _pelvis(entry: dict, size: int, ri: np.random.Generator) -> Region:
    """An AP pelvis on a landscape canvas (flipped left–right at most)."""
    x, y = _canvas(size, ri, True)
    H, W = len(y), len(x)
    width = ri.uniform(0.7, 1.0) * W
    centre = (W / 2 + ri.uniform(-0.05, 0.05) * W, ri.uniform(0.4, 0.55) * H)
    S = 0.035 * width
    mu = _attenuation(S, ri)
    tex = 1.0 + ri.uniform(0.15, 0.25) * bandpass(ri, (H, W), size / 512, 3.0 * size / 512)
    tilt = math.radians(float(np.clip(ri.normal(0, 4), -10, 10)))
    A_bones, A_soft, sites = anatomy_v2.pelvis_region(x, y, tex, mu, width, centre, tilt, entry["age"] < 16)
    site = "hip bone" if entry["site"] == "hip bone" else "femur"
    return Region(x, y, A_bones, A_soft, sites[site], S, mu, (bool(ri.random() < 0.5), False, False))


def _collimation(shape, ri: np.random.Generator) -> tuple[tuple[int, int, int, int], float]:
    """The open field ``(y0, y1, x0, x1)`` between the shutters (in 55 % of images, up to 18 % per edge) and
    the shutters' ``μ·t`` (0: the processing masks them black instead)."""
    H, W = shape
    if ri.random() >= 0.55:
        return (0, H, 0, W), 0.0
    edges = ri.uniform(0.0, 0.18, 4) * (ri.random(4) < 0.6)
    shutter = float(ri.uniform(2.0, 4.0)) if ri.random() < 0.6 else 0.0
    return (int(edges[0] * H), H - int(edges[1] * H), int(edges[2] * W), W - int(edges[3] * W)), shutter


def _field_mask(shape, field) -> np.ndarray:
    y0, y1, x0, x1 = field
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def _draw_lesions(entry, region: Region, canvas, field, rp) -> list[np.ndarray]:
    """Each planned lesion at its planned box size, on a lesion site, kept in the open field."""
    H, W = region.A_bones.shape
    landscape = region.turn[2]
    masks = []
    for spec in entry["lesions"]:
        style = lesions_v2.lesion_style(entry["subtype"], rp)
        w_px, h_px = spec["w"] * (H if landscape else W), spec["h"] * (W if landscape else H)
        half = (max((h_px if landscape else w_px) / 2, 1.5), max((w_px if landscape else h_px) / 2, 1.5))
        bone, lo, hi = region.sites[min(int(spec["bone"] * len(region.sites)), len(region.sites) - 1)]
        u = lo + spec["pos"] * max(hi - lo, 0.0)
        R = float(bone.radius(u))
        normal = (-spec["side"] * bone.dy, spec["side"] * bone.dx)
        reach = math.hypot(half[0] * normal[0], half[1] * normal[1])
        offset = R + 0.35 * reach if style["kind"] == "exostosis" else 0.15 * R
        cx, cy = bone.xy(u, spec["side"] * offset)
        centre = (_inside(cx, half[0], field[2], field[3]), _inside(cy, half[1], field[0], field[1]))
        mask = lesions_v2.draw(style, centre, half, spec["conspicuity"], canvas, normal)
        masks.append(mask & _field_mask((H, W), field))
    return masks


def _inside(c: float, half: float, lo: int, hi: int) -> float:
    """``c`` moved so that ``c ± half`` lies within [lo, hi] (the middle when it cannot)."""
    if hi - lo <= 2 * half + 2:
        return 0.5 * (lo + hi)
    return float(np.clip(c, lo + half + 1, hi - half - 1))


def _detector(A: np.ndarray, style: dict, px: float, size: int, ri: np.random.Generator) -> np.ndarray:
    """The detector's 8-bit image of ``A``: Beer–Lambert with a heel effect, scatter, quantum noise, blur,
    unsharp mask and a random window and gamma (wider ranges than version 1)."""
    U = ri.uniform
    H, W = A.shape
    N0 = U(1500, 30000) / style["noise"] ** 2
    heel = 1.0 + U(-0.2, 0.2) * (np.arange(H, dtype=np.float32)[:, None] / H - 0.5) \
        + U(-0.1, 0.1) * (np.arange(W, dtype=np.float32)[None, :] / W - 0.5)
    I = (N0 * heel) * np.exp(-A)
    small = ndimage.gaussian_filter(I[::4, ::4], max(0.06 * size / 4, 1.0))
    scatter = ndimage.zoom(small, (H / small.shape[0], W / small.shape[1]), order=1)[:H, :W]
    I = I + U(0.05, 0.5) * scatter
    I = I + np.sqrt(I) * ri.standard_normal((H, W), dtype=np.float32)
    blur = U(0.5, 1.2) * style["blur"] * px
    if blur > 0.3:
        I = ndimage.gaussian_filter(I, blur, truncate=3.0)
    D = -np.log(np.maximum(I, 0.5) / N0)
    k_usm = U(0.0, 1.0) * style["usm"]
    if k_usm > 0.05:
        k_box = 2 * int(U(6, 14) * px * 1.25) + 1
        low = ndimage.uniform_filter(ndimage.uniform_filter(D, k_box, mode="nearest"), k_box, mode="nearest")
        D = D + k_usm * (D - low)
    lo, hi = U(-0.35, 0.2), 2.4 * U(0.75, 1.4)
    lut = (np.linspace(0.0, 1.0, 4096) ** U(0.65, 1.4) * 255.0 + 0.5).astype(np.uint8)
    return lut[np.clip((D - lo) * (4095.0 / (hi - lo)), 0, 4095).astype(np.int16)]
