"""Phantom v2's multi-bone regions, as ``μ·t`` maps on a canvas: the hand (carpals, five metacarpals and
their phalanges, the distal radius and ulna), the foot (tarsals, calcaneus, metatarsals, phalanges), the
pelvis (iliac wings, sacrum, pubic and ischial rami around the obturator foramina, acetabula, femoral heads
and proximal femurs) and the patella over the knee, each inside its soft-tissue envelope. In a lateral view
the rays of the hand and foot crowd together, so their bones overlap.

Each region returns its bones' attenuation, the soft tissue and *lesion sites*: ``(bone, u_lo, u_hi)``,
a :class:`~bonetumor.data.phantom.geometry.Bone` (or a :class:`TubularBone`) and the stretch along its axis
where a lesion may sit. The hip bone's site is a "virtual" bone along the ilium (used to place lesions only).
"""

from __future__ import annotations

import math

import numpy as np

from bonetumor.data.phantom.geometry import Bone, chord, segment_dist

#: Ray lengths (fraction of the hand/foot length): metacarpal or metatarsal, proximal, middle, distal phalanx;
#: shaft radius of the first bone, ray angle (degrees from the long axis) and base position across (× length).
HAND_RAYS = [((0.22, 0.16, 0.0, 0.13), 0.034, -38, -0.15), ((0.33, 0.22, 0.14, 0.10), 0.028, -12, -0.075),
             ((0.32, 0.25, 0.16, 0.10), 0.028, -2, 0.0), ((0.29, 0.23, 0.15, 0.10), 0.026, 8, 0.065),
             ((0.27, 0.18, 0.11, 0.09), 0.024, 18, 0.125)]
FOOT_RAYS = [((0.27, 0.12, 0.0, 0.09), 0.048, -8, -0.12), ((0.31, 0.10, 0.05, 0.05), 0.027, -3, -0.04),
             ((0.29, 0.09, 0.05, 0.04), 0.026, 2, 0.03), ((0.27, 0.08, 0.04, 0.04), 0.025, 7, 0.09),
             ((0.25, 0.08, 0.04, 0.04), 0.025, 13, 0.15)]
#: Tarsal/carpal blocks: (along, across, half-axis along, half-axis across) × the region's length.
CARPALS = [(0.06, -0.09, 0.035, 0.03), (0.06, -0.03, 0.035, 0.03), (0.06, 0.03, 0.03, 0.03),
           (0.06, 0.085, 0.03, 0.03), (0.13, -0.08, 0.04, 0.035), (0.13, -0.02, 0.035, 0.03),
           (0.13, 0.04, 0.04, 0.035), (0.12, 0.095, 0.035, 0.03)]
TARSALS = [(0.06, -0.1, 0.05, 0.05), (0.06, -0.03, 0.05, 0.035), (0.06, 0.04, 0.05, 0.035),
           (0.1, 0.12, 0.07, 0.06), (0.17, -0.04, 0.05, 0.12), (0.28, -0.02, 0.1, 0.09), (0.44, 0.0, 0.16, 0.1)]


class TubularBone(Bone):
    """A short tubular bone (metacarpal, phalanx, metatarsal) of length ``L``: version 1's long-bone profile
    mirrored about its middle, so both ends are domed."""

    def __init__(self, end, axis, Rd, L, cortex, physis_open):
        Rm = 1.45 * Rd
        super().__init__(end, axis, Rd, Rm, min(0.6 * Rm, 0.2 * L), min(1.2 * Rm, 0.25 * L), cortex, physis_open)
        self.L = L

    def _fold(self, u):
        u = np.asarray(u, np.float32)
        return np.where(u > self.L, -1.0, np.minimum(u, self.L - u)).astype(np.float32)

    def radius(self, u):
        return super().radius(self._fold(u))

    def cortex(self, u):
        return super().cortex(self._fold(u))

    def attenuation(self, u, v, tex, mu_c, mu_t, mu_marrow):
        return super().attenuation(self._fold(u), v, tex, mu_c, mu_t, mu_marrow)


