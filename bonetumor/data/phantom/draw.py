"""Drawing lesions into one image: a :class:`Scene` (the target bone, the attenuation maps a lesion changes,
the image's texture generator) and one function per lesion kind, each returning the lesion's window and
mask (or ``None`` when it falls off the canvas).

Lytic lesions (:func:`draw_lytic`) are placed in their zone of the bone, then drawn step by step: the lysis
(narrow or wide zone of transition, permeative and moth-eaten holes), the margins (sclerotic rim, septa,
tumour bone), a soft-tissue mass with its periosteal signs (sunburst spicules, hair-on-end, Codman
triangles) and lamellated periosteal reaction. Every step draws its noise from the scene's generator in a
fixed order, so an image depends only on its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bonetumor.data.phantom.geometry import Bone, bandpass, chord, ellipse_r, segment_dist, smoothstep, window


class Scene:
    """Everything a lesion needs to draw itself into one image."""

    def __init__(self, x, y, shape, S, sc, bone, A_target, A_add, tex_rng, view_angle, mu, joint_gap):
        self.x, self.y, self.shape, self.S, self.sc = x, y, shape, S, sc
        self.bone, self.A_target, self.A_add, self.rng = bone, A_target, A_add, tex_rng
        self.view_angle, self.mu, self.joint_gap = view_angle, mu, joint_gap
        self.u_max = None  # farthest visible point of the target bone along its shaft

    def proj(self, phi):
        return math.cos(phi + self.view_angle)

    def local(self, u_c, v_c, half):
        cx, cy = self.bone.xy(u_c, v_c)
        win = window(self.shape, cx, cy, half)
        if win is None:
            return None, None, None
        u, v = self.bone.uv(self.x[win[1]][None, :], self.y[win[0]][:, None])
        return win, u.astype(np.float32), v.astype(np.float32)

    def noise(self, win, s1, s2):
        shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        return bandpass(self.rng, shape, s1 * self.sc, s2 * self.sc)


def zone_u(bone: Bone, zone: str, pos: float, S: float) -> float:
    """Position along the shaft of ``pos`` within the epiphysis, metaphysis or diaphysis."""
    if zone == "epi":
        return pos * bone.e
    if zone == "meta":
        return bone.e + pos * bone.m
    return bone.e + bone.m + pos * S


def draw_exostosis(p, sc: Scene):
    bone, S = sc.bone, sc.S
    c = sc.proj(p["phi"])
    side = 1.0 if c >= 0 else -1.0
    fac = max(abs(c), 0.45)
    u0 = bone.e + p["u_rel"] * bone.m
    R0 = float(bone.radius(u0))
    L, r_st, r_b, r_cap = p["L"] * S * fac, p["r_st"] * S, p["r_b"] * S, p["r_cap"] * S
    beta = p["beta"]
    v0 = side * R0 * 0.8
    cu, cs = math.cos(beta), math.sin(beta)
    half = L + r_cap + r_b + 2
    win, u, v = sc.local(u0 + 0.5 * L * cu, v0 + side * 0.5 * L * cs, half)
    if win is None:
        return None
    pp = (u - u0) * cu + (v - v0) * side * cs
    q = -(u - u0) * side * cs + (v - v0) * cu
    R_st = r_st + (r_b - r_st) * np.exp(-np.maximum(pp, 0) / (0.25 * L + 1e-3))
    capc = max(L - r_cap, 0.0)
    cap = r_cap * np.sqrt(np.clip(1 - ((pp - capc) / r_cap) ** 2, 0, 1))
    Rx = np.where(pp > capc, cap, np.maximum(R_st, np.where(pp > capc - r_cap, cap, 0)))
    Rx = np.where(pp < -R0 * 0.3, 0.0, Rx)
    cort = np.maximum(0.16 * r_st, 0.7)
    Ri = np.maximum(Rx - cort, 0)
    t_out, t_in = chord(Rx, q), chord(Ri, q)
    tex = 1.0 + 0.3 * sc.noise(win, 0.8, 2.5)
    A = p["density"] * (sc.mu["c"] * (t_out - t_in) + sc.mu["t"] * tex * t_in)
    Rp = bone.radius(u)
    outside = smoothstep((side * v - (Rp - bone.cortex(u))) / 2.0 + 0.5)
    sc.A_add[win] += A * outside
    mask = (Rx > np.abs(q)) & (side * v > Rp - 0.5 * bone.cortex(u)) & (pp > -2)
    return win, mask


def draw_bodies(p, sc: Scene):
    bone, S = sc.bone, sc.S
    c = sc.proj(p["phi"])
    side = 1.0 if c >= 0 else -1.0
    uc = -0.5 * sc.joint_gap + 0.3 * S
    vc = side * p["off_v"] * bone.Rm
    su, sv = p["spread_u"] * S, p["spread_v"] * S * max(abs(c), 0.5)
    half = max(su, sv) + 0.4 * S + 2
    win, u, v = sc.local(uc, vc, half)
    if win is None:
        return None
    mask = np.zeros(u.shape, bool)
    for bu, bv, br, bd in p["bodies"]:
        r = np.hypot(u - (uc + bu * su), v - (vc + bv * sv)) / (br * S)
        sc.A_add[win] += p["amp"] * bd * (0.35 * np.sqrt(np.clip(1 - r * r, 0, 1))
                                          + np.exp(-((r - 0.8) / 0.18) ** 2))
        mask |= r < 1.0
    from skimage.morphology import convex_hull_image
    return win, convex_hull_image(mask) if mask.any() else mask


@dataclass
class _Local:
    """A lytic lesion's window in the target bone's coordinates and the values its steps share."""

    win: tuple
    u: np.ndarray
    v: np.ndarray
    R: np.ndarray  # the bone's radius at u
    uc: float  # centre along the shaft
    a: float  # half-length along the shaft
    Ruc: float  # the bone's radius at the lesion's zone position
    m_b: float  # the soft-tissue mass's half-width (0 without a mass)
    c: float  # projection of the lesion's angular position onto the image plane
    side: float

    @property
    def centred(self) -> bool:
        """Whether a mass sits around the bone rather than on one side of it."""
        return abs(self.c) < 0.3


def draw_lytic(p, sc: Scene):
    c = sc.proj(p["phi"])
    side = 1.0 if c >= 0 else -1.0
    uc, vc, a, b, Ruc = _lytic_placement(p, sc, c)
    mass = p.get("mass")
    m_b = mass["b"] * sc.S if mass else 0.0
    half = max(a * (mass["a_scale"] if mass else 1.0) * 1.5, Ruc + m_b + b) + 0.5 * sc.S + 3
    win, u, v = sc.local(uc, vc, half)
    if win is None:
        return None
    at = _Local(win, u, v, sc.bone.radius(u), uc, a, Ruc, m_b, c, side)
    r = ellipse_r(u, v, uc, vc, a, b, p["harm"])
    _lysis(p, sc, at, r)
    _margins(p, sc, at, r)
    mask = r < 1.0
    if mass:
        mask |= _soft_tissue_mass(p, sc, at)
    if p["lamellated"]:
        _lamellae(p, sc, at)
    return win, mask


def _lytic_placement(p, sc: Scene, c: float) -> tuple[float, float, float, float, float]:
    """Centre (``uc``, ``vc``), half-axes (``a`` along, ``b`` across the shaft) and the bone's radius ``Ruc``
    at the lesion's zone position; benign lesions stay inside the (at most slightly expanded) bone."""
    bone, S = sc.bone, sc.S
    uc = zone_u(bone, p["zone"], p["pos"], S)
    Ruc = float(bone.radius(uc))
    if p.get("cortical"):
        b = p["b_abs"] * S
        a = b * p["aspect"]
        vc = c * (Ruc - 0.5 * float(bone.cortex(uc)))
    else:
        b = p["b_rel"] * Ruc if "b_rel" in p else p["b_abs"] * S
        a = p["a_abs"] * S if "a_abs" in p else b * p["aspect"]
        b = min(b, 1.05 * Ruc)
        vc = c * p.get("ecc", 0.0) * Ruc
        if p["transition"] < 0.1:  # benign: inside the (at most slightly expanded) bone
            lim = max(Ruc * p.get("expand", 1.03) - b, 0.0)
            vc = float(np.clip(vc, -lim, lim))
    if p["zone"] == "meta":  # metaphyseal lesions start beyond the growth plate
        uc = max(uc, bone.e + 0.8 * a)
    if p["zone"] == "epi":  # reaches the subchondral bone
        uc = max(uc, 0.75 * a)
    if sc.u_max is not None:
        uc = min(uc, sc.u_max - a - 0.5 * S)
    return uc, vc, a, b, Ruc


