"""What a read dataset holds: :func:`summary` (counts and problems, for the command line and JSON) and
:func:`data_card` (images per class by subtype, centre and view, as a table)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from bonetumor.data.btxrd.problems import Problem

CLASS_NAMES = ("normal", "benign", "malignant")


def summary(records: Sequence[dict], problems: Sequence[Problem] = ()) -> dict:
    """Counts of a dataset: images, classes, centres, annotated images, lesions and the problems as text."""
    classes = Counter(r["label"] for r in records)
    centres = Counter(r.get("centre") for r in records)
    return {
        "images": len(records),
        "classes": {c: classes.get(c, 0) for c in CLASS_NAMES},
        "centres": {k: centres[k] for k in sorted(centres, key=lambda c: (c is None, str(c)))},
        "annotated_images": sum(1 for r in records if r["lesions"]),
        "lesions": sum(len(r["lesions"]) for r in records),
        "problems": [str(p) for p in problems],
    }


def data_card(records: Sequence[dict]):
    """Images per class by subtype, centre and view, plus lesions and a total row, as a long table with
    columns ``attribute, value, normal, benign, malignant, total`` (a pandas DataFrame)."""
    import pandas as pd

    rows = []

    def add(attribute, value, subset):
        counts = Counter(r["label"] for r in subset)
        row = {"attribute": attribute, "value": value, **{c: counts.get(c, 0) for c in CLASS_NAMES}}
        row["total"] = sum(counts.values())
        rows.append(row)

    add("all", "images", records)
    for attribute, key in (("subtype", "subtype"), ("centre", "centre"), ("view", "view")):
        values = sorted({r.get(key) for r in records}, key=lambda v: (v is None, str(v)))
        for value in values:
            add(attribute, "none" if value is None else str(value), [r for r in records if r.get(key) == value])
    lesions = {c: sum(len(r["lesions"]) for r in records if r["label"] == c) for c in CLASS_NAMES}
    rows.append({"attribute": "all", "value": "lesions", **lesions, "total": sum(lesions.values())})
    return pd.DataFrame(rows, columns=["attribute", "value", *CLASS_NAMES, "total"])
