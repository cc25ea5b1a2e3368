"""Splits of the records: a stratified grouped split and a held-out-centre split (leak-free), and the
leaky image-level random split that published results often use, kept to measure the leak.

Splitting images at random would put views of one patient, or two copies of one image, in both training and
test sets. So, over the groups of :mod:`bonetumor.data.patients` (pseudo-patients merged through
near-duplicate pairs):

1. :func:`grouped_split` and :func:`centre_split` keep every pseudo-patient — and every duplicate pair, whose
   two pseudo-patients are merged into one group — inside one split;
2. :func:`split_report` counts images per split and class, patients, and any patient or duplicate pair
   that crosses splits (zero by construction; the report lets a notebook assert it).
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from bonetumor import IMAGE_LABELS
from bonetumor.data.patients import Pair, ensure_patients, patient_groups

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------------------------------
# groups and the greedy stratified assignment


def _classes(records: Sequence[dict]) -> list[str]:
    seen = {rec["label"] for rec in records}
    return [c for c in IMAGE_LABELS if c in seen] + sorted(seen - set(IMAGE_LABELS))


def _greedy_assign(records: Sequence[dict], groups: list[list[int]], fractions: Sequence[float],
                   seed: int) -> list[int]:
    """Split index for each group, so that every split gets about ``fractions`` of every class.

    Groups are visited in an order shuffled by ``seed`` (unusually large ones, over 1 % of the images,
    first); each goes to the split where it least increases the squared deviation from the target counts, with each class's deviation measured
    relative to that class's size (so the rare malignant class is balanced as well as the common ones).
    Splits with fraction 0 get nothing. Ties between splits are broken by a seeded random order.
    This is the usual greedy for stratified grouped splitting; unlike ``StratifiedGroupKFold`` it takes
    any fractions, not only multiples of 1/k.
    """
    classes = _classes(records)
    col = {c: k for k, c in enumerate(classes)}
    counts = np.zeros((len(groups), len(classes)))
    for g, idx in enumerate(groups):
        for i in idx:
            counts[g, col[records[i]["label"]]] += 1
    totals = counts.sum(axis=0)
    frac = np.asarray(fractions, dtype=float)
    target = np.outer(frac, totals)
    weight = 1.0 / np.maximum(totals, 1.0) ** 2
    have = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(groups))
    sizes = counts.sum(axis=1)
    big = sizes > max(2.0, 0.01 * sizes.sum())
    # unusually large groups first (largest first), then all others in seeded random order; sorting every
    # group by size would hand the many-view patients to the largest split and leave the others mostly
    # single-view patients
    order = sorted((g for g in shuffled if big[g]), key=lambda g: -sizes[g]) + [g for g in shuffled if not big[g]]
    open_splits = np.flatnonzero(frac > 0)
    assignment = [-1] * len(groups)
    for g in order:
        n = counts[g]
        cost = ((have[open_splits] + n - target[open_splits]) ** 2
                - (have[open_splits] - target[open_splits]) ** 2) @ weight
        tie_order = rng.permutation(len(open_splits))
        best = min(tie_order, key=lambda k: round(cost[k], 12))  # first of the equal-cost splits
        s = int(open_splits[best])
        assignment[g] = s
        have[s] += n
    # With few, multi-image groups the least-squares choice can leave a small split empty (a 2-image
    # group overshoots a target of 1.6 images). A split asked for (fraction > 0) then takes one of the
    # smallest groups of the split holding most groups, as long as that one keeps at least one group.
    for s in open_splits:
        if assignment.count(int(s)) == 0:
            donor = max(open_splits, key=lambda d: assignment.count(int(d)))
            if assignment.count(int(donor)) < 2:
                continue
            candidates = [g for g in order if assignment[g] == donor]
            g = min(candidates, key=lambda c: sizes[c])  # first smallest in the seeded order
            assignment[g] = int(s)
    return assignment


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {fractions}")
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be ≥ 0 and sum to 1, got {fractions}")
    return fractions


def grouped_split(records: Sequence[dict], fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                  duplicates: Iterable[Pair] | None = None) -> dict[str, list[dict]]:
    """Split records into ``{"train", "val", "test"}`` with about ``fractions`` of each image class
    (normal/benign/malignant) in each, never splitting a pseudo-patient or a duplicate pair.

    Records without ``patient`` get pseudo-patients first (:func:`assign_pseudo_patients`); each pair in
    ``duplicates`` (image ids, from :func:`find_near_duplicates`) merges its two pseudo-patients into one
    group. Groups are assigned by a seeded greedy (see ``_greedy_assign``): the same records and ``seed``
    give the same split. Within a split, records are in image_id order. With very few groups the
    fractions can only be met roughly; a split with a fraction above 0 is left empty only when there are
    fewer groups than splits.
    """
    fractions = _check_fractions(fractions)
    records = ensure_patients(records)
    groups = patient_groups(records, duplicates)
    assignment = _greedy_assign(records, groups, fractions, seed)
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for g, idx in enumerate(groups):
        out[SPLITS[assignment[g]]].extend(records[i] for i in idx)
    for name in SPLITS:
        out[name].sort(key=lambda r: r["image_id"])
    return out


def random_split(records: Sequence[dict], fractions: Sequence[float] = (0.7, 0.1, 0.2),
                 seed: int = 0) -> dict[str, list[dict]]:
    """The LEAKY split most published BTXRD results use: image by image (each image its own group), with
    about ``fractions`` of each class in each split, ignoring pseudo-patients and duplicates — so views of
    one patient and near-identical images can sit in training and test. For measuring how much that
    inflates the metrics (against :func:`grouped_split`), never for reporting a model."""
    fractions = _check_fractions(fractions)
    records = ensure_patients(records)
    assignment = _greedy_assign(records, [[i] for i in range(len(records))], fractions, seed)
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for i, s in enumerate(assignment):
        out[SPLITS[s]].append(records[i])
    for name in SPLITS:
        out[name].sort(key=lambda r: r["image_id"])
    return out


#: The centres a held-out-centre split trains on by default (BTXRD's centre 1 holds most of its images).
TRAIN_CENTRES = (1,)


def centre_split(records: Sequence[dict], train_centres: Sequence[int] = TRAIN_CENTRES, val_fraction: float = 0.1,
                 seed: int = 0, duplicates: Iterable[Pair] | None = None) -> dict[str, list[dict]]:
    """Held-out-centre split: ``test`` holds every record from a centre not in ``train_centres`` (for BTXRD
    by default centres 2 and 3); ``train`` and ``val`` divide the training centres' records
    (``val_fraction`` of each class in ``val``), by pseudo-patient and duplicate group as in
    :func:`grouped_split`.

    A duplicate pair whose images lie on both sides of the centre boundary cannot be kept together without
    putting a training centre into the test set; the training-side group of such a pair is left out of
    ``train``/``val`` and returned under ``"excluded"`` (always present, usually empty), with a warning.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train_centres = {int(c) for c in train_centres}
    records = ensure_patients(records)
    is_train = [rec.get("centre") is not None and int(rec["centre"]) in train_centres for rec in records]
    test = [rec for rec, t in zip(records, is_train) if not t]
    pool = [rec for rec, t in zip(records, is_train) if t]
    if not pool:
        raise ValueError(f"centre_split: no record from training centre(s) {sorted(train_centres)}")

    duplicates = [(int(a), int(b)) for a, b in (duplicates or ())]
    test_ids = {int(r["image_id"]) for r in test}
    pool_ids = {int(r["image_id"]) for r in pool}
    crossing = [(a, b) for a, b in duplicates
                if (a in test_ids and b in pool_ids) or (b in test_ids and a in pool_ids)]
    groups = patient_groups(pool, duplicates)
    excluded_idx: set[int] = set()
    if crossing:
        tainted = {a if a in pool_ids else b for a, b in crossing}
        for idx in groups:
            if any(int(pool[i]["image_id"]) in tainted for i in idx):
                excluded_idx.update(idx)
        warnings.warn(f"centre_split: {len(crossing)} duplicate pair(s) cross the centre boundary; "
                      f"{len(excluded_idx)} training-centre image(s) left out (splits['excluded'])", stacklevel=2)
    kept = [i for i in range(len(pool)) if i not in excluded_idx]
    kept_pool = [pool[i] for i in kept]
    kept_groups = patient_groups(kept_pool, duplicates)
    assignment = _greedy_assign(kept_pool, kept_groups, (1.0 - val_fraction, val_fraction), seed)
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": sorted(test, key=lambda r: r["image_id"]),
                                  "excluded": sorted((pool[i] for i in excluded_idx), key=lambda r: r["image_id"])}
    for g, idx in enumerate(kept_groups):
        out[("train", "val")[assignment[g]]].extend(kept_pool[i] for i in idx)
    out["train"].sort(key=lambda r: r["image_id"])
    out["val"].sort(key=lambda r: r["image_id"])
    return out


