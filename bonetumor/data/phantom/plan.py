"""What the phantom draws, per image, from the seed: patients as runs of consecutive ids (1–3 views), each
with a class, subtype, centre, age, gender, site, joint region (template) and view, and about 1 % of
near-duplicates. Cheap and sequential, from ``SeedSequence([seed, 0])``; :func:`~bonetumor.data.phantom.render`
turns an entry into pixels and masks. The tables follow BTXRD (Yao et al. 2025)."""

from __future__ import annotations

import math

import numpy as np

from bonetumor.data.layout import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES, VIEW_COLUMNS

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


def proportions_of(proportions: dict[str, float] | None) -> dict[str, float]:
    """The class proportions, checked and normalised to sum 1 (``None``: :data:`DEFAULT_PROPORTIONS`)."""
    props = dict(DEFAULT_PROPORTIONS if proportions is None else proportions)
    unknown = set(props) - set(DEFAULT_PROPORTIONS)
    if unknown:
        raise ValueError(f"unknown classes in proportions: {sorted(unknown)} (use normal, benign, malignant)")
    props = {c: float(props.get(c, 0.0)) for c in DEFAULT_PROPORTIONS}
    if any(v < 0 or not math.isfinite(v) for v in props.values()) or sum(props.values()) <= 0:
        raise ValueError(f"proportions must be non-negative with a positive sum, got {proportions}")
    total = sum(props.values())
    return {c: v / total for c, v in props.items()}


def plan(n_images: int, seed: int = 0, proportions: dict[str, float] | None = None) -> list[dict]:
    """The image list: one dict per image (index, name, patient, class, subtype, centre, age, gender, site,
    template, view, duplicate source). Cheap; :func:`render` turns an entry into pixels and masks."""
    return build_plan(n_images, seed, proportions)


def build_plan(n_images: int, seed: int, proportions: dict[str, float] | None, draw_patient=None) -> list[dict]:
    """:func:`plan` with another way of drawing a patient (``draw_patient(rng, label)``, see :func:`_patients`)."""
    n_images = int(n_images)
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    props = proportions_of(proportions)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    n_dup = int(round(0.01 * n_images)) if n_images >= 50 else 0
    n_orig = n_images - n_dup
    entries = _patients(rng, props, n_orig, draw_patient)
    for entry_index, entry in enumerate(entries):
        entry["key"] = entry_index + 1  # pixel-RNG key, fixed before duplicates are inserted
    _insert_duplicates(rng, entries, n_orig, n_dup)
    for i, entry in enumerate(entries, start=1):
        entry["index"] = i
        entry["name"] = f"IMG{i:06d}"
        entry["seed"] = int(seed)
    by_key = {e["key"]: e["name"] for e in entries if e["duplicate_of"] is None}
    for entry in entries:
        if entry["duplicate_of"] is not None:
            entry["duplicate_of"] = by_key[entry["duplicate_of"]]
    return entries


def _patients(rng: np.random.Generator, props: dict[str, float], n_orig: int, draw_patient=None) -> list[dict]:
    """``n_orig`` entries, patient after patient (each with 1–3 views), classes kept close to ``props``;
    ``draw_patient(rng, label)`` draws one patient (default: :func:`_patient`, the version-1 phantom's)."""
    draw_patient = _patient if draw_patient is None else draw_patient
    classes = list(props)
    counts = dict.fromkeys(classes, 0)
    entries: list[dict] = []
    patient = 0
    while len(entries) < n_orig:
        # class: the one most below its quota, sampled (keeps proportions close even for small datasets)
        filled = len(entries) + 1.5
        deficit = np.array([max(props[c] * filled - counts[c], 0.0) + 1e-3 * props[c] for c in classes])
        deficit[np.array([props[c] for c in classes]) == 0] = 0
        label = classes[rng.choice(len(classes), p=deficit / deficit.sum())]
        person, views = draw_patient(rng, label)
        patient += 1
        for view in views[: n_orig - len(entries)]:
            entries.append({"patient": patient, **person, "view": view, "duplicate_of": None})
            counts[label] += 1
    return entries


def _patient(rng: np.random.Generator, label: str) -> tuple[dict, list[str]]:
    """One patient of class ``label``: its sheet values (shared by its views) and its views."""
    site, template, subtype = site_and_subtype(rng, label, SITE_WEIGHTS, SITE_TEMPLATES, SUBTYPE_SITES)
    return sheet_person(rng, label, site, template, subtype)


def site_and_subtype(rng: np.random.Generator, label: str, site_weights: dict, site_templates: dict,
                     subtype_sites: dict) -> tuple[str, str, str | None]:
    """The patient's site (independent of the class), joint region (template) and subtype (given the site)."""
    site = str(rng.choice(list(site_weights), p=np.array(list(site_weights.values())) / sum(site_weights.values())))
    names, weights = zip(*site_templates[site])
    template = str(rng.choice(names, p=np.array(weights) / sum(weights)))
    subtype = None
    if label != "normal":
        options = BENIGN_SUBTYPES if label == "benign" else MALIGNANT_SUBTYPES
        w = np.array([SUBTYPE_WEIGHTS[s] * (site in subtype_sites.get(s, {site})) for s in options], float)
        subtype = str(options[rng.choice(len(options), p=w / w.sum())])
    return site, template, subtype


def sheet_person(rng: np.random.Generator, label: str, site: str, template: str,
                 subtype: str | None) -> tuple[dict, list[str]]:
    """The rest of a patient's sheet values (centre, gender, age, joint column) and its views."""
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
    person = {"label": label, "subtype": subtype, "centre": centre, "age": age, "gender": gender, "site": site,
              "template": template, "joint_col": joint_col}
    return person, views


def _age(subtype: str | None, rng: np.random.Generator) -> int:
    mean, sd, lo, hi = {None: (40, 20, 1, 88), "osteochondroma": (16, 6, 3, 60),
                        "multiple osteochondromas": (14, 6, 2, 50), "simple bone cyst": (11, 4, 3, 30),
                        "giant cell tumor": (32, 9, 18, 65), "osteofibroma": (14, 8, 2, 40),
                        "synovial osteochondroma": (42, 13, 18, 80), "other bt": (25, 15, 2, 80),
                        "osteosarcoma": (16, 5, 5, 88), "other mt": (45, 20, 5, 88)}[subtype]
    if subtype == "osteosarcoma" and rng.random() < 0.15:  # the second, older peak
        mean, sd = 62, 10
    return int(np.clip(round(rng.normal(mean, sd)), lo, hi))


def _insert_duplicates(rng: np.random.Generator, entries: list[dict], n_orig: int, n_dup: int) -> None:
    """Near-duplicates: an earlier image re-saved (another JPEG quality), placed elsewhere in the list."""
    for source in sorted(rng.choice(n_orig, size=n_dup, replace=False).tolist()) if n_dup else []:
        dup = dict(entries[source], duplicate_of=entries[source]["key"])
        entries.insert(int(rng.integers(0, len(entries) + 1)), dup)