def _lysis(p, sc: Scene, at: _Local, r) -> None:
    """Thin the target bone inside the lesion: narrow or wide transition, permeative and moth-eaten holes."""
    win = at.win
    tau = p["transition"]
    w = np.clip((1.0 - r) / (2 * tau) + 0.5, 0, 1)
    lytic = p["depth"] * w * (0.7 + 0.3 * np.sqrt(np.clip(1 - r * r, 0, 1)))
    if p["permeative"] or p["moth"]:
        zone = np.exp(-(np.maximum(r - 0.5, 0) / 0.6) ** 2) * (r < 1.9)
        if p["permeative"]:
            holes = np.clip((sc.noise(win, 0.7, 2.0) - 0.6) / 0.8, 0, 1)
            lytic = lytic + p["permeative"] * holes * zone
        if p["moth"]:
            holes = np.clip((sc.noise(win, 1.6, 4.5) - 0.5) / 0.8, 0, 1)
            lytic = lytic + p["moth"] * holes * zone
    if tau > 0.1:  # ill-defined: irregular patchy lysis
        lytic = lytic * np.clip(1.0 + 0.35 * sc.noise(win, 2.0, 6.0), 0.3, 1.6)
    sc.A_target[win] *= np.clip(1.0 - lytic, 0.05, 1.0)


