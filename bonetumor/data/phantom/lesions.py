"""Lesion parameters per patient (shared by all of the patient's views), drawn from the patient's generator
in units of the scene scale S (the target bone's diaphyseal radius) and of bone landmarks. The signs each
subtype shows are listed in :mod:`bonetumor.data.phantom`; :mod:`.draw` draws them into an image."""

from __future__ import annotations

import numpy as np

from bonetumor.data.phantom.geometry import harmonics


def lesion_params(subtype: str, rng: np.random.Generator) -> list[dict]:
    """Lesion geometry in units of the scene scale S (target bone's diaphyseal radius) and bone landmarks."""
    U = rng.uniform
    phi = U(-np.pi, np.pi)  # angular position around the shaft
    if subtype in ("osteochondroma", "multiple osteochondromas"):
        return _exostoses(subtype, phi, rng)
    if subtype == "synovial osteochondroma":
        return _loose_bodies(phi, rng)
    base = {"kind": "lytic", "phi": phi, "harm": [], "rim": 0.0, "septa": 0.0, "sclerotic": 0.0,
            "transition": 0.04, "permeative": 0.0, "moth": 0.0, "mass": None, "sunburst": False,
            "codman": False, "lamellated": False, "hair": False, "depth": U(0.35, 0.7)}
    if subtype not in _LYTIC:
        raise ValueError(f"unknown subtype {subtype!r}")
    return [_LYTIC[subtype](base, rng)]


def _exostoses(subtype: str, phi: float, rng: np.random.Generator) -> list[dict]:
    """Osteochondroma (one exostosis) or multiple osteochondromas (2–4), pedunculated or sessile."""
    U = rng.uniform
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


def _loose_bodies(phi: float, rng: np.random.Generator) -> list[dict]:
    """Synovial osteochondroma: a cluster of ring-calcified loose bodies in the joint."""
    U = rng.uniform
    nb = int(rng.integers(6, 18))
    return [{"kind": "bodies", "phi": phi, "spread_u": U(0.9, 1.6), "spread_v": U(0.7, 1.3),
             "off_v": U(0.2, 0.9), "bodies": [(U(-1, 1), U(-1, 1), U(0.12, 0.28), U(0.5, 1.0))
                                              for _ in range(nb)], "amp": U(0.35, 0.7)}]


def _simple_bone_cyst(base: dict, rng: np.random.Generator) -> dict:
    U = rng.uniform
    b = U(0.6, 0.85)
    return dict(base, zone="meta", pos=U(0.1, 0.45), ecc=U(-0.1, 0.1), b_rel=b, aspect=U(1.2, 1.9),
                harm=harmonics(rng, 0.04, 3), rim=U(0.15, 0.35), rim_w=U(0.05, 0.09),
                septa=U(0.0, 0.25) if rng.random() < 0.3 else 0.0)


def _giant_cell_tumor(base: dict, rng: np.random.Generator) -> dict:
    U = rng.uniform
    return dict(base, zone="epi", pos=U(0.55, 1.0), ecc=U(0.3, 0.6), b_rel=U(0.55, 0.85), aspect=U(1.0, 1.5),
                depth=U(0.45, 0.8), harm=harmonics(rng, 0.12, 5), rim=U(0.08, 0.2), rim_w=U(0.04, 0.06),
                septa=U(0.25, 0.5), expand=U(1.0, 1.15))


def _osteofibroma(base: dict, rng: np.random.Generator) -> dict:
    U = rng.uniform
    return dict(base, zone="dia", pos=U(0.3, 1.6), cortical=True, b_abs=U(0.4, 0.65), aspect=U(2.0, 3.5),
                harm=harmonics(rng, 0.1, 5), rim=U(0.25, 0.5), rim_w=U(0.08, 0.14), septa=U(0.2, 0.45),
                depth=U(0.45, 0.8))


def _other_benign(base: dict, rng: np.random.Generator) -> dict:
    U = rng.uniform
    return dict(base, zone="meta", pos=U(0.5, 1.2), ecc=U(0.35, 0.75), b_abs=U(0.6, 1.1), aspect=U(1.2, 2.2),
                harm=harmonics(rng, 0.14, 6), rim=U(0.3, 0.6), rim_w=U(0.08, 0.14), depth=U(0.35, 0.65))


def _osteosarcoma(base: dict, rng: np.random.Generator) -> dict:
    U = rng.uniform
    circ = rng.random() < 0.3
    return dict(base, zone="meta", pos=U(0.2, 0.9), ecc=U(-0.3, 0.3), b_rel=U(0.75, 1.0),
                a_abs=U(0.9, 1.7), harm=harmonics(rng, 0.2, 10), transition=U(0.25, 0.45),
                depth=U(0.25, 0.55), sclerotic=U(0.25, 0.6), moth=U(0.35, 0.7),
                mass={"b": U(0.6, 1.3), "a_scale": U(0.9, 1.2), "circ": circ, "harm": harmonics(rng, 0.12, 5),
                      "bone": U(0.2, 0.5) if rng.random() < 0.6 else 0.0},
                sunburst=rng.random() < 0.75, codman=rng.random() < 0.6,
                spic_len=U(0.6, 1.0), spic_mu=U(0.35, 0.7))


def _other_malignant(base: dict, rng: np.random.Generator) -> dict:
    U = rng.uniform
    circ = rng.random() < 0.5
    return dict(base, zone=("dia" if rng.random() < 0.75 else "meta"), pos=U(0.3, 1.5), ecc=U(-0.2, 0.2),
                b_rel=1.0, a_abs=U(1.1, 1.9), harm=harmonics(rng, 0.2, 10), transition=U(0.3, 0.5),
                depth=U(0.25, 0.5), permeative=U(0.4, 0.75), moth=U(0.0, 0.4),
                mass={"b": U(0.5, 1.1), "a_scale": U(0.8, 1.1), "circ": circ, "harm": harmonics(rng, 0.1, 5),
                      "bone": 0.0} if rng.random() < 0.85 else None,
                lamellated=rng.random() < 0.7, codman=rng.random() < 0.35, hair=rng.random() < 0.2,
                sunburst=False)


#: Subtypes drawn as a lytic (lucent) lesion, each with its parameters on top of the shared ``base``.
_LYTIC = {"simple bone cyst": _simple_bone_cyst, "giant cell tumor": _giant_cell_tumor,
          "osteofibroma": _osteofibroma, "other bt": _other_benign, "osteosarcoma": _osteosarcoma,
          "other mt": _other_malignant}
