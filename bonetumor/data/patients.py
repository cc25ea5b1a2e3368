"""Who belongs with whom before any split: pseudo-patients and near-duplicate images.

BTXRD has no patient id, yet about three images in four are several views of one patient, stored as runs
of consecutive image ids, and 21 exact duplicate image pairs are known in it. So:

1. :func:`assign_pseudo_patients` groups runs of consecutive images that share centre, age, gender and site
   into one *pseudo-patient*;
2. :func:`find_near_duplicates` finds image pairs whose perceptual hashes (``imagehash.phash``) nearly agree;
3. :func:`patient_groups` merges the pseudo-patients joined by duplicate pairs — including pairs of
   non-adjacent ids — as connected components (union–find): the units :mod:`bonetumor.data.splits` keeps
   inside one split.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

#: Record fields that must agree between consecutive images of one pseudo-patient.
PATIENT_KEYS = ("centre", "age", "gender", "site")

Pair = tuple[int, int]


def _norm(value):
    """A key value comparable with ``==`` (NaN and None both become None)."""
    if value is None:
        return None
    try:
        if isinstance(value, float) and math.isnan(value):
            return None
    except TypeError:
        pass
    if isinstance(value, np.generic):
        return value.item()
    return value


def assign_pseudo_patients(records: Sequence[dict], keys: Sequence[str] = PATIENT_KEYS,
                           prefix: str = "P") -> list[dict]:
    """Copies of ``records`` (same order) with ``patient`` set to a pseudo-patient id (``P00001``, …).

    Records are taken in ``image_id`` order (the sheet's order); a new pseudo-patient starts whenever
    any of ``keys`` (centre, age, gender, site) differs from the previous record's. Ids are numbered in
    that order. Runs are formed over the records given: if a subset skips ids, two runs that become
    adjacent and agree on every key merge into one pseudo-patient — an error on the safe side, since an
    over-large group can only reduce leakage, never cause it. The copies are shallow (``lesions`` shared).
    """
    order = sorted(range(len(records)), key=lambda i: records[i]["image_id"])
    ids = [int(records[i]["image_id"]) for i in order]
    if len(set(ids)) != len(ids):
        dup = sorted(k for k, v in Counter(ids).items() if v > 1)[:5]
        raise ValueError(f"assign_pseudo_patients: repeated image_id(s) {dup}")
    patient_of: dict[int, str] = {}
    previous, number = object(), 0
    for i in order:
        key = tuple(_norm(records[i].get(k)) for k in keys)
        if key != previous:
            number += 1
            previous = key
        patient_of[i] = f"{prefix}{number:05d}"
    return [dict(rec, patient=patient_of[i]) for i, rec in enumerate(records)]


def ensure_patients(records: Sequence[dict]) -> list[dict]:
    """The records themselves when all carry ``patient``, else copies with pseudo-patients assigned."""
    if all(rec.get("patient") for rec in records):
        return list(records)
    return assign_pseudo_patients(records)


def image_hashes(records: Sequence[dict], hash_size: int = 8) -> np.ndarray:
    """Perceptual hashes (``imagehash.phash``) of the records' image files as a bool array
    (n_records, hash_size²). JPEGs are decoded at reduced size (PIL ``draft``), which phash's own
    32×32 resampling makes harmless and which is many times faster on large radiographs."""
    import imagehash
    from PIL import Image

    out = np.zeros((len(records), hash_size * hash_size), dtype=bool)
    for k, rec in enumerate(records):
        with Image.open(rec["file"]) as im:
            side = hash_size * 4 * 2
            im.draft("L", (side, side))
            out[k] = imagehash.phash(im.convert("L"), hash_size=hash_size).hash.ravel()
    return out


def find_near_duplicates(records: Sequence[dict], max_distance: int = 4, hash_size: int = 8,
                         hashes: np.ndarray | None = None) -> list[Pair]:
    """Pairs ``(image_id_a, image_id_b)``, ``a < b``, of images whose perceptual hashes differ in at most
    ``max_distance`` of their ``hash_size²`` bits (Hamming distance; 0 = identical hash), sorted.

    ``imagehash.phash`` is computed on each record's ``file`` (or ``hashes`` from :func:`image_hashes` are
    reused). The default, 4 of 64 bits, catches re-encoded, rescaled or slightly re-windowed copies of a
    radiograph, while unrelated images differ in about half the bits (≈ 20–40); a generous threshold errs
    on the safe side, since a pair wrongly merged only makes one group larger. Pass 0 for identical
    hashes only. All pairs
    are compared (vectorised, in row blocks: about 0.1 s for 3,746 hashes; hashing the files dominates).
    """
    if max_distance < 0:
        raise ValueError("max_distance must be ≥ 0")
    if hashes is None:
        hashes = image_hashes(records, hash_size=hash_size)
    if len(hashes) != len(records):
        raise ValueError(f"{len(hashes)} hashes for {len(records)} records")
    bits = hashes.astype(np.float32)
    ids = np.array([int(r["image_id"]) for r in records])
    pairs: set[Pair] = set()
    n, block = len(records), 512
    for start in range(0, n, block):
        a = bits[start:start + block]
        # Hamming distance = |a| + |b| - 2 a·b
        dist = a.sum(1, keepdims=True) + bits.sum(1)[None, :] - 2.0 * (a @ bits.T)
        rows, cols = np.nonzero(np.rint(dist) <= max_distance)
        for r, c in zip(rows + start, cols):
            if r < c:
                x, y = int(ids[r]), int(ids[c])
                pairs.add((min(x, y), max(x, y)))
    return sorted(pairs)


class _UnionFind:
    def __init__(self, items: Iterable):
        self.parent = {x: x for x in items}

    def find(self, x):
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def patient_groups(records: Sequence[dict], duplicates: Iterable[Pair] | None) -> list[list[int]]:
    """Indices of ``records`` grouped by pseudo-patient, with the two patients of each duplicate pair merged.
    Groups are listed in order of their first record's image_id."""
    uf = _UnionFind(rec["patient"] for rec in records)
    patient_of_id = {int(rec["image_id"]): rec["patient"] for rec in records}
    for a, b in duplicates or ():
        if int(a) in patient_of_id and int(b) in patient_of_id:
            uf.union(patient_of_id[int(a)], patient_of_id[int(b)])
    members: dict[str, list[int]] = {}
    for i, rec in sorted(enumerate(records), key=lambda t: t[1]["image_id"]):
        members.setdefault(uf.find(rec["patient"]), []).append(i)
    return list(members.values())



def label_conflicts(records: Sequence[dict], duplicates: Iterable[Pair] | None) -> list[dict]:
    """The groups of :func:`patient_groups` whose images disagree on their class (e.g. a near-duplicate pair
    labelled benign in one copy and malignant in the other): ``[{"image_ids", "labels"}]``, in group order.
    Such a group stays in one split either way; the list says where the labels deserve a second look."""
    records = ensure_patients(records)
    out = []
    for idx in patient_groups(records, duplicates):
        labels = sorted({records[i]["label"] for i in idx})
        if len(labels) > 1:
            out.append({"image_ids": [int(records[i]["image_id"]) for i in idx], "labels": labels})
    return out