# --------------------------------------------------------------------------------------------------------
# report


def split_report(splits: dict[str, Sequence[dict]], duplicates: Iterable[Pair] | None = None) -> pd.DataFrame:
    """One row per split (and a ``total`` row): images, images per class, the share of each class
    in the split, distinct pseudo-patients, centres present, duplicate pairs inside the split, and the
    number of the split's patients / duplicate pairs that also appear in another split (leaks; 0 when the
    split was made by :func:`grouped_split` or :func:`centre_split`)."""
    rows = []
    all_records = [r for recs in splits.values() for r in recs]
    classes = [c for c in IMAGE_LABELS] + sorted({r["label"] for r in all_records} - set(IMAGE_LABELS))
    split_of_patient: dict[str, set[str]] = {}
    split_of_id: dict[int, str] = {}
    for name, recs in splits.items():
        for r in recs:
            split_of_patient.setdefault(r.get("patient"), set()).add(name)
            split_of_id[int(r["image_id"])] = name
    duplicates = [(int(a), int(b)) for a, b in (duplicates or ())]
    for name, recs in list(splits.items()) + [("total", all_records)]:
        counts = Counter(r["label"] for r in recs)
        patients = {r.get("patient") for r in recs}
        ids = {int(r["image_id"]) for r in recs}
        row = {"split": name, "images": len(recs)}
        row.update({c: counts.get(c, 0) for c in classes})
        row.update({f"{c} %": (100.0 * counts.get(c, 0) / len(recs)) if recs else float("nan") for c in classes})
        row["patients"] = len(patients - {None})
        row["centres"] = ",".join(str(c) for c in sorted({r.get("centre") for r in recs if r.get("centre") is not None}))
        row["duplicate pairs inside"] = sum(a in ids and b in ids for a, b in duplicates)
        if name == "total":
            row["patients shared with other splits"] = sum(len(s) > 1 for p, s in split_of_patient.items() if p)
            row["duplicate pairs crossing"] = sum(
                a in split_of_id and b in split_of_id and split_of_id[a] != split_of_id[b] for a, b in duplicates)
        else:
            row["patients shared with other splits"] = sum(
                len(split_of_patient[p]) > 1 for p in patients if p is not None)
            row["duplicate pairs crossing"] = sum(
                (a in ids) != (b in ids) and a in split_of_id and b in split_of_id for a, b in duplicates)
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")
