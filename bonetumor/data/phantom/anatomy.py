"""The limb drawn in each image: the canonical canvas and pose (:class:`Frame`), the patient's anatomy
(:class:`Limb`), the soft-tissue envelope and the bones of a joint region (template), as maps of
attenuation × path length (``μ·t``) on the canvas.

A joint region shows the "target" long bone (the sheet's site, with its pair bone for the leg and forearm),
across a joint gap the partner bone(s) or a carpal/tarsal/glenoid/acetabular block, all inside a soft-tissue
envelope (muscle core + subcutaneous fat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bonetumor.data.phantom.geometry import Bone, chord, smoothstep

BONES = {  # Rd (× scene scale), Rm/Rd, e/Rm, m/Rm, cortex/Rd
    "femur": (1.0, (1.9, 2.2), 0.8, 1.5, 0.32),
    "tibia": (1.0, (1.7, 2.0), 0.6, 1.6, 0.3),
    "fibula": (0.42, (1.3, 1.6), 0.9, 1.8, 0.3),
    "humerus": (0.9, (1.8, 2.1), 0.8, 1.5, 0.3),
    "radius": (0.8, (1.5, 1.8), 0.6, 1.6, 0.28),
    "ulna": (0.7, (1.2, 1.5), 0.8, 1.5, 0.28),
}
TEMPLATES = {  # target group (main bone first), partner group or block, limb radius (× S) of target/partner
    "knee_femur": (("femur",), ("tibia", "fibula"), (3.0, 2.6)),
    "knee_tibia": (("tibia", "fibula"), ("femur",), (2.5, 3.1)),
    "hip": (("femur",), "acetabulum", (3.4, 9.0)),
    "ankle": (("tibia", "fibula"), "talus", (2.3, 2.2)),
    "shoulder": (("humerus",), "glenoid", (2.8, 9.0)),
    "elbow_humerus": (("humerus",), ("radius", "ulna"), (2.6, 2.5)),
    "elbow_forearm": (("radius", "ulna"), ("humerus",), (2.6, 2.7)),
    "wrist": (("radius", "ulna"), "carpals", (2.4, 2.0)),
}
#: Shifts (× S) of each target-group bone's end along its shaft.
_TARGET_SHIFTS = {"knee_tibia": (0.0, 0.6), "ankle": (0.0, -0.5), "elbow_forearm": (0.0, -0.3), "wrist": (0.0, 0.4)}
#: Size of a partner bone group relative to the target's, and shifts of its bones' ends.
_PARTNER_SCALE = {"knee_femur": 0.95, "knee_tibia": 1.1, "elbow_humerus": 0.85, "elbow_forearm": 1.15}
_PARTNER_SHIFTS = {"knee_femur": (0.0, 0.6), "elbow_humerus": (0.0, -0.3)}
#: Blocks: ellipsoids (position along/across the partner axis, half-axes, rotation; × the target's Rm).
_BLOCKS = {"acetabulum": [(1.0, 0.1, 1.3, 1.3, 0.0), (2.6, -0.4, 1.2, 2.2, 0.4)],
           "glenoid": [(1.0, 0.0, 1.2, 0.8, 0.5)],
           "talus": [(1.0, 0.0, 1.1, 0.75, 0.0), (1.9, 0.7, 0.9, 0.8, 0.3)],
           "carpals": [(0.55, -0.5, 0.35, 0.35, 0.0), (0.55, 0.2, 0.35, 0.3, 0.0), (0.6, 0.85, 0.3, 0.3, 0.0),
                       (1.2, -0.3, 0.4, 0.35, 0.0), (1.2, 0.5, 0.4, 0.35, 0.0)]}


@dataclass
class Frame:
    """The canonical canvas (portrait, joint near the top, pair bone on the +x side) and the limb's pose."""

    H: int
    W: int
    S: float  # scene scale: the target bone's diaphyseal radius, in pixels
    theta: float  # tilt of the target group's shaft
    ax: float  # shaft direction of the target group (pointing down)
    ay: float
    xj: float  # joint centre
    yj: float
    gap: float  # joint gap
    pair_fac: float  # the view's separation of pair bones (1 frontal, small lateral)
    lat_fac: float  # the view's bone width factor
    x: np.ndarray  # pixel centres, shape (W,)
    y: np.ndarray  # pixel centres, shape (H, 1)


