"""What phantom v2 draws per image: the version-1 plan (patients, classes, centres, views, duplicates) with
BTXRD's wider site mix (hands, feet and the pelvis as well as the long bones), lesions whose number, box size
and conspicuity are drawn here, at plan level, and distractors (laterality letters, rulers, markers, burnt-in
text) that carry no label.

Lesion box sizes follow the sizes measured on real BTXRD (``shared/DATASETS.md`` §4): per class, a bivariate
two-piece log-normal of (width / image width, height / image height) whose 10th, 50th and 90th percentiles
are those measured, and whose correlation makes the area's spread match too. Lesions per image follow §4's counts
(malignant 1–2; multiple osteochondromas 1–5, other benign subtypes 1).

*Conspicuity* (0–1, per lesion) scales every contrast a lesion adds or removes (lysis depth, sclerotic rim,
exostosis density, soft-tissue mass, tumour bone): 1 is a textbook lesion (version 1's contrast), 0.3 a faint
lucency or a small exostosis a reader could miss, 0.1 next to invisible under the image's noise. It is drawn
from a Beta distribution, a little higher for malignant lesions (more aggressive, larger, more destructive).

Distractors come from their own generator, ``SeedSequence([seed, 3, key])``, which sees neither the class nor
the lesions, so their presence and placement are independent of the class by construction.
"""

from __future__ import annotations

import math

import numpy as np

from bonetumor.data.phantom.plan import SITE_TEMPLATES as V1_SITE_TEMPLATES
from bonetumor.data.phantom.plan import build_plan, sheet_person, site_and_subtype

#: Sites drawn, independent of the class. DATASETS.md gives no site proportions for BTXRD, so these are
#: chosen, not measured: primary bone tumours cluster at the knee (distal femur, proximal tibia), then the
#: proximal humerus and the pelvis; BTXRD's images (issue 12) also show hands, feet and pelvises.
SITE_WEIGHTS = {"femur": 0.24, "tibia": 0.17, "fibula": 0.04, "humerus": 0.09, "radius": 0.03, "ulna": 0.02,
                "hand": 0.13, "foot": 0.12, "hip bone": 0.16}
#: The region (template) each site is imaged in: version 1's joint regions plus hand, foot and pelvis.
SITE_TEMPLATES = {**V1_SITE_TEMPLATES, "femur": (("knee_femur", 0.6), ("hip", 0.2), ("pelvis", 0.2)),
                  "hand": (("hand", 1.0),), "foot": (("foot", 1.0),), "hip bone": (("pelvis", 1.0),)}
TEMPLATE_JOINT = {"knee_femur": "knee-joint", "knee_tibia": "knee-joint", "hip": "hip-joint",
                  "ankle": "ankle-joint", "shoulder": "shoulder-joint", "elbow_humerus": "elbow-joint",
                  "elbow_forearm": "elbow-joint", "wrist": "wrist-joint", "hand": "wrist-joint",
                  "foot": "ankle-joint", "pelvis": "hip-joint"}
SITE_REGION = {"femur": "lower limb", "tibia": "lower limb", "fibula": "lower limb", "foot": "lower limb",
               "humerus": "upper limb", "radius": "upper limb", "ulna": "upper limb", "hand": "upper limb",
               "hip bone": "pelvis"}
SUBTYPE_SITES = {"osteofibroma": {"tibia", "fibula"},
                 "giant cell tumor": {"femur", "tibia", "radius", "humerus", "hand", "hip bone"},
                 "simple bone cyst": {"femur", "humerus", "tibia", "fibula", "radius", "ulna", "foot", "hip bone"}}

#: Measured on real BTXRD (DATASETS.md §4, 1,957 benign and 344 malignant lesions): lesion box width and
#: height as a fraction of the image side, 10th / 50th / 90th percentile, and the box area fraction.
BTXRD_LESION_SIZE = {"benign": {"width": (0.023, 0.082, 0.277), "height": (0.031, 0.105, 0.250),
                                "area": (0.0009, 0.0087, 0.061)},
                     "malignant": {"width": (0.095, 0.199, 0.367), "height": (0.125, 0.215, 0.389),
                                   "area": (0.014, 0.043, 0.129)}}
#: Measured on real BTXRD (DATASETS.md §4): annotated images by lesion count. Benign images with several
#: lesions are multiple osteochondromas (263 of BTXRD's benign images), which gives their distribution.
BTXRD_LESIONS_PER_IMAGE = {"benign": {1: 1295, 2: 134, 3: 46, 4: 27, 5: 8}, "malignant": {1: 340, 2: 2}}
_MULTIPLE_OC_COUNTS = {1: 48, 2: 134, 3: 46, 4: 27, 5: 8}
#: Conspicuity ~ 0.1 + 0.9 · Beta(a, b), per class.
CONSPICUITY_BETA = {"benign": (1.8, 2.4), "malignant": (2.4, 1.8)}
_Z90 = 1.2815515655446004  # the standard normal's 90th percentile


def lognormal_size_model(label: str) -> dict:
    """A two-piece log-normal per side, fitted to the BTXRD percentiles of ``label``: the median, a log-sd
    below it, (ln p50 − ln p10) / z90, and one above it, (ln p90 − ln p50) / z90, so the 10th, 50th and 90th
    percentiles are met exactly; the correlation of the two sides' normal scores makes ln(area)'s spread
    match (with the mean of the two log-sds per side)."""
    facts = BTXRD_LESION_SIZE[label]
    lo = {k: (math.log(v[1]) - math.log(v[0])) / _Z90 for k, v in facts.items()}
    hi = {k: (math.log(v[2]) - math.log(v[1])) / _Z90 for k, v in facts.items()}
    sd = {k: 0.5 * (lo[k] + hi[k]) for k in facts}
    rho = (sd["area"] ** 2 - sd["width"] ** 2 - sd["height"] ** 2) / (2 * sd["width"] * sd["height"])
    return {"median_w": facts["width"][1], "median_h": facts["height"][1], "sd_w": (lo["width"], hi["width"]),
            "sd_h": (lo["height"], hi["height"]), "rho": float(np.clip(rho, -0.95, 0.95))}