def _grid(x, y, box):
    """The canvas slices of ``box`` = (x0, x1, y0, y1) and the pixel centres inside, or ``None``."""
    W, H = len(x), len(y)
    x0, x1 = max(0, int(math.floor(box[0]))), min(W, int(math.ceil(box[1])) + 1)
    y0, y1 = max(0, int(math.floor(box[2]))), min(H, int(math.ceil(box[3])) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return (slice(y0, y1), slice(x0, x1)), x[x0:x1][None, :], y[y0:y1][:, None]


def add_tubular(x, y, bone: TubularBone, into, tex, mu) -> None:
    """Add a tubular bone's attenuation into ``into`` over its bounding box."""
    r = bone.Rm + 2.0
    xs, ys = zip(*[bone.xy(uu, vv) for uu in (0.0, bone.L) for vv in (-r, r)])
    got = _grid(x, y, (min(xs), max(xs), min(ys), max(ys)))
    if got is not None:
        win, xw, yw = got
        u, v = bone.uv(xw, yw)
        into[win] += bone.attenuation(u, v, tex[win], mu["c"], mu["t"], mu["marrow"])[0]


def _elliptic_radius(x, y, centre, half_axes, rot):
    """``(window, r)`` around an ellipse (half axes ``a, b``, turned by ``rot``): ``r`` is 1 on its outline,
    0 at its centre; ``None`` when the ellipse lies outside the image."""
    a, b = half_axes
    ext = max(a, b) + 2.0
    got = _grid(x, y, (centre[0] - ext, centre[0] + ext, centre[1] - ext, centre[1] + ext))
    if got is None:
        return None
    win, xw, yw = got
    c, s = math.cos(rot), math.sin(rot)
    du, dv = (xw - centre[0]) * c + (yw - centre[1]) * s, -(xw - centre[0]) * s + (yw - centre[1]) * c
    return win, np.sqrt((du / a) ** 2 + (dv / b) ** 2)


def add_ellipsoid(x, y, centre, half_axes, rot, into, tex, mu, cortex=0.12, depth=None) -> None:
    """Add an ellipsoid bone (carpal, tarsal, patella, femoral head) with a thin cortical shell."""
    a, b = half_axes
    got = _elliptic_radius(x, y, centre, half_axes, rot)
    if got is None:
        return
    win, rr = got
    d = 0.5 * min(a, b) if depth is None else depth
    outer, inner = chord(1.0, rr) * d, chord(1.0 - cortex, rr) * d
    into[win] += mu["c"] * 0.6 * (outer - inner) + mu["t"] * inner * tex[win]


def _ray_bones(base, axis, lengths, Rd0, gap, physis):
    """The tubular bones of one ray (metacarpal/metatarsal then phalanges), end to end along ``axis``."""
    bones, pos = [], np.array(base, float)
    for k, L in enumerate(lengths):
        if L <= 0:
            continue
        Rd = Rd0 * (1.0, 0.85, 0.72, 0.6)[k]
        bones.append(TubularBone(tuple(pos), axis, Rd, L, 0.35, physis))
        pos = pos + (L + gap) * np.array(axis)
    return bones


def rays_region(x, y, tex, mu, kind: str, length: float, origin, tilt: float, spread: float, physis: bool):
    """A hand or foot (``kind``): blocks near ``origin`` (the wrist or heel, at the bottom), rays fanning up
    (``spread`` < 1 crowds them, as in a lateral view). Returns ``(A_bones, A_soft, sites)``."""
    H, W = len(y), len(x)
    A_bones, A_soft = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    up = (math.sin(tilt), -math.cos(tilt))  # from the wrist/heel towards the fingers/toes
    across = (-up[1], up[0])
    rays, blocks, block_start = (HAND_RAYS, CARPALS, 0.2) if kind == "hand" else (FOOT_RAYS, TARSALS, 0.5)

    def at(along, side):
        return (origin[0] + length * (along * up[0] + side * spread * across[0]),
                origin[1] + length * (along * up[1] + side * spread * across[1]))

    for along, side, ha, hc in blocks:
        add_ellipsoid(x, y, at(block_start - along, side), (hc * length * max(spread, 0.5), ha * length),
                      tilt, A_bones, tex, mu)
    sites, soft = [], []
    for lengths, Rd, angle, side in rays:
        th = tilt + math.radians(angle) * spread
        axis = (math.sin(th), -math.cos(th))
        base = at(block_start + (0.07 if angle < -30 else 0.0), side)
        bones = _ray_bones(base, axis, [f * length for f in lengths], Rd * length, 0.012 * length, physis)
        for bone in bones:
            add_tubular(x, y, bone, A_bones, tex, mu)
            sites.append((bone, 0.0, bone.L))
        tip = bones[-1].xy(bones[-1].L, 0.0)
        soft.append((base, tip, 2.0 * Rd * length))
    if kind == "hand":  # the distal radius and ulna below the carpals
        for side, Rd, shift in ((-0.06, 0.05, 0.0), (0.07, 0.035, 0.02)):
            fore = Bone(at(-0.02 - shift, side), (-up[0], -up[1]), Rd * length, 1.6 * Rd * length,
                        0.6 * 1.6 * Rd * length, 1.5 * 1.6 * Rd * length, 0.3, physis)
            _add_long(x, y, fore, A_bones, tex, mu)
    A_soft += _envelope(x, y, soft, at(block_start * 0.6, 0.0), (0.24 * length * max(spread, 0.45), 0.32 * length),
                        tilt, mu)
    return A_bones, A_soft, sites


def _add_long(x, y, bone: Bone, into, tex, mu) -> None:
    """Add a long bone reaching past the canvas edge (a forearm bone at the wrist)."""
    H, W = len(y), len(x)
    reach = max(max((cx - bone.ex) * bone.dx + (cy - bone.ey) * bone.dy for cx in (0, W) for cy in (0, H)), 0.0)
    xs, ys = zip(*[bone.xy(uu, vv) for uu in (0.0, reach) for vv in (-bone.Rm - 2, bone.Rm + 2)])
    got = _grid(x, y, (min(xs), max(xs), min(ys), max(ys)))
    if got is not None:
        win, xw, yw = got
        u, v = bone.uv(xw, yw)
        into[win] += bone.attenuation(u, v, tex[win], mu["c"], mu["t"], mu["marrow"])[0]


def _envelope(x, y, capsules, palm_centre, palm_axes, tilt, mu):
    """Soft tissue: the thickest of the digits' capsules and the palm/sole ellipsoid (fat over muscle)."""
    xg, yg = x[None, :], y[:, None]
    t = np.zeros((len(y), len(x)), np.float32)
    for p, q, r in capsules:
        t = np.maximum(t, chord(r, segment_dist(xg, yg, p, q)))
    c, s = math.cos(tilt), math.sin(tilt)
    du = ((xg - palm_centre[0]) * c + (yg - palm_centre[1]) * s) / palm_axes[0]
    dv = (-(xg - palm_centre[0]) * s + (yg - palm_centre[1]) * c) / palm_axes[1]
    t = np.maximum(t, chord(1.0, np.sqrt(du * du + dv * dv)) * 0.35 * palm_axes[0])
    return (mu["muscle"] * 0.9 * t).astype(np.float32)


def pelvis_region(x, y, tex, mu, width: float, centre, tilt: float, physis: bool):
    """An AP pelvis of ``width`` pixels: iliac wings, sacrum, the rami around the obturator foramina,
    acetabula, femoral heads and proximal femurs. Returns ``(A_bones, A_soft, sites)`` with the sites keyed
    ``"hip bone"`` (two virtual bones along the ilia) and ``"femur"``."""
    H, W = len(y), len(x)
    P = width
    A = np.zeros((H, W), np.float32)
    xc, yc = centre
    rot = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])

    def at(dx, dy):
        d = rot @ np.array([dx * P, dy * P])
        return (xc + d[0], yc + d[1])

    for sgn in (-1, 1):
        _plate(x, y, at(sgn * 0.25, -0.14), (0.17 * P, 0.19 * P), tilt + sgn * 0.35, 0.05 * P, A, tex, mu)
        _ring(x, y, at(sgn * 0.1, 0.2), (0.065 * P, 0.05 * P), 0.012 * P, A, mu)
        add_ellipsoid(x, y, at(sgn * 0.21, 0.06), (0.06 * P, 0.06 * P), 0.0, A, tex, mu)  # femoral head
    _plate(x, y, at(0.0, -0.12), (0.09 * P, 0.15 * P), tilt, 0.08 * P, A, tex, mu)  # sacrum
    _ring(x, y, at(0.0, 0.0), (0.2 * P, 0.15 * P), 0.006 * P, A, mu)  # pelvic brim
    sites = {"hip bone": [], "femur": []}
    for sgn in (-1, 1):
        down = (rot @ np.array([sgn * 0.2, 1.0]))
        down = tuple(down / np.linalg.norm(down))
        femur = Bone(at(sgn * 0.23, 0.04), down, 0.035 * P, 0.07 * P, 0.05 * P, 0.1 * P, 0.32, physis)
        _add_long(x, y, femur, A, tex, mu)
        sites["femur"].append((femur, 0.05 * P, 0.35 * P))
        upward = rot @ np.array([sgn * 0.35, -1.0])
        ilium = Bone(at(sgn * 0.2, 0.0), tuple(upward / np.linalg.norm(upward)), 0.08 * P, 0.1 * P,
                     0.02 * P, 0.05 * P, 0.2, False)
        sites["hip bone"].append((ilium, 0.04 * P, 0.28 * P))
    xg, yg = x[None, :], y[:, None]
    body = np.sqrt(((xg - xc) / (0.8 * P)) ** 2 + ((yg - yc - 0.05 * P) / (0.9 * P)) ** 2)
    A_soft = (mu["muscle"] * chord(1.0, body) * 0.12 * P).astype(np.float32)
    return A, A_soft, sites


def _plate(x, y, centre, half_axes, rot, thick, into, tex, mu) -> None:
    """A flat bone (iliac wing, sacrum): a plate of cancellous bone with a dense rim."""
    got = _elliptic_radius(x, y, centre, half_axes, rot)
    if got is None:
        return
    win, r = got
    inside = np.clip((1.0 - r) / 0.04, 0, 1)
    into[win] += thick * inside * (mu["t"] * 0.7 * tex[win]) + mu["c"] * 0.25 * thick * np.exp(-((r - 0.97) / 0.04) ** 2)


def _ring(x, y, centre, half_axes, width, into, mu) -> None:
    """A ring of cortical bone (the rami around an obturator foramen, the pelvic brim)."""
    a, b = half_axes
    ext = max(a, b) + 3 * width + 2
    got = _grid(x, y, (centre[0] - ext, centre[0] + ext, centre[1] - ext, centre[1] + ext))
    if got is None:
        return
    win, xw, yw = got
    r = np.sqrt(((xw - centre[0]) / a) ** 2 + ((yw - centre[1]) / b) ** 2)
    d = np.abs(r - 1.0) * min(a, b)
    into[win] += mu["c"] * 0.8 * chord(width, d)