@dataclass
class Limb:
    """The patient's anatomy, the same in every view."""

    ratios: dict  # Rm/Rd of each bone
    pair_off: float  # separation of pair bones
    limb_mod: np.ndarray  # limb radius factors of the target and partner side
    physis: bool  # open growth plate (a child)


def soft_tissue(frame: Frame, limb: Limb, limb_radii, mu: dict, rp: np.random.Generator) -> np.ndarray:
    """The soft-tissue envelope (fat around a muscle core), narrowing at the joint, as ``μ·t``."""
    rl_t, rl_p = limb_radii
    S, ax, ay, xj, yj = frame.S, frame.ax, frame.ay, frame.xj, frame.yj
    xg, yg = frame.x[None, :], frame.y
    s_l = (xg - xj) * ax + (yg - yj) * ay
    v_l = (yg - yj) * ax - (xg - xj) * ay
    ph = rp.uniform(0, 2 * np.pi, 2)
    wob = 1.0 + 0.06 * np.sin(s_l / (3.0 * S) + ph[0]) + 0.04 * np.sin(s_l / (1.3 * S) + ph[1])
    joint_narrow = 1.0 - 0.12 * np.exp(-(s_l / (1.5 * S)) ** 2)
    trans = smoothstep(s_l / (2.5 * S) + 0.5)
    limb_mod = limb.limb_mod
    Rl = S * (rl_p * limb_mod[1] + (rl_t * limb_mod[0] - rl_p * limb_mod[1]) * trans) * wob * joint_narrow \
        * frame.lat_fac
    v_off = 0.3 * S * frame.pair_fac
    return mu["fat"] * chord(Rl, v_l - v_off) + (mu["muscle"] - mu["fat"]) * chord(0.8 * Rl, v_l - v_off)


def skeleton(frame: Frame, limb: Limb, template: str, site: str, tex: np.ndarray, mu: dict,
             ri: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Bone]:
    """The bones of ``template`` as ``μ·t``: the target bone (the one lesions are drawn in) apart from the
    others; the partner side is tilted by a random angle. Returns ``(A_other, A_target, target_bone)``."""
    H, W, S, ax, ay, gap = frame.H, frame.W, frame.S, frame.ax, frame.ay, frame.gap
    A_other = np.zeros((H, W), np.float32)
    A_target = np.zeros((H, W), np.float32)
    target_bone = None
    target_names, partner, _ = TEMPLATES[template]
    tgt = _bone_group(frame, limb, target_names, (frame.xj + 0.5 * gap * ax, frame.yj + 0.5 * gap * ay), (ax, ay),
                      1.0, _TARGET_SHIFTS.get(template, (0.0, 0.0)))
    lesion_name = site if site in target_names else target_names[0]
    for name, bone in tgt:
        if name == lesion_name:
            _add_bone(frame, bone, A_target, tex, mu)
            target_bone = bone
        else:
            _add_bone(frame, bone, A_other, tex, mu)
    th2 = frame.theta + math.radians(float(ri.normal(0, 6)))
    pax, pay = -math.sin(th2), -math.cos(th2)
    pend = (frame.xj - 0.5 * gap * ax, frame.yj - 0.5 * gap * ay)
    if isinstance(partner, tuple):
        pshift = _PARTNER_SHIFTS.get(template, (0.0, 0.0))
        for name, bone in _bone_group(frame, limb, partner, pend, (pax, pay), _PARTNER_SCALE[template], pshift):
            _add_bone(frame, bone, A_other, tex, mu)
    else:  # blocks: ellipsoids with a thin cortex
        Rm_t = target_bone.Rm if target_bone is not None else S
        _add_blocks(frame, _BLOCKS[partner], pend, (pax, pay), Rm_t, A_other, tex, mu)
    if target_bone is None:  # cannot happen with the templates above
        raise RuntimeError(f"no target bone for site {site} in template {template}")
    return A_other, A_target, target_bone