def lesion_sizes(label: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` lesion boxes (width, height) as fractions of the image side, from :func:`lognormal_size_model`."""
    m = lognormal_size_model(label)
    z = rng.standard_normal((n, 2))
    z_h = m["rho"] * z[:, 0] + math.sqrt(1 - m["rho"] ** 2) * z[:, 1]
    w = m["median_w"] * np.exp(np.where(z[:, 0] < 0, m["sd_w"][0], m["sd_w"][1]) * z[:, 0])
    h = m["median_h"] * np.exp(np.where(z_h < 0, m["sd_h"][0], m["sd_h"][1]) * z_h)
    return np.clip(np.stack([w, h], axis=1), 0.012, 0.7)


def lesion_count(subtype: str | None, rng: np.random.Generator) -> int:
    """Lesions in one image: 0 (normal); 1–5 for multiple osteochondromas; malignant 2 in 2 of 342."""
    if subtype is None:
        return 0
    if subtype == "multiple osteochondromas":
        counts = np.array(list(_MULTIPLE_OC_COUNTS.values()), float)
        return int(rng.choice(list(_MULTIPLE_OC_COUNTS), p=counts / counts.sum()))
    if subtype in ("osteosarcoma", "other mt"):
        return 2 if rng.random() < 2 / 342 else 1
    return 1


def lesion_specs(label: str, subtype: str | None, rng: np.random.Generator) -> list[dict]:
    """The patient's lesions (shared by its views): box size, conspicuity and where on the bone each sits."""
    n = lesion_count(subtype, rng)
    if not n:
        return []
    sizes = lesion_sizes(label, n, rng)
    a, b = CONSPICUITY_BETA[label]
    conspicuity = 0.1 + 0.9 * rng.beta(a, b, n)
    return [{"w": float(w), "h": float(h), "conspicuity": float(c), "bone": float(rng.random()),
             "pos": float(rng.random()), "side": float(rng.choice([-1.0, 1.0]))}
            for (w, h), c in zip(sizes, conspicuity)]


def _patient_v2(rng: np.random.Generator, label: str) -> tuple[dict, list[str]]:
    """One patient of phantom v2: the v2 site mix and the lesions drawn at plan level."""
    site, template, subtype = site_and_subtype(rng, label, SITE_WEIGHTS, SITE_TEMPLATES, SUBTYPE_SITES)
    person, views = sheet_person(rng, label, site, template, subtype)
    person.update(version=2, lesions=lesion_specs(label, subtype, rng), region_column=SITE_REGION[site],
                  joint_column=TEMPLATE_JOINT[template] if person["joint_col"] else None)
    return person, views


def distractors(seed: int, key: int) -> dict:
    """Label-free objects burnt into one image, from ``SeedSequence([seed, 3, key])`` (never the class):
    a laterality letter (lead marker or burnt-in text), a radiopaque ruler, a marker (calibration ball or
    arrow) and a burnt-in text block; positions are fractions of the canvas."""
    r = np.random.default_rng(np.random.SeedSequence([int(seed), 3, int(key)]))
    corner = (float(r.choice([0.06, 0.94])), float(r.choice([0.06, 0.94])))
    out = {"letter": str(r.choice(["R", "L"])) if r.random() < 0.7 else None,
           "letter_xy": (corner[0] + r.uniform(-0.03, 0.03), corner[1] + r.uniform(-0.03, 0.03)),
           "letter_size": float(r.uniform(0.04, 0.09)), "letter_burnt": bool(r.random() < 0.4),
           "ruler": None, "marker": None, "text": None}
    if r.random() < 0.25:
        out["ruler"] = {"edge": str(r.choice(["left", "right", "top", "bottom"])), "offset": float(r.uniform(0.02, 0.1)),
                        "start": float(r.uniform(0.0, 0.4)), "length": float(r.uniform(0.4, 0.9)),
                        "tick": float(r.uniform(0.012, 0.025))}
    if r.random() < 0.3:
        out["marker"] = {"kind": str(r.choice(["ball", "arrow"])), "xy": (float(r.uniform(0.1, 0.9)),
                                                                           float(r.uniform(0.1, 0.9))),
                         "size": float(r.uniform(0.02, 0.06)), "angle": float(r.uniform(0, 2 * np.pi))}
    if r.random() < 0.35:
        out["text"] = {"xy": (float(r.uniform(0.02, 0.6)), float(r.choice([0.03, 0.9]))),
                       "lines": int(r.integers(1, 4)), "width": float(r.uniform(0.15, 0.35))}
    return out


def plan_v2(n_images: int, seed: int = 0, proportions: dict[str, float] | None = None) -> list[dict]:
    """Phantom v2's image list: version 1's entries (same fields) plus ``version`` (2), ``lesions`` (the
    patient's, see :func:`lesion_specs`), ``distractors`` (:func:`distractors`), ``region_column`` and
    ``joint_column`` (the sheet's region and joint columns)."""
    entries = build_plan(n_images, seed, proportions, _patient_v2)
    for entry in entries:
        entry["distractors"] = distractors(seed, entry["key"])
    return entries