def _margins(p, sc: Scene, at: _Local, r) -> None:
    """Sclerotic rim, septa (multiloculated) and cloud-like tumour bone inside the lesion."""
    win, v, R = at.win, at.v, at.R
    if p["rim"]:  # sclerotic rim (a thin shell where the lesion expands the bone)
        support = np.abs(v) < R * p.get("expand", 1.03) + 1.0
        sc.A_add[win] += p["rim"] * np.exp(-((r - 1.0) / p["rim_w"]) ** 2) * support
    if p["septa"]:
        n = sc.noise(win, 2.2, 7.0)
        sc.A_add[win] += p["septa"] * np.exp(-(n / 0.18) ** 2) * (r < 0.95)
    if p["sclerotic"]:
        cloud = np.clip(sc.noise(win, 1.8, 6.0) - 0.1, 0, None)
        sc.A_add[win] += p["sclerotic"] * cloud * np.clip(1.2 - r, 0, 1) * (np.abs(v) < R + 1)


def _soft_tissue_mass(p, sc: Scene, at: _Local):
    """The soft-tissue mass (with tumour bone and periosteal signs); returns the mass's mask."""
    mass = p["mass"]
    win, u, v, R, uc, Ruc, m_b = at.win, at.u, at.v, at.R, at.uc, at.Ruc, at.m_b
    a_m = at.a * mass["a_scale"]
    around = mass["circ"] or at.centred
    if around:
        vm, bm = 0.0, Ruc + m_b
    else:
        vm, bm = at.side * 0.5 * (Ruc + m_b) * 0.9, 0.5 * (Ruc + m_b) * 1.1 + 0.5 * m_b
    rm = ellipse_r(u, v, uc, vm, a_m, bm, mass["harm"])
    thick = np.clip(1 - rm * rm, 0, 1) ** 0.8  # soft, indistinct margin
    outside = np.abs(v) > R
    sc.A_add[win] += sc.mu["mass"] * (2 * bm) * thick * (0.4 + 0.6 * outside)
    soft_edge = np.clip((1.0 - rm) / 0.15, 0, 1)
    if mass["bone"]:
        cloud = np.clip(sc.noise(win, 2.0, 7.0) - 0.3, 0, None)
        sc.A_add[win] += mass["bone"] * cloud * soft_edge * outside
    if p["sunburst"]:
        _sunburst(p, sc, at, (uc, 0.0 if around else at.side * 0.3 * Ruc), outside, soft_edge)
    if p.get("hair"):
        sp = max(4.0 * sc.sc, 2.0)
        d = ((u - uc) % sp) - sp / 2
        sc.A_add[win] += 0.35 * np.exp(-(d / max(0.8 * sc.sc, 0.6)) ** 2) * outside * soft_edge \
            * (np.abs(v) < R + 0.7 * m_b)
    if p["codman"]:
        _codman_triangles(sc, at, a_m, (-1.0, 1.0) if around else (at.side,))
    return rm < 1.0


