"""One phantom radiograph from a plan entry (:func:`render`): pixels and lesion masks.

The steps, in the order their random numbers are drawn (the patient's generator
``SeedSequence([seed, 1, patient])`` gives anatomy and lesion, shared by the patient's views; the image's
``SeedSequence([seed, 2, key])`` pose, exposure and noise):

1. the canvas and the limb's pose (:func:`_frame`), the patient's anatomy and lesion parameters
   (:func:`_patient`), attenuation coefficients scaled by the scene scale (:func:`_attenuation`) and the
   trabecular texture;
2. the soft tissue and the bones (:mod:`.anatomy`), then the lesions drawn into the target bone (:mod:`.draw`);
3. *projection*: each structure contributes its projected path length ``t`` times a linear attenuation
   coefficient; optional collimator shutters (:func:`_collimate`);
4. *detector* (:func:`_detector`): ``I = I0 · exp(−Σ μ·t)`` (Beer–Lambert) with a heel-effect gradient,
   quantum (Poisson, normal approximation) noise, scintillator blur, then the log image is edge-enhanced
   (unsharp mask, like DR post-processing) and windowed with a random level, width and gamma;
5. the canonical canvas turned to the stored orientation (flips, landscape), masks with it (:func:`_orient`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from bonetumor.data.phantom.anatomy import BONES, TEMPLATES, Frame, Limb, skeleton, soft_tissue
from bonetumor.data.phantom.draw import DRAW, Scene
from bonetumor.data.phantom.geometry import bandpass
from bonetumor.data.phantom.lesions import lesion_params

VIEW_ANGLE = {"frontal": 0.0, "lateral": math.pi / 2, "oblique": math.pi / 4}
CENTRE_STYLE = {  # detector/processing differences between centres (not exposure: no global-histogram shift)
    1: {"quality": 92, "blur": 1.0, "noise": 1.0, "usm": 1.0},
    2: {"quality": 88, "blur": 1.3, "noise": 1.6, "usm": 0.6},
    3: {"quality": 85, "blur": 0.8, "noise": 1.2, "usm": 1.6},
}


def render(entry: dict, size: int) -> tuple[np.ndarray, list[dict]]:
    """Pixels (uint8, H×W) and lesions (``{"subtype", "mask"}``, boolean H×W masks) of one plan entry."""
    seed = entry["seed"]
    rp = np.random.default_rng(np.random.SeedSequence([seed, 1, entry["patient"]]))  # patient: anatomy, lesion
    ri = np.random.default_rng(np.random.SeedSequence([seed, 2, entry["key"]]))  # image: pose, exposure, noise
    sc_px = size / 512.0
    template = entry["template"]
    target_names, _, limb_radii = TEMPLATES[template]
    frame, turn = _frame(entry["view"], size, target_names[0], ri)
    limb, lesions = _patient(entry, target_names[0], rp)
    mu = _attenuation(frame.S, ri)
    H, W = frame.H, frame.W
    tex = 1.0 + ri.uniform(0.15, 0.25) * bandpass(ri, (H, W), 1.0 * sc_px, 3.0 * sc_px)
    A_soft = soft_tissue(frame, limb, limb_radii, mu, rp)
    A_other, A_target, target_bone = skeleton(frame, limb, template, entry["site"], tex, mu, ri)
    A_add = np.zeros((H, W), np.float32)
    scene = Scene(frame.x, frame.y[:, 0], (H, W), frame.S, sc_px, target_bone, A_target, A_add, ri,
                  VIEW_ANGLE[entry["view"]], mu, frame.gap)
    lesion_masks = _draw_lesions(lesions, scene, frame)
    A = A_soft + A_other + A_target + A_add
    del A_other, A_add, A_soft
    A = _collimate(A, ri)
    img = _detector(A, frame, CENTRE_STYLE[entry["centre"]], sc_px, ri)
    img = _orient(img, turn)
    out = []
    for m in lesion_masks:
        m = _orient(m, turn)
        if m.sum() >= max(4, 12 * sc_px * sc_px):
            out.append({"subtype": entry["subtype"], "mask": m})
    return img, out


def _frame(view: str, size: int, main: str, ri: np.random.Generator) -> tuple[Frame, tuple[bool, bool, bool]]:
    """The canvas and pose, and how the canonical canvas is turned when stored ``(flip_lr, flip_ud,
    landscape)``."""
    U = ri.uniform
    H = int(size)
    W = int(round(size * U(0.62, 1.0)))
    landscape, flip_lr, flip_ud = ri.random() < 0.2, ri.random() < 0.5, ri.random() < 0.5
    S = U(0.055, 0.08) * W / BONES[main][0] * (0.9 if main in ("radius", "ulna") else 1.0)
    theta = math.radians(float(np.clip(ri.normal(0, 7), -18, 18)))
    ax, ay = math.sin(theta), math.cos(theta)  # shaft direction of the target group (pointing down)
    yj = U(0.2, 0.42) * H
    xj = W / 2 + U(-0.08, 0.08) * W
    gap = U(0.25, 0.45) * S
    pair_fac = {"frontal": 1.0, "oblique": 0.6, "lateral": 0.22}[view]
    lat_fac = {"frontal": 1.0, "oblique": 0.93, "lateral": 0.85}[view]
    x = np.arange(W, dtype=np.float32) + 0.5
    y = np.arange(H, dtype=np.float32)[:, None] + 0.5
    frame = Frame(H=H, W=W, S=S, theta=theta, ax=ax, ay=ay, xj=xj, yj=yj, gap=gap, pair_fac=pair_fac,
                  lat_fac=lat_fac, x=x, y=y)
    return frame, (flip_lr, flip_ud, landscape)


def _patient(entry: dict, main: str, rp: np.random.Generator) -> tuple[Limb, list[dict]]:
    """The patient's anatomy and lesion parameters (the same in every view)."""
    ratios = {name: rp.uniform(*spec[1]) for name, spec in BONES.items()}
    pair_off = rp.uniform(1.6, 2.0)
    limb_mod = rp.uniform(0.9, 1.15, 2)
    lesions = lesion_params(entry["subtype"], rp) if entry["subtype"] else []
    if entry["subtype"] == "multiple osteochondromas":
        ratios[main] *= 1.15
    return Limb(ratios=ratios, pair_off=pair_off, limb_mod=limb_mod, physis=entry["age"] < 16), lesions


