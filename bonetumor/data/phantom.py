"""A synthetic radiograph phantom that writes the BTXRD on-disk layout.

``generate(out, n_images, seed)`` writes::

    out/images/IMG000001.jpeg …        8-bit greyscale JPEG radiographs (longest side = ``size``)
    out/Annotations/IMG000001.json …   LabelMe 5.4.1 files, tumour images only
    out/dataset.xlsx                   sheet "Sheet1", the 37 BTXRD columns, one row per image
    out/phantom.json                   the generator's parameters (provenance; not part of BTXRD)

so that real and synthetic data go through the same reader (:mod:`bonetumor.data.btxrd`).

How an image is made
--------------------
*Anatomy.* Each image shows one joint region of a limb (knee, hip, ankle, shoulder, elbow, wrist): the
"target" long bone (the sheet's site: femur, tibia, fibula, humerus, radius or ulna; with its pair bone for
the leg and forearm), across a joint gap the partner bone(s) or a carpal/tarsal/glenoid/acetabular block, all
inside a soft-tissue envelope (muscle core + subcutaneous fat). A long bone is a solid of revolution with a
radius profile: a domed epiphysis, a flaring metaphysis and a tubular diaphysis; a cortical shell (thick in
the diaphysis, thin at the ends) around a medullary cavity whose cancellous density is high at the ends and
carries band-pass trabecular texture. Children (age < 16) show an open growth plate.

*Projection.* Each structure contributes its projected path length ``t`` (chord of a cylinder or ellipsoid
at the pixel's distance from its axis) times a linear attenuation coefficient; the detector sees
``I = I0 · exp(−Σ μ·t)`` (Beer–Lambert) with a heel-effect gradient, quantum (Poisson, normal approximation)
noise, scintillator blur, then the log image is edge-enhanced (unsharp mask, like DR post-processing) and
windowed with a random level, width and gamma. Optional collimator shutters. Exposure, pose, scale, aspect
ratio, side, view and orientation are drawn independently of the lesion class.

*Lesions* are drawn in the target bone's coordinates with the radiological signs that separate the classes:

=========================  ==========================================================================
subtype                    appearance
=========================  ==========================================================================
osteochondroma             exostosis from the metaphysis pointing away from the joint, cortex and
                           medulla continuous with the parent bone (pedunculated or sessile)
multiple osteochondromas   2–4 exostoses, widened metaphysis
simple bone cyst           central metaphyseal lucency, well defined, thin sclerotic rim
giant cell tumor           eccentric epiphyseal-metaphyseal lucency reaching the joint surface,
                           multiloculated ("soap bubble") septa, expanded thin cortex, no thick rim
osteofibroma               diaphyseal intracortical multiloculated lucency with sclerotic margins
synovial osteochondroma    cluster of ring-calcified loose bodies in the joint
other bt                   eccentric lobulated lucency with a thick sclerotic (scalloped) rim
osteosarcoma               metaphyseal, mixed lytic/sclerotic, ill-defined (wide zone of transition),
                           moth-eaten margin, sunburst spicules and/or Codman triangle, soft-tissue
                           mass with cloud-like tumour bone
other mt                   diaphyseal permeative destruction, lamellated ("onion skin") or hair-on-end
                           periosteal reaction, Codman triangle, soft-tissue mass
=========================  ==========================================================================

Benign lesions have narrow zones of transition and (mostly) sclerotic rims; malignant ones wide zones of
transition, aggressive periosteal reaction and a soft-tissue mass. The mask (LabelMe polygon) covers the
lesion including any soft-tissue mass; the rectangle is the polygon's bounds.

*Sheet.* Patients come as runs of consecutive ids (1–3 views, about 75 % of images in multi-view runs) with
the same centre, age, gender, site and lesion; BTXRD-like class × centre proportions, subtype frequencies
and ages. About 1 % of images are near-duplicates (an earlier image re-saved with another JPEG quality).

*Determinism.* The plan (patients, classes, views) comes from ``SeedSequence([seed, 0])``; an image's pixels
from ``SeedSequence([seed, 1, patient])`` (anatomy and lesion, shared by the patient's views) and
``SeedSequence([seed, 2, index])`` (pose, exposure, noise), so images do not depend on generation order or
on the number of worker processes. JPEG and xlsx bytes are reproducible (zip timestamps and document
dates are fixed), so the same seed gives byte-identical files.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bonetumor.data.layout import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES, SHEET_COLUMNS, SUBTYPES, VIEW_COLUMNS

__all__ = ["generate", "plan", "render", "SHEET_COLUMNS", "SUBTYPES", "DEFAULT_PROPORTIONS"]

VERSION = "1"
LABELME_VERSION = "5.4.1"

#: BTXRD's class balance (1,879 normal, 1,525 benign, 342 malignant of 3,746).
DEFAULT_PROPORTIONS = {"normal": 0.50, "benign": 0.41, "malignant": 0.09}
#: BTXRD subtype counts (Yao et al. 2025), used as relative frequencies within a class.
SUBTYPE_WEIGHTS = {"osteochondroma": 754, "multiple osteochondromas": 263, "simple bone cyst": 206,
                   "giant cell tumor": 93, "osteofibroma": 44, "synovial osteochondroma": 50, "other bt": 115,
                   "osteosarcoma": 297, "other mt": 45}
#: BTXRD images per centre (1, 2, 3) and class.
CENTRE_COUNTS = {"normal": (1593, 259, 27), "benign": (1110, 214, 201), "malignant": (235, 76, 31)}
#: Sites drawn, independent of the class (so anatomy carries no class signal), and the joint regions
#: (templates) each is imaged in.
SITE_WEIGHTS = {"femur": 0.30, "tibia": 0.25, "fibula": 0.06, "humerus": 0.17, "radius": 0.12, "ulna": 0.10}
SITE_TEMPLATES = {"femur": (("knee_femur", 0.75), ("hip", 0.25)),
                  "tibia": (("knee_tibia", 0.7), ("ankle", 0.3)),
                  "fibula": (("knee_tibia", 0.6), ("ankle", 0.4)),
                  "humerus": (("shoulder", 0.5), ("elbow_humerus", 0.5)),
                  "radius": (("wrist", 0.6), ("elbow_forearm", 0.4)),
                  "ulna": (("wrist", 0.6), ("elbow_forearm", 0.4))}
TEMPLATE_JOINT = {"knee_femur": "knee-joint", "knee_tibia": "knee-joint", "hip": "hip-joint",
                  "ankle": "ankle-joint", "shoulder": "shoulder-joint", "elbow_humerus": "elbow-joint",
                  "elbow_forearm": "elbow-joint", "wrist": "wrist-joint"}
SITE_LIMB = {"femur": "lower limb", "tibia": "lower limb", "fibula": "lower limb", "humerus": "upper limb",
             "radius": "upper limb", "ulna": "upper limb"}
#: Where each subtype may arise (sites it is drawn on; the rest get weight 0).
SUBTYPE_SITES = {"osteofibroma": {"tibia", "fibula"}, "giant cell tumor": {"femur", "tibia", "radius", "humerus"},
                 "simple bone cyst": {"femur", "humerus", "tibia", "fibula", "radius", "ulna"}}
VIEW_ANGLE = {"frontal": 0.0, "lateral": math.pi / 2, "oblique": math.pi / 4}
CENTRE_STYLE = {  # detector/processing differences between centres (not exposure: no global-histogram shift)
    1: {"quality": 92, "blur": 1.0, "noise": 1.0, "usm": 1.0},
    2: {"quality": 88, "blur": 1.3, "noise": 1.6, "usm": 0.6},
    3: {"quality": 85, "blur": 0.8, "noise": 1.2, "usm": 1.6},
}


# ----------------------------------------------------------------------------------------------------------
# Plan: patients, classes, views, duplicates (cheap, sequential, from one seed)
# ----------------------------------------------------------------------------------------------------------

def _proportions(proportions: dict[str, float] | None) -> dict[str, float]:
    props = dict(DEFAULT_PROPORTIONS if proportions is None else proportions)
    unknown = set(props) - set(DEFAULT_PROPORTIONS)
    if unknown:
        raise ValueError(f"unknown classes in proportions: {sorted(unknown)} (use normal, benign, malignant)")
    props = {c: float(props.get(c, 0.0)) for c in DEFAULT_PROPORTIONS}
    if any(v < 0 or not math.isfinite(v) for v in props.values()) or sum(props.values()) <= 0:
        raise ValueError(f"proportions must be non-negative with a positive sum, got {proportions}")
    total = sum(props.values())
    return {c: v / total for c, v in props.items()}


def _age(subtype: str | None, rng: np.random.Generator) -> int:
    mean, sd, lo, hi = {None: (40, 20, 1, 88), "osteochondroma": (16, 6, 3, 60),
                        "multiple osteochondromas": (14, 6, 2, 50), "simple bone cyst": (11, 4, 3, 30),
                        "giant cell tumor": (32, 9, 18, 65), "osteofibroma": (14, 8, 2, 40),
                        "synovial osteochondroma": (42, 13, 18, 80), "other bt": (25, 15, 2, 80),
                        "osteosarcoma": (16, 5, 5, 88), "other mt": (45, 20, 5, 88)}[subtype]
    if subtype == "osteosarcoma" and rng.random() < 0.15:  # the second, older peak
        mean, sd = 62, 10
    return int(np.clip(round(rng.normal(mean, sd)), lo, hi))


def plan(n_images: int, seed: int = 0, proportions: dict[str, float] | None = None) -> list[dict]:
    """The image list: one dict per image (index, name, patient, class, subtype, centre, age, gender, site,
    template, view, duplicate source). Cheap; :func:`render` turns an entry into pixels and masks."""
    n_images = int(n_images)
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    props = _proportions(proportions)
    classes = list(props)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    n_dup = int(round(0.01 * n_images)) if n_images >= 50 else 0
    n_orig = n_images - n_dup
    counts = dict.fromkeys(classes, 0)
    entries: list[dict] = []
    patient = 0
    while len(entries) < n_orig:
        # class: the one most below its quota, sampled (keeps proportions close even for small datasets)
        filled = len(entries) + 1.5
        deficit = np.array([max(props[c] * filled - counts[c], 0.0) + 1e-3 * props[c] for c in classes])
        deficit[np.array([props[c] for c in classes]) == 0] = 0
        label = classes[rng.choice(len(classes), p=deficit / deficit.sum())]
        site = str(rng.choice(list(SITE_WEIGHTS), p=np.array(list(SITE_WEIGHTS.values())) / sum(SITE_WEIGHTS.values())))
        names, weights = zip(*SITE_TEMPLATES[site])
        template = str(rng.choice(names, p=np.array(weights) / sum(weights)))
        subtype = None
        if label != "normal":
            options = BENIGN_SUBTYPES if label == "benign" else MALIGNANT_SUBTYPES
            w = np.array([SUBTYPE_WEIGHTS[s] * (site in SUBTYPE_SITES.get(s, {site})) for s in options], float)
            subtype = str(options[rng.choice(len(options), p=w / w.sum())])
        centre = int(rng.choice(3, p=np.array(CENTRE_COUNTS[label]) / sum(CENTRE_COUNTS[label]))) + 1
        gender_male = {"osteosarcoma": 0.58, "giant cell tumor": 0.45}.get(subtype, 0.53)
        gender = "M" if rng.random() < gender_male else "F"
        age = _age(subtype, rng)
        n_views = int(rng.choice([1, 2, 3], p=[0.4, 0.5, 0.1]))
        if n_views == 1:
            views = [str(rng.choice(VIEW_COLUMNS, p=[0.6, 0.3, 0.1]))]
        else:
            views = ["frontal", "lateral", "oblique"][:n_views]
            if rng.random() < 0.3:
                views[0], views[1] = views[1], views[0]
        joint_col = bool(rng.random() < 0.3)
        patient += 1
        for view in views[: n_orig - len(entries)]:
            entries.append({"patient": patient, "label": label, "subtype": subtype, "centre": centre, "age": age,
                            "gender": gender, "site": site, "template": template, "joint_col": joint_col,
                            "view": view, "duplicate_of": None})
            counts[label] += 1
    for entry_index, entry in enumerate(entries):
        entry["key"] = entry_index + 1  # pixel-RNG key, fixed before duplicates are inserted
    # near-duplicates: an earlier image re-saved (another JPEG quality), placed elsewhere in the list
    for source in sorted(rng.choice(n_orig, size=n_dup, replace=False).tolist()) if n_dup else []:
        dup = dict(entries[source], duplicate_of=entries[source]["key"])
        entries.insert(int(rng.integers(0, len(entries) + 1)), dup)
    for i, entry in enumerate(entries, start=1):
        entry["index"] = i
        entry["name"] = f"IMG{i:06d}"
        entry["seed"] = int(seed)
    by_key = {e["key"]: e["name"] for e in entries if e["duplicate_of"] is None}
    for entry in entries:
        if entry["duplicate_of"] is not None:
            entry["duplicate_of"] = by_key[entry["duplicate_of"]]
    return entries


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------------------

def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _chord(radius, dist):
    """Projected path length through a cylinder/sphere of ``radius`` at ``dist`` from its axis/centre."""
    return 2.0 * np.sqrt(np.maximum(radius * radius - dist * dist, 0.0))


class _Bone:
    """A long bone: articular end at ``end`` (x, y), shaft along unit vector ``axis``; radius profile with a
    domed epiphysis (length ``e``), a flaring metaphysis (length ``m``, radius ``Rm`` → ``Rd``)."""

    def __init__(self, end, axis, Rd, Rm, e, m, cortex, physis_open):
        self.ex, self.ey = end
        self.dx, self.dy = axis
        self.Rd, self.Rm, self.e, self.m = Rd, Rm, e, m
        self.cd, self.cm = cortex * Rd, 0.06 * Rm
        self.physis_open = physis_open

    def uv(self, x, y):
        u = (x - self.ex) * self.dx + (y - self.ey) * self.dy
        v = (y - self.ey) * self.dx - (x - self.ex) * self.dy
        return u, v

    def xy(self, u, v):
        return self.ex + u * self.dx - v * self.dy, self.ey + u * self.dy + v * self.dx

    def radius(self, u):
        u = np.asarray(u, np.float32)
        x = np.clip((self.e - u) / self.e, 0.0, 1.0)
        cap = self.Rm * np.sqrt(np.sqrt(np.clip(1.0 - x ** 4, 0.0, 1.0)))
        t = np.clip((u - self.e) / self.m, 0.0, 1.0)
        shaft = self.Rd + (self.Rm - self.Rd) * 0.5 * (1 + np.cos(np.pi * t))
        return np.where(u < 0, 0.0, np.where(u < self.e, cap, shaft)).astype(np.float32)

    def cortex(self, u):
        return self.cm + (self.cd - self.cm) * _smoothstep((u - self.e - 0.4 * self.m) / (0.9 * self.m))

    def attenuation(self, u, v, tex, mu_c, mu_t, mu_marrow):
        R = self.radius(u)
        Ri = np.maximum(R - self.cortex(u), 0.0)
        t_out, t_in = _chord(R, v), _chord(Ri, v)
        dens = mu_marrow + (mu_t - mu_marrow) * (1.0 - _smoothstep((u - self.e) / (1.3 * self.m)))
        wave = 0.08 * self.Rm * np.sin(v * (2.2 / max(self.Rm, 1e-3)))
        plate = np.exp(-((u - self.e - wave) / max(0.06 * self.Rm, 0.7)) ** 2)
        dens = dens * (1.0 - 0.75 * plate) if self.physis_open else dens * (1.0 + 0.5 * plate)
        return mu_c * (t_out - t_in) + dens * tex * t_in, t_out


def _window(shape, cx, cy, half):
    H, W = shape
    y0, y1 = int(max(0, math.floor(cy - half))), int(min(H, math.ceil(cy + half) + 1))
    x0, x1 = int(max(0, math.floor(cx - half))), int(min(W, math.ceil(cx + half) + 1))
    if y1 <= y0 or x1 <= x0:
        return None
    return (slice(y0, y1), slice(x0, x1))


def _bandpass(rng, shape, s1, s2):
    n = rng.standard_normal(shape, dtype=np.float32)
    a = ndimage.gaussian_filter(n, s1, truncate=3.0) if s1 > 0.3 else n
    b = ndimage.gaussian_filter(n, s2, truncate=3.0)
    d = a - b
    return d / (d.std() + 1e-6)


def _harmonics(rng, strength, kmax):
    ks = np.arange(2, kmax + 1)
    amps = strength * rng.uniform(0.3, 1.0, len(ks)) / ks ** 0.7
    return list(zip(ks.tolist(), amps.tolist(), rng.uniform(0, 2 * np.pi, len(ks)).tolist()))


def _ellipse_r(u, v, uc, vc, a, b, harm=()):
    du, dv = (u - uc) / a, (v - vc) / b
    rho = np.sqrt(du * du + dv * dv)
    if harm:
        ang = np.arctan2(dv, du)
        f = sum(amp * np.cos(k * ang + ph) for k, amp, ph in harm)
        rho = rho / (1.0 + f)
    return rho


def _segment_dist(u, v, p, q):
    pu, pv = p
    qu, qv = q
    du, dv = qu - pu, qv - pv
    t = np.clip(((u - pu) * du + (v - pv) * dv) / (du * du + dv * dv + 1e-9), 0, 1)
    return np.hypot(u - pu - t * du, v - pv - t * dv)


# ----------------------------------------------------------------------------------------------------------
# Lesion parameters (per patient, shared by all views) and drawing
# ----------------------------------------------------------------------------------------------------------

def _lesion_params(subtype: str, rng: np.random.Generator) -> list[dict]:
    """Lesion geometry in units of the scene scale S (target bone's diaphyseal radius) and bone landmarks."""
    U = rng.uniform
    phi = U(-np.pi, np.pi)  # angular position around the shaft
    if subtype in ("osteochondroma", "multiple osteochondromas"):
        n = 1 if subtype == "osteochondroma" else int(rng.integers(2, 5))
        out = []
        slots = rng.permutation(4)[:n]
        for k in range(n):
            sessile = rng.random() < 0.3
            r_st = U(0.55, 0.85) if sessile else U(0.28, 0.5)
            out.append({"kind": "exostosis", "u_rel": 0.25 + 0.45 * (slots[k] // 2) + U(0.0, 0.3),
                        "phi": (phi if k == 0 else phi + np.pi * (slots[k] % 2) + U(-0.5, 0.5)),
                        "L": U(0.9, 1.6) if sessile else U(1.5, 3.2), "r_st": r_st,
                        "r_b": r_st * U(1.4, 2.0), "r_cap": r_st * (U(1.0, 1.3) if sessile else U(1.2, 1.9)),
                        "beta": U(0.5, 1.1), "density": U(0.9, 1.2)})
        return out
    if subtype == "synovial osteochondroma":
        nb = int(rng.integers(6, 18))
        return [{"kind": "bodies", "phi": phi, "spread_u": U(0.9, 1.6), "spread_v": U(0.7, 1.3),
                 "off_v": U(0.2, 0.9), "bodies": [(U(-1, 1), U(-1, 1), U(0.12, 0.28), U(0.5, 1.0))
                                                  for _ in range(nb)], "amp": U(0.35, 0.7)}]
    base = {"kind": "lytic", "phi": phi, "harm": [], "rim": 0.0, "septa": 0.0, "sclerotic": 0.0,
            "transition": 0.04, "permeative": 0.0, "moth": 0.0, "mass": None, "sunburst": False,
            "codman": False, "lamellated": False, "hair": False, "depth": U(0.35, 0.7)}
    if subtype == "simple bone cyst":
        b = U(0.6, 0.85)
        return [dict(base, zone="meta", pos=U(0.1, 0.45), ecc=U(-0.1, 0.1), b_rel=b, aspect=U(1.2, 1.9),
                     harm=_harmonics(rng, 0.04, 3), rim=U(0.15, 0.35), rim_w=U(0.05, 0.09),
                     septa=U(0.0, 0.25) if rng.random() < 0.3 else 0.0)]
    if subtype == "giant cell tumor":
        return [dict(base, zone="epi", pos=U(0.55, 1.0), ecc=U(0.3, 0.6), b_rel=U(0.55, 0.85), aspect=U(1.0, 1.5),
                     depth=U(0.45, 0.8), harm=_harmonics(rng, 0.12, 5), rim=U(0.08, 0.2), rim_w=U(0.04, 0.06),
                     septa=U(0.25, 0.5), expand=U(1.0, 1.15))]
    if subtype == "osteofibroma":
        return [dict(base, zone="dia", pos=U(0.3, 1.6), cortical=True, b_abs=U(0.4, 0.65), aspect=U(2.0, 3.5),
                     harm=_harmonics(rng, 0.1, 5), rim=U(0.25, 0.5), rim_w=U(0.08, 0.14), septa=U(0.2, 0.45),
                     depth=U(0.45, 0.8))]
    if subtype == "other bt":
        return [dict(base, zone="meta", pos=U(0.5, 1.2), ecc=U(0.35, 0.75), b_abs=U(0.6, 1.1), aspect=U(1.2, 2.2),
                     harm=_harmonics(rng, 0.14, 6), rim=U(0.3, 0.6), rim_w=U(0.08, 0.14), depth=U(0.35, 0.65))]
    if subtype == "osteosarcoma":
        circ = rng.random() < 0.3
        return [dict(base, zone="meta", pos=U(0.2, 0.9), ecc=U(-0.3, 0.3), b_rel=U(0.75, 1.0),
                     a_abs=U(0.9, 1.7), harm=_harmonics(rng, 0.2, 10), transition=U(0.25, 0.45),
                     depth=U(0.25, 0.55), sclerotic=U(0.25, 0.6), moth=U(0.35, 0.7),
                     mass={"b": U(0.6, 1.3), "a_scale": U(0.9, 1.2), "circ": circ, "harm": _harmonics(rng, 0.12, 5),
                           "bone": U(0.2, 0.5) if rng.random() < 0.6 else 0.0},
                     sunburst=rng.random() < 0.75, codman=rng.random() < 0.6,
                     spic_len=U(0.6, 1.0), spic_mu=U(0.35, 0.7))]
    if subtype == "other mt":
        circ = rng.random() < 0.5
        return [dict(base, zone=("dia" if rng.random() < 0.75 else "meta"), pos=U(0.3, 1.5), ecc=U(-0.2, 0.2),
                     b_rel=1.0, a_abs=U(1.1, 1.9), harm=_harmonics(rng, 0.2, 10), transition=U(0.3, 0.5),
                     depth=U(0.25, 0.5), permeative=U(0.4, 0.75), moth=U(0.0, 0.4),
                     mass={"b": U(0.5, 1.1), "a_scale": U(0.8, 1.1), "circ": circ, "harm": _harmonics(rng, 0.1, 5),
                           "bone": 0.0} if rng.random() < 0.85 else None,
                     lamellated=rng.random() < 0.7, codman=rng.random() < 0.35, hair=rng.random() < 0.2,
                     sunburst=False)]
    raise ValueError(f"unknown subtype {subtype!r}")


class _Scene:
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
        win = _window(self.shape, cx, cy, half)
        if win is None:
            return None, None, None
        u, v = self.bone.uv(self.x[win[1]][None, :], self.y[win[0]][:, None])
        return win, u.astype(np.float32), v.astype(np.float32)

    def noise(self, win, s1, s2):
        shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        return _bandpass(self.rng, shape, s1 * self.sc, s2 * self.sc)


def _zone_u(bone: _Bone, zone: str, pos: float, S: float) -> float:
    if zone == "epi":
        return pos * bone.e
    if zone == "meta":
        return bone.e + pos * bone.m
    return bone.e + bone.m + pos * S


def _draw_exostosis(p, sc: _Scene):
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
    t_out, t_in = _chord(Rx, q), _chord(Ri, q)
    tex = 1.0 + 0.3 * sc.noise(win, 0.8, 2.5)
    A = p["density"] * (sc.mu["c"] * (t_out - t_in) + sc.mu["t"] * tex * t_in)
    Rp = bone.radius(u)
    outside = _smoothstep((side * v - (Rp - bone.cortex(u))) / 2.0 + 0.5)
    sc.A_add[win] += A * outside
    mask = (Rx > np.abs(q)) & (side * v > Rp - 0.5 * bone.cortex(u)) & (pp > -2)
    return win, mask


def _draw_bodies(p, sc: _Scene):
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


def _draw_lytic(p, sc: _Scene):
    bone, S, mu = sc.bone, sc.S, sc.mu
    c = sc.proj(p["phi"])
    side = 1.0 if c >= 0 else -1.0
    uc = _zone_u(bone, p["zone"], p["pos"], S)
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
    mass = p.get("mass")
    m_b = mass["b"] * S if mass else 0.0
    half = max(a * (mass["a_scale"] if mass else 1.0) * 1.5, Ruc + m_b + b) + 0.5 * S + 3
    win, u, v = sc.local(uc, vc, half)
    if win is None:
        return None
    R = bone.radius(u)
    r = _ellipse_r(u, v, uc, vc, a, b, p["harm"])
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
    if p["rim"]:  # sclerotic rim (a thin shell where the lesion expands the bone)
        support = np.abs(v) < R * p.get("expand", 1.03) + 1.0
        sc.A_add[win] += p["rim"] * np.exp(-((r - 1.0) / p["rim_w"]) ** 2) * support
    if p["septa"]:
        n = sc.noise(win, 2.2, 7.0)
        sc.A_add[win] += p["septa"] * np.exp(-(n / 0.18) ** 2) * (r < 0.95)
    if p["sclerotic"]:
        cloud = np.clip(sc.noise(win, 1.8, 6.0) - 0.1, 0, None)
        sc.A_add[win] += p["sclerotic"] * cloud * np.clip(1.2 - r, 0, 1) * (np.abs(v) < R + 1)
    mask = r < 1.0
    if mass:
        a_m = a * mass["a_scale"]
        if mass["circ"] or abs(c) < 0.3:
            vm, bm = 0.0, Ruc + m_b
        else:
            vm, bm = side * 0.5 * (Ruc + m_b) * 0.9, 0.5 * (Ruc + m_b) * 1.1 + 0.5 * m_b
        rm = _ellipse_r(u, v, uc, vm, a_m, bm, mass["harm"])
        thick = np.clip(1 - rm * rm, 0, 1) ** 0.8  # soft, indistinct margin
        outside = np.abs(v) > R
        sc.A_add[win] += mu["mass"] * (2 * bm) * thick * (0.4 + 0.6 * outside)
        soft_edge = np.clip((1.0 - rm) / 0.15, 0, 1)
        if mass["bone"]:
            cloud = np.clip(sc.noise(win, 2.0, 7.0) - 0.3, 0, None)
            sc.A_add[win] += mass["bone"] * cloud * soft_edge * outside
        mask |= rm < 1.0
        ou, ov = uc, (0.0 if (mass["circ"] or abs(c) < 0.3) else side * 0.3 * Ruc)
        if p["sunburst"]:
            ang = np.arctan2(v - ov, u - ou)
            rho = np.hypot(u - ou, v - ov)
            spacing = 4.5 * max(sc.sc, 0.5) / max(Ruc + 0.5 * m_b, 1.0)
            k = np.floor(ang / spacing)
            delta = (ang - (k + 0.5) * spacing) * rho
            lens = np.random.default_rng(int(sc.rng.integers(1 << 31))).uniform(0.35, 1.0, 4096)
            spic_len = lens[(k.astype(np.int64) % 4096)]
            reach = R + p["spic_len"] * m_b * spic_len
            width = max(0.9 * sc.sc, 0.6)
            spic = np.exp(-(delta / width) ** 2) * outside * (np.abs(v) < reach) * soft_edge
            sc.A_add[win] += p["spic_mu"] * spic
        if p.get("hair"):
            sp = max(4.0 * sc.sc, 2.0)
            d = ((u - uc) % sp) - sp / 2
            sc.A_add[win] += 0.35 * np.exp(-(d / max(0.8 * sc.sc, 0.6)) ** 2) * outside * soft_edge \
                * (np.abs(v) < R + 0.7 * m_b)
        if p["codman"]:  # periosteum lifted at the tumour's margin: a dense triangle between it and the cortex
            for end in (-1, 1):
                u_e = uc + end * a_m * 0.9
                sides = (-1.0, 1.0) if (mass["circ"] or abs(c) < 0.3) else (side,)
                for sd in sides:
                    Ro = float(bone.radius(u_e + end * 0.9 * S))
                    Ri_ = float(bone.radius(u_e))
                    tip = (u_e, sd * (Ri_ + 0.55 * m_b))
                    foot = (u_e + end * 0.9 * S, sd * Ro)
                    dist = _segment_dist(u, v, foot, tip)
                    sc.A_add[win] += 0.5 * np.exp(-(dist / max(1.0 * sc.sc, 0.6)) ** 2)
                    # fill: between the lifted line and the cortex
                    t = np.clip((u - foot[0]) / (tip[0] - foot[0]), 0, 1)
                    top = foot[1] + t * (tip[1] - foot[1])
                    inside = (sd * v > R) & (sd * v < sd * top) & ((u - foot[0]) * (u - tip[0]) < 0)
                    sc.A_add[win] += 0.18 * inside
    if p["lamellated"]:
        sp = max(0.16 * S, 2.2 * sc.sc)
        layers = sum(np.exp(-((np.abs(v) - R - k * sp) / max(0.7 * sc.sc, 0.55)) ** 2) for k in (1, 2, 3))
        along = np.exp(-(np.maximum(np.abs(u - uc) - a * 0.9, 0) / (0.3 * a)) ** 2)
        sides = 1.0 if (mass is None or mass["circ"] or abs(c) < 0.3) else (side * v > 0)
        sc.A_add[win] += 0.35 * layers * along * sides
    return win, mask


_DRAW = {"exostosis": _draw_exostosis, "bodies": _draw_bodies, "lytic": _draw_lytic}


# ----------------------------------------------------------------------------------------------------------
# Rendering one image
# ----------------------------------------------------------------------------------------------------------

_BONES = {  # Rd (× scene scale), Rm/Rd, e/Rm, m/Rm, cortex/Rd
    "femur": (1.0, (1.9, 2.2), 0.8, 1.5, 0.32),
    "tibia": (1.0, (1.7, 2.0), 0.6, 1.6, 0.3),
    "fibula": (0.42, (1.3, 1.6), 0.9, 1.8, 0.3),
    "humerus": (0.9, (1.8, 2.1), 0.8, 1.5, 0.3),
    "radius": (0.8, (1.5, 1.8), 0.6, 1.6, 0.28),
    "ulna": (0.7, (1.2, 1.5), 0.8, 1.5, 0.28),
}
_TEMPLATES = {  # target group (main bone first), partner group or block, limb radius (× S) of target/partner
    "knee_femur": (("femur",), ("tibia", "fibula"), (3.0, 2.6)),
    "knee_tibia": (("tibia", "fibula"), ("femur",), (2.5, 3.1)),
    "hip": (("femur",), "acetabulum", (3.4, 9.0)),
    "ankle": (("tibia", "fibula"), "talus", (2.3, 2.2)),
    "shoulder": (("humerus",), "glenoid", (2.8, 9.0)),
    "elbow_humerus": (("humerus",), ("radius", "ulna"), (2.6, 2.5)),
    "elbow_forearm": (("radius", "ulna"), ("humerus",), (2.6, 2.7)),
    "wrist": (("radius", "ulna"), "carpals", (2.4, 2.0)),
}


def render(entry: dict, size: int) -> tuple[np.ndarray, list[dict]]:
    """Pixels (uint8, H×W) and lesions (``{"subtype", "mask"}``, boolean H×W masks) of one plan entry."""
    seed = entry["seed"]
    rp = np.random.default_rng(np.random.SeedSequence([seed, 1, entry["patient"]]))  # patient: anatomy, lesion
    ri = np.random.default_rng(np.random.SeedSequence([seed, 2, entry["key"]]))  # image: pose, exposure, noise
    U = ri.uniform
    sc_px = size / 512.0
    # --- canvas (canonical: portrait, joint near the top, pair bone on the +x side) -----------------------
    H = int(size)
    W = int(round(size * U(0.62, 1.0)))
    landscape, flip_lr, flip_ud = ri.random() < 0.2, ri.random() < 0.5, ri.random() < 0.5
    template = entry["template"]
    target_names, partner, (rl_t, rl_p) = _TEMPLATES[template]
    main = target_names[0]
    site = entry["site"]
    view = entry["view"]
    vang = VIEW_ANGLE[view]
    pair_fac = {"frontal": 1.0, "oblique": 0.6, "lateral": 0.22}[view]
    lat_fac = {"frontal": 1.0, "oblique": 0.93, "lateral": 0.85}[view]
    S = U(0.055, 0.08) * W / _BONES[main][0] * (0.9 if main in ("radius", "ulna") else 1.0)
    theta = math.radians(float(np.clip(ri.normal(0, 7), -18, 18)))
    ax, ay = math.sin(theta), math.cos(theta)  # shaft direction of the target group (pointing down)
    yj = U(0.2, 0.42) * H
    xj = W / 2 + U(-0.08, 0.08) * W
    gap = U(0.25, 0.45) * S
    age = entry["age"]
    physis = age < 16
    # patient-level anatomy (same in every view)
    ratios = {name: rp.uniform(*spec[1]) for name, spec in _BONES.items()}
    pair_off = rp.uniform(1.6, 2.0)
    limb_mod = rp.uniform(0.9, 1.15, 2)
    lesions = _lesion_params(entry["subtype"], rp) if entry["subtype"] else []
    if entry["subtype"] == "multiple osteochondromas":
        ratios[main] *= 1.15
    # --- attenuation coefficients (per pixel, scaled by S so contrast does not depend on zoom) -----------
    mu = {"c": U(1.1, 1.5) / S, "t": U(0.17, 0.26) / S, "marrow": U(0.06, 0.12) / S, "muscle": U(0.1, 0.13) / S,
          "fat": 0.0, "mass": 0.0}
    mu["fat"] = mu["muscle"] * U(0.7, 0.85)
    mu["mass"] = mu["muscle"] * U(0.9, 1.3)
    x = np.arange(W, dtype=np.float32) + 0.5
    y = np.arange(H, dtype=np.float32)[:, None] + 0.5
    xg, yg = x[None, :], y
    tex = 1.0 + U(0.15, 0.25) * _bandpass(ri, (H, W), 1.0 * sc_px, 3.0 * sc_px)
    # --- soft tissue ---------------------------------------------------------------------------------------
    s_l = (xg - xj) * ax + (yg - yj) * ay
    v_l = (yg - yj) * ax - (xg - xj) * ay
    ph = rp.uniform(0, 2 * np.pi, 2)
    wob = 1.0 + 0.06 * np.sin(s_l / (3.0 * S) + ph[0]) + 0.04 * np.sin(s_l / (1.3 * S) + ph[1])
    joint_narrow = 1.0 - 0.12 * np.exp(-(s_l / (1.5 * S)) ** 2)
    trans = _smoothstep(s_l / (2.5 * S) + 0.5)
    Rl = S * (rl_p * limb_mod[1] + (rl_t * limb_mod[0] - rl_p * limb_mod[1]) * trans) * wob * joint_narrow * lat_fac
    v_off = 0.3 * S * pair_fac
    A_soft = mu["fat"] * _chord(Rl, v_l - v_off) + (mu["muscle"] - mu["fat"]) * _chord(0.8 * Rl, v_l - v_off)
    del s_l, v_l, wob, joint_narrow, trans, Rl
    # --- bones ---------------------------------------------------------------------------------------------
    A_other = np.zeros((H, W), np.float32)
    A_target = np.zeros((H, W), np.float32)
    target_bone = None

    def box(x0, x1, y0, y1):
        xa, xb = max(0, int(math.floor(x0))), min(W, int(math.ceil(x1)) + 1)
        ya, yb = max(0, int(math.floor(y0))), min(H, int(math.ceil(y1)) + 1)
        return (slice(ya, yb), slice(xa, xb)) if xb > xa and yb > ya else None

    def add_bone(bone, into):
        """Add a long bone's attenuation into ``into``, computed only over its bounding box."""
        rmax = max(bone.Rm, bone.Rd) + 2.0
        reach = max(max((cx - bone.ex) * bone.dx + (cy - bone.ey) * bone.dy for cx in (0, W) for cy in (0, H)), 0.0)
        xs, ys = zip(*[bone.xy(uu, vv) for uu in (0.0, reach) for vv in (-rmax, rmax)])
        win = box(min(xs), max(xs), min(ys), max(ys))
        if win is not None:
            u, v = bone.uv(x[win[1]][None, :], y[win[0]])
            into[win] += bone.attenuation(u, v, tex[win], mu["c"], mu["t"], mu["marrow"])[0]

    def make(name, end, axis, scale):
        Rd0, _, e_r, m_r, cort = _BONES[name]
        Rd = Rd0 * scale * S
        Rm = Rd * ratios[name] * lat_fac
        return _Bone(end, axis, Rd, Rm, e_r * Rm, m_r * Rm, cort, physis)

    def bone_group(names, end_xy, axis, scale, end_shift):
        bones = []
        for k, name in enumerate(names):
            off = 0.0 if k == 0 else pair_off * S * pair_fac * (_BONES[names[0]][0] + _BONES[name][0]) * 0.6
            ex = end_xy[0] - off * axis[1] + end_shift[k] * S * axis[0]
            ey = end_xy[1] + off * axis[0] + end_shift[k] * S * axis[1]
            bones.append((name, make(name, (ex, ey), axis, scale)))
        return bones

    shifts = {"knee_tibia": (0.0, 0.6), "ankle": (0.0, -0.5), "elbow_forearm": (0.0, -0.3), "wrist": (0.0, 0.4)}
    tgt = bone_group(target_names, (xj + 0.5 * gap * ax, yj + 0.5 * gap * ay), (ax, ay), 1.0,
                     shifts.get(template, (0.0, 0.0)))
    lesion_name = site if site in target_names else main
    for name, bone in tgt:
        if name == lesion_name:
            add_bone(bone, A_target)
            target_bone = bone
        else:
            add_bone(bone, A_other)
    th2 = theta + math.radians(float(ri.normal(0, 6)))
    pax, pay = -math.sin(th2), -math.cos(th2)
    pend = (xj - 0.5 * gap * ax, yj - 0.5 * gap * ay)
    if isinstance(partner, tuple):
        pscale = {"knee_femur": 0.95, "knee_tibia": 1.1, "elbow_humerus": 0.85, "elbow_forearm": 1.15}[template]
        pshift = {"knee_femur": (0.0, 0.6), "elbow_humerus": (0.0, -0.3)}.get(template, (0.0, 0.0))
        for name, bone in bone_group(partner, pend, (pax, pay), pscale, pshift):
            add_bone(bone, A_other)
    else:  # blocks: ellipsoids with a thin cortex
        Rm_t = target_bone.Rm if target_bone is not None else S
        blocks = {"acetabulum": [(1.0, 0.1, 1.3, 1.3, 0.0), (2.6, -0.4, 1.2, 2.2, 0.4)],
                  "glenoid": [(1.0, 0.0, 1.2, 0.8, 0.5)],
                  "talus": [(1.0, 0.0, 1.1, 0.75, 0.0), (1.9, 0.7, 0.9, 0.8, 0.3)],
                  "carpals": [(0.55, -0.5, 0.35, 0.35, 0.0), (0.55, 0.2, 0.35, 0.3, 0.0), (0.6, 0.85, 0.3, 0.3, 0.0),
                              (1.2, -0.3, 0.4, 0.35, 0.0), (1.2, 0.5, 0.4, 0.35, 0.0)]}[partner]
        for du, dv, su, sv, rot in blocks:
            cu_ = du * Rm_t
            bx, by = pend[0] + cu_ * pax + dv * Rm_t * (-pay), pend[1] + cu_ * pay + dv * Rm_t * pax
            ext = max(su, sv) * Rm_t + 2.0
            win = box(bx - ext, bx + ext, by - ext, by + ext)
            if win is None:
                continue
            xw, yw = x[win[1]][None, :], y[win[0]]
            uu = (xw - bx) * pax + (yw - by) * pay
            vv = (yw - by) * pax - (xw - bx) * pay
            cr, sr = math.cos(rot), math.sin(rot)
            uu, vv = uu * cr + vv * sr, -uu * sr + vv * cr
            rr = np.sqrt((uu / (su * Rm_t)) ** 2 + (vv / (sv * Rm_t)) ** 2)
            depth = 0.45 * min(su, sv) * Rm_t
            outer = _chord(1.0, rr) * depth
            inner = _chord(0.9, rr) * depth
            A_other[win] += mu["c"] * 0.5 * (outer - inner) + mu["t"] * 0.8 * inner * tex[win]
    if target_bone is None:  # cannot happen with the templates above
        raise RuntimeError(f"no target bone for site {site} in template {template}")
    # --- lesions -------------------------------------------------------------------------------------------
    A_add = np.zeros((H, W), np.float32)
    scene = _Scene(x, y[:, 0], (H, W), S, sc_px, target_bone, A_target, A_add, ri, vang, mu, gap)
    # farthest visible point of the target bone (canvas bottom, with a margin)
    scene.u_max = (H - 0.06 * H - target_bone.ey) / max(ay, 0.5)
    lesion_masks = []
    for p in lesions:
        res = _DRAW[p["kind"]](p, scene)
        if res is None:
            continue
        win, m = res
        full = np.zeros((H, W), bool)
        full[win] = m
        lesion_masks.append(full)
    A = A_soft + A_other + A_target + A_add
    del A_other, A_add, A_soft
    # --- collimator shutters -------------------------------------------------------------------------------
    if ri.random() < 0.4:
        edges = ri.uniform(0.0, 0.09, 4) * (ri.random(4) < 0.6)
        coll = np.zeros((H, W), bool)
        coll[: int(edges[0] * H)] = True
        coll[H - int(edges[1] * H):] = True
        coll[:, : int(edges[2] * W)] = True
        coll[:, W - int(edges[3] * W):] = True
        if coll.any():
            A = A + coll * U(2.5, 4.0)
            # shutters also cut what the lesion masks can show
    # --- detector --------------------------------------------------------------------------------------------
    style = CENTRE_STYLE[entry["centre"]]
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
    img = lut[np.clip((D - lo) * (4095.0 / (hi - lo)), 0, 4095).astype(np.int16)]
    # --- canonical → stored orientation --------------------------------------------------------------------
    def orient(a):
        if flip_lr:
            a = a[:, ::-1]
        if flip_ud:
            a = a[::-1]
        if landscape:
            a = a.T
        return np.ascontiguousarray(a)

    img = orient(img)
    out = []
    for m in lesion_masks:
        m = orient(m)
        if m.sum() >= max(4, 12 * sc_px * sc_px):
            out.append({"subtype": entry["subtype"], "mask": m})
    return img, out


# ----------------------------------------------------------------------------------------------------------
# LabelMe, sheet, files
# ----------------------------------------------------------------------------------------------------------

def _polygons(mask: np.ndarray) -> list[list[list[float]]]:
    """Outer boundary polygons of a mask, in pixel-edge coordinates (pixel (r, c) spans [c, c+1] × [r, r+1])."""
    from skimage.measure import approximate_polygon, find_contours

    H, W = mask.shape
    rows_any, cols_any = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows_any):
        return []
    r0, c0 = rows_any[0], cols_any[0]
    filled = ndimage.binary_fill_holes(mask[r0:rows_any[-1] + 1, c0:cols_any[-1] + 1])
    polys = []
    for contour in find_contours(np.pad(filled, 1).astype(np.float32), 0.5):
        contour = approximate_polygon(contour - 1.0, tolerance=0.7) + 0.5 + np.array([r0, c0])
        if len(contour) < 4:
            continue
        rows, cols = np.clip(contour[:, 0], 0, H), np.clip(contour[:, 1], 0, W)
        area = 0.5 * abs(np.dot(cols, np.roll(rows, 1)) - np.dot(rows, np.roll(cols, 1)))
        if area < 4:
            continue
        pts = [[round(float(c), 1), round(float(r), 1)] for r, c in zip(rows[:-1], cols[:-1])]
        polys.append(pts)
    return polys


def labelme(name: str, width: int, height: int, lesions: list[dict]) -> dict:
    """The LabelMe 5.4.1 document of one image: per lesion a rectangle and its polygon(s)."""
    shapes = []
    for lesion in lesions:
        polys = _polygons(lesion["mask"])
        if not polys:
            continue
        xs = [p[0] for poly in polys for p in poly]
        ys = [p[1] for poly in polys for p in poly]
        shapes.append({"label": lesion["subtype"], "points": [[min(xs), min(ys)], [max(xs), max(ys)]],
                       "group_id": None, "description": "", "shape_type": "rectangle", "flags": {}, "mask": None})
        for poly in polys:
            shapes.append({"label": lesion["subtype"], "points": poly, "group_id": None, "description": "",
                           "shape_type": "polygon", "flags": {}, "mask": None})
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": f"{name}.jpeg",
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


def _sheet_row(entry: dict) -> list:
    on = set()
    on.add(entry["site"])
    if entry["joint_col"]:
        on.add(TEMPLATE_JOINT[entry["template"]])
    if entry["label"] != "normal":
        on |= {"tumor", entry["label"], entry["subtype"]}
    on.add(SITE_LIMB[entry["site"]])
    on.add(entry["view"])
    return [f"{entry['name']}.jpeg", entry["centre"], entry["age"], entry["gender"]] + \
        [int(c in on) for c in SHEET_COLUMNS[4:]]


_FIXED_DATE = "2025-01-01T00:00:00Z"


def _write_sheet(path: Path, rows: list[list]) -> None:
    """``dataset.xlsx`` with reproducible bytes (fixed document dates and zip timestamps)."""
    import datetime

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(SHEET_COLUMNS))
    for row in rows:
        ws.append(row)
    fixed = datetime.datetime(2025, 1, 1)
    wb.properties.created = fixed
    wb.properties.modified = fixed
    wb.properties.creator = "bonetumor phantom"
    buf = io.BytesIO()
    wb.save(buf)
    buf.seek(0)
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in sorted(zin.infolist(), key=lambda i: i.filename):
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:)",
                              lambda m: m.group(1) + _FIXED_DATE.encode() + m.group(3), data)
            zi = zipfile.ZipInfo(info.filename, date_time=(2025, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zi.create_system = 3
            zout.writestr(zi, data, compresslevel=6)
    path.write_bytes(out.getvalue())


def _save_jpeg(img: np.ndarray, path: Path, quality: int) -> None:
    Image.fromarray(img, mode="L").save(path, format="JPEG", quality=int(quality), optimize=False,
                                        progressive=False, subsampling=0)


def _make_one(job) -> list:
    entry, size, folder = job
    img, lesions = render(entry, size)
    quality = CENTRE_STYLE[entry["centre"]]["quality"]
    if entry["duplicate_of"] is not None:  # the same picture re-saved
        quality = quality - 12
    folder = Path(folder)
    _save_jpeg(img, folder / "images" / f"{entry['name']}.jpeg", quality)
    if entry["label"] != "normal":
        doc = labelme(entry["name"], img.shape[1], img.shape[0], lesions)
        (folder / "Annotations" / f"{entry['name']}.json").write_text(json.dumps(doc, indent=2) + "\n")
    return _sheet_row(entry)


def generate(out: Path, n_images: int, seed: int = 0, size: int = 512,
             proportions: dict[str, float] | None = None, progress: bool = True, *,
             workers: int | None = None) -> Path:
    """Write a phantom dataset in the BTXRD layout to ``out`` and return ``out``.

    The dataset is built in a temporary sibling folder and renamed into place at the end, so an interrupted
    run never leaves a complete-looking dataset (``dataset.xlsx`` present). ``out`` must not exist or be an
    empty folder. The same ``seed`` (and size, proportions) gives byte-identical files, whatever ``workers``.
    """
    out = Path(out).expanduser().resolve()
    size = int(size)
    if size < 64:
        raise ValueError(f"size must be at least 64 pixels, got {size}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder; remove it or choose another")
    entries = plan(n_images, seed, proportions)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "Annotations").mkdir()
        jobs = [(e, size, str(tmp)) for e in entries]
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if len(entries) >= 64 else 1
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"phantom {out.name}", unit="img", disable=not progress)
        try:
            if workers <= 1:
                rows = []
                for job in jobs:
                    rows.append(_make_one(job))
                    bar.update()
            else:
                with cf.ProcessPoolExecutor(max_workers=workers) as pool:
                    rows = []
                    for row in pool.map(_make_one, jobs, chunksize=8):
                        rows.append(row)
                        bar.update()
        finally:
            bar.close()
        meta = {"generator": "bonetumor.data.phantom", "version": VERSION, "seed": int(seed), "size": size,
                "n_images": len(entries), "proportions": _proportions(proportions),
                "duplicates": {e["name"]: e["duplicate_of"] for e in entries if e["duplicate_of"]}}
        (tmp / "phantom.json").write_text(json.dumps(meta, indent=2) + "\n")
        _write_sheet(tmp / "dataset.xlsx", rows)  # last: its presence marks a complete dataset
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
