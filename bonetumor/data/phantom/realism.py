"""The phantom's **realism card**: what a dataset read by the BTXRD reader looks like (class and site
proportions, lesions per annotated image, lesion box size percentiles per class, image sizes) set beside the
facts measured on real BTXRD (:data:`BTXRD_FACTS`), and the histogram-shortcut check (a classifier on each
image's grey-level histogram must stay at chance, or the phantom leaks its class through global intensity).

Everything here works on *records* (:func:`bonetumor.data.btxrd.read_dataset`), so the same card describes
phantom v1, phantom v2 or real BTXRD read from disk.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from bonetumor.data.phantom.plan_v2 import BTXRD_LESION_SIZE, BTXRD_LESIONS_PER_IMAGE

#: Facts measured on the real BTXRD radiographs (``shared/DATASETS.md`` §2 and §4: the dataset paper's
#: counts, and the project's own reader on all 3,746 images). Site proportions are not in DATASETS.md, so
#: they are absent here (NaN in the card), not guessed.
BTXRD_FACTS: dict[str, float] = {
    "images": 3746, "class share: normal": 1879 / 3746, "class share: benign": 1525 / 3746,
    "class share: malignant": 342 / 3746, "annotated images": 1867, "lesions": 2301,
    "image width: min": 153, "image width: max": 3594, "image height: min": 311, "image height: max": 4881,
    **{f"{label} images with {n} lesion(s): share": count / sum(counts.values())
       for label, counts in BTXRD_LESIONS_PER_IMAGE.items() for n, count in counts.items()},
    **{f"{label} lesion {what}: p{q}": value
       for label, sizes in BTXRD_LESION_SIZE.items() for what, values in sizes.items()
       for q, value in zip((10, 50, 90), values)},
}
SITES = ("hand", "ulna", "radius", "humerus", "foot", "tibia", "fibula", "femur", "hip bone")


def _share(counter: Counter, key, total: int) -> float:
    return counter.get(key, 0) / total if total else math.nan


def _lesion_sizes(records: Sequence[dict], label: str) -> dict[str, np.ndarray]:
    """Width / image width, height / image height and box area / image area of every lesion of ``label``."""
    w, h = [], []
    for rec in records:
        if rec["label"] != label:
            continue
        for lesion in rec["lesions"]:
            x0, y0, x1, y1 = lesion["box"]
            w.append((x1 - x0) / rec["width"])
            h.append((y1 - y0) / rec["height"])
    w, h = np.array(w, float), np.array(h, float)
    return {"width": w, "height": h, "area": w * h}


def dataset_facts(records: Sequence[dict]) -> dict[str, float]:
    """The card's facts of one dataset (the same keys as :data:`BTXRD_FACTS`, plus site shares)."""
    n = len(records)
    facts: dict[str, float] = {"images": n}
    classes = Counter(r["label"] for r in records)
    for label in ("normal", "benign", "malignant"):
        facts[f"class share: {label}"] = _share(classes, label, n)
    sites = Counter((r.get("site") or "").split("+")[0] for r in records)
    facts.update({f"site share: {s}": _share(sites, s, n) for s in SITES})
    annotated = [r for r in records if r["lesions"]]
    facts["annotated images"] = len(annotated)
    facts["lesions"] = sum(len(r["lesions"]) for r in records)
    for side in ("width", "height"):
        values = [r[side] for r in records]
        facts[f"image {side}: min"], facts[f"image {side}: max"] = float(min(values)), float(max(values))
    for label, counts in BTXRD_LESIONS_PER_IMAGE.items():
        per_image = Counter(min(len(r["lesions"]), 5) for r in annotated if r["label"] == label)
        total = sum(per_image.values())
        facts.update({f"{label} images with {k} lesion(s): share": _share(per_image, k, total) for k in counts})
    for label in BTXRD_LESION_SIZE:
        sizes = _lesion_sizes(records, label)
        for what, values in sizes.items():
            for q in (10, 50, 90):
                facts[f"{label} lesion {what}: p{q}"] = float(np.percentile(values, q)) if len(values) else math.nan
    return facts


def realism_card(datasets: dict[str, Sequence[dict]]):
    """A DataFrame, one row per fact: ``BTXRD`` (measured, :data:`BTXRD_FACTS`; NaN where not measured)
    beside one column per named dataset's records (e.g. ``{"phantom v2": records, "phantom v1": ...}``)."""
    import pandas as pd

    columns = {name: dataset_facts(records) for name, records in datasets.items()}
    keys = list(dict.fromkeys(k for facts in columns.values() for k in facts))
    rows = [{"fact": k, "BTXRD": BTXRD_FACTS.get(k, math.nan), **{name: facts.get(k, math.nan)
                                                                  for name, facts in columns.items()}}
            for k in keys]
    return pd.DataFrame(rows).set_index("fact")


def histogram_shortcut(images: Iterable[np.ndarray], labels: Sequence[str], groups: Sequence) -> dict[str, float]:
    """Cross-validated balanced accuracy of a logistic regression on each image's 32-bin grey-level
    histogram, tumour vs normal and malignant vs benign (views of a patient, ``groups``, kept together).
    Chance is 0.5: a phantom whose values are well above it leaks the class through global intensity. NaN
    for a task with fewer than 5 patients, or 5 images of a class, to cross-validate on."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.array([np.histogram(img, bins=32, range=(0, 256))[0] / img.size for img in images])
    labels, groups = np.asarray(labels), np.asarray(groups)

    def balanced_accuracy(rows, y):
        folds = 5
        if len(np.unique(groups[rows])) < folds or min(np.sum(y), np.sum(~y)) < folds:
            return math.nan  # too few patients or images of a class for 5-fold cross-validation
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=0)
        with warnings.catch_warnings():  # a fold short of one class: sklearn warns, the mean stays defined
            warnings.simplefilter("ignore", UserWarning)
            return float(cross_val_score(clf, X[rows], y, groups=groups[rows], cv=cv,
                                         scoring="balanced_accuracy").mean())

    tumour = labels != "normal"
    return {"tumour vs normal": balanced_accuracy(np.ones(len(labels), bool), tumour),
            "malignant vs benign": balanced_accuracy(tumour, labels[tumour] == "malignant")}


def histogram_shortcut_of_phantom(n_images: int = 360, seed: int = 21, size: int = 128, version: int = 2) -> dict:
    """:func:`histogram_shortcut` on freshly rendered phantom images (a third of each class)."""
    from bonetumor.data.phantom import radiograph, radiograph_v2
    from bonetumor.data.phantom.plan import plan
    from bonetumor.data.phantom.plan_v2 import plan_v2

    proportions = {"normal": 0.34, "benign": 0.33, "malignant": 0.33}
    entries = (plan_v2 if version == 2 else plan)(n_images, seed, proportions)
    render = radiograph_v2.render if version == 2 else radiograph.render
    images = (render(entry, size)[0] for entry in entries)
    return histogram_shortcut(images, [e["label"] for e in entries], [e["patient"] for e in entries])