def _box(frame: Frame, x0, x1, y0, y1):
    H, W = frame.H, frame.W
    xa, xb = max(0, int(math.floor(x0))), min(W, int(math.ceil(x1)) + 1)
    ya, yb = max(0, int(math.floor(y0))), min(H, int(math.ceil(y1)) + 1)
    return (slice(ya, yb), slice(xa, xb)) if xb > xa and yb > ya else None


def _add_bone(frame: Frame, bone: Bone, into: np.ndarray, tex: np.ndarray, mu: dict) -> None:
    """Add a long bone's attenuation into ``into``, computed only over its bounding box."""
    H, W = frame.H, frame.W
    rmax = max(bone.Rm, bone.Rd) + 2.0
    reach = max(max((cx - bone.ex) * bone.dx + (cy - bone.ey) * bone.dy for cx in (0, W) for cy in (0, H)), 0.0)
    xs, ys = zip(*[bone.xy(uu, vv) for uu in (0.0, reach) for vv in (-rmax, rmax)])
    win = _box(frame, min(xs), max(xs), min(ys), max(ys))
    if win is not None:
        u, v = bone.uv(frame.x[win[1]][None, :], frame.y[win[0]])
        into[win] += bone.attenuation(u, v, tex[win], mu["c"], mu["t"], mu["marrow"])[0]


def _make_bone(frame: Frame, limb: Limb, name: str, end, axis, scale: float) -> Bone:
    Rd0, _, e_r, m_r, cort = BONES[name]
    Rd = Rd0 * scale * frame.S
    Rm = Rd * limb.ratios[name] * frame.lat_fac
    return Bone(end, axis, Rd, Rm, e_r * Rm, m_r * Rm, cort, limb.physis)


def _bone_group(frame: Frame, limb: Limb, names, end_xy, axis, scale: float, end_shift) -> list[tuple[str, Bone]]:
    """The bones ``names`` side by side (the first on the axis, the others offset as a pair bone)."""
    S = frame.S
    bones = []
    for k, name in enumerate(names):
        off = 0.0 if k == 0 else limb.pair_off * S * frame.pair_fac * (BONES[names[0]][0] + BONES[name][0]) * 0.6
        ex = end_xy[0] - off * axis[1] + end_shift[k] * S * axis[0]
        ey = end_xy[1] + off * axis[0] + end_shift[k] * S * axis[1]
        bones.append((name, _make_bone(frame, limb, name, (ex, ey), axis, scale)))
    return bones


def _add_blocks(frame: Frame, blocks, pend, axis, Rm_t: float, into: np.ndarray, tex: np.ndarray, mu: dict) -> None:
    """Add ellipsoid blocks with a thin cortex (acetabulum, glenoid, talus, carpals) beyond the joint."""
    pax, pay = axis
    for du, dv, su, sv, rot in blocks:
        cu_ = du * Rm_t
        bx, by = pend[0] + cu_ * pax + dv * Rm_t * (-pay), pend[1] + cu_ * pay + dv * Rm_t * pax
        ext = max(su, sv) * Rm_t + 2.0
        win = _box(frame, bx - ext, bx + ext, by - ext, by + ext)
        if win is None:
            continue
        xw, yw = frame.x[win[1]][None, :], frame.y[win[0]]
        uu = (xw - bx) * pax + (yw - by) * pay
        vv = (yw - by) * pax - (xw - bx) * pay
        cr, sr = math.cos(rot), math.sin(rot)
        uu, vv = uu * cr + vv * sr, -uu * sr + vv * cr
        rr = np.sqrt((uu / (su * Rm_t)) ** 2 + (vv / (sv * Rm_t)) ** 2)
        depth = 0.45 * min(su, sv) * Rm_t
        outer = chord(1.0, rr) * depth
        inner = chord(0.9, rr) * depth
        into[win] += mu["c"] * 0.5 * (outer - inner) + mu["t"] * 0.8 * inner * tex[win]