def _sunburst(p, sc: Scene, at: _Local, origin, outside, soft_edge) -> None:
    """Spicules radiating from ``origin`` through the mass, of random lengths."""
    u, v, R, m_b = at.u, at.v, at.R, at.m_b
    ou, ov = origin
    ang = np.arctan2(v - ov, u - ou)
    rho = np.hypot(u - ou, v - ov)
    spacing = 4.5 * max(sc.sc, 0.5) / max(at.Ruc + 0.5 * m_b, 1.0)
    k = np.floor(ang / spacing)
    delta = (ang - (k + 0.5) * spacing) * rho
    lens = np.random.default_rng(int(sc.rng.integers(1 << 31))).uniform(0.35, 1.0, 4096)
    spic_len = lens[(k.astype(np.int64) % 4096)]
    reach = R + p["spic_len"] * m_b * spic_len
    width = max(0.9 * sc.sc, 0.6)
    spic = np.exp(-(delta / width) ** 2) * outside * (np.abs(v) < reach) * soft_edge
    sc.A_add[at.win] += p["spic_mu"] * spic


def _codman_triangles(sc: Scene, at: _Local, a_m: float, sides) -> None:
    """Periosteum lifted at the tumour's margin: a dense triangle between it and the cortex."""
    bone, S, u, v, R = sc.bone, sc.S, at.u, at.v, at.R
    for end in (-1, 1):
        u_e = at.uc + end * a_m * 0.9
        for sd in sides:
            Ro = float(bone.radius(u_e + end * 0.9 * S))
            Ri_ = float(bone.radius(u_e))
            tip = (u_e, sd * (Ri_ + 0.55 * at.m_b))
            foot = (u_e + end * 0.9 * S, sd * Ro)
            dist = segment_dist(u, v, foot, tip)
            sc.A_add[at.win] += 0.5 * np.exp(-(dist / max(1.0 * sc.sc, 0.6)) ** 2)
            # fill: between the lifted line and the cortex
            t = np.clip((u - foot[0]) / (tip[0] - foot[0]), 0, 1)
            top = foot[1] + t * (tip[1] - foot[1])
            inside = (sd * v > R) & (sd * v < sd * top) & ((u - foot[0]) * (u - tip[0]) < 0)
            sc.A_add[at.win] += 0.18 * inside


def _lamellae(p, sc: Scene, at: _Local) -> None:
    """Lamellated ("onion skin") periosteal reaction along the lesion."""
    u, v, R, a = at.u, at.v, at.R, at.a
    mass = p.get("mass")
    sp = max(0.16 * sc.S, 2.2 * sc.sc)
    layers = sum(np.exp(-((np.abs(v) - R - k * sp) / max(0.7 * sc.sc, 0.55)) ** 2) for k in (1, 2, 3))
    along = np.exp(-(np.maximum(np.abs(u - at.uc) - a * 0.9, 0) / (0.3 * a)) ** 2)
    sides = 1.0 if (mass is None or mass["circ"] or at.centred) else (at.side * v > 0)
    sc.A_add[at.win] += 0.35 * layers * along * sides


#: The drawing function of each lesion ``kind``.
DRAW = {"exostosis": draw_exostosis, "bodies": draw_bodies, "lytic": draw_lytic}