def _attenuation(S: float, ri: np.random.Generator) -> dict:
    """Attenuation coefficients per pixel, scaled by S so that contrast does not depend on zoom."""
    U = ri.uniform
    mu = {"c": U(1.1, 1.5) / S, "t": U(0.17, 0.26) / S, "marrow": U(0.06, 0.12) / S, "muscle": U(0.1, 0.13) / S,
          "fat": 0.0, "mass": 0.0}
    mu["fat"] = mu["muscle"] * U(0.7, 0.85)
    mu["mass"] = mu["muscle"] * U(0.9, 1.3)
    return mu


def _draw_lesions(lesions: list[dict], scene: Scene, frame: Frame) -> list[np.ndarray]:
    """Draw each lesion into the scene; the full-canvas mask of each that lands on the canvas."""
    H, W = frame.H, frame.W
    # farthest visible point of the target bone (canvas bottom, with a margin)
    scene.u_max = (H - 0.06 * H - scene.bone.ey) / max(frame.ay, 0.5)
    lesion_masks = []
    for p in lesions:
        res = DRAW[p["kind"]](p, scene)
        if res is None:
            continue
        win, m = res
        full = np.zeros((H, W), bool)
        full[win] = m
        lesion_masks.append(full)
    return lesion_masks


def _collimate(A: np.ndarray, ri: np.random.Generator) -> np.ndarray:
    """Collimator shutters (in 40 % of images) on up to four edges."""
    H, W = A.shape
    if ri.random() < 0.4:
        edges = ri.uniform(0.0, 0.09, 4) * (ri.random(4) < 0.6)
        coll = np.zeros((H, W), bool)
        coll[: int(edges[0] * H)] = True
        coll[H - int(edges[1] * H):] = True
        coll[:, : int(edges[2] * W)] = True
        coll[:, W - int(edges[3] * W):] = True
        if coll.any():
            A = A + coll * ri.uniform(2.5, 4.0)
            # shutters also cut what the lesion masks can show
    return A


def _detector(A: np.ndarray, frame: Frame, style: dict, sc_px: float, ri: np.random.Generator) -> np.ndarray:
    """The detector's 8-bit image of the attenuation map ``A`` (Beer–Lambert, noise, blur, unsharp mask,
    windowing with gamma)."""
    U = ri.uniform
    H, W = frame.H, frame.W
    xg, yg = frame.x[None, :], frame.y
    N0 = U(3000, 20000) / style["noise"] ** 2 * sc_px ** 0  # photons per pixel (unblurred)
    heel = 1.0 + U(-0.15, 0.15) * (yg / H - 0.5) + U(-0.08, 0.08) * (xg / W - 0.5)
    I = (N0 * heel) * np.exp(-A)
    I = I + np.sqrt(I) * ri.standard_normal((H, W), dtype=np.float32)
    blur = U(0.5, 1.0) * style["blur"] * sc_px
    if blur > 0.3:
        I = ndimage.gaussian_filter(I, blur, truncate=3.0)
    D = -np.log(np.maximum(I, 0.5) / N0)
    k_usm = U(0.0, 0.8) * style["usm"]
    if k_usm > 0.05:
        k_box = 2 * int(U(6, 14) * sc_px * 1.25) + 1  # two box passes ≈ a Gaussian of that width, fast
        low = ndimage.uniform_filter(ndimage.uniform_filter(D, k_box, mode="nearest"), k_box, mode="nearest")
        D = D + k_usm * (D - low)
    a_ref = 2.4 * U(0.85, 1.25)
    lo, hi = U(-0.25, 0.15), a_ref
    lut = (np.linspace(0.0, 1.0, 4096) ** U(0.75, 1.3) * 255.0 + 0.5).astype(np.uint8)  # gamma
    return lut[np.clip((D - lo) * (4095.0 / (hi - lo)), 0, 4095).astype(np.int16)]


def _orient(a: np.ndarray, turn: tuple[bool, bool, bool]) -> np.ndarray:
    """Canonical → stored orientation: ``turn = (flip_lr, flip_ud, landscape)``."""
    flip_lr, flip_ud, landscape = turn
    if flip_lr:
        a = a[:, ::-1]
    if flip_ud:
        a = a[::-1]
    if landscape:
        a = a.T
    return np.ascontiguousarray(a)
