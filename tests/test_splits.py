"""Pseudo-patients, near duplicates and leak-free splits, on synthetic records shaped like BTXRD's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from bonetumor.data import patients as pt
from bonetumor.data import splits as sp

SITES = ("femur", "tibia", "humerus", "hip bone", "hand")


def make_records(n_patients: int = 160, seed: int = 0) -> list[dict]:
    """Runs of 1–4 consecutive views per patient; neighbouring patients always differ in age or site.
    Each record carries the true patient under ``true_patient`` so the grouping can be checked."""
    rng = np.random.default_rng(seed)
    records, image_id = [], 1
    last_key = None
    for p in range(n_patients):
        centre = int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))
        label = str(rng.choice(["normal", "benign", "malignant"], p=[0.5, 0.4, 0.1]))
        while True:
            key = (centre, int(rng.integers(5, 80)), str(rng.choice(["M", "F"])), str(rng.choice(SITES)))
            if key != last_key:
                break
        last_key = key
        for _ in range(int(rng.integers(1, 5))):
            records.append({"image_id": image_id, "name": f"IMG{image_id:06d}", "file": None, "label": label,
                            "centre": key[0], "age": key[1], "gender": key[2], "site": key[3],
                            "view": "frontal", "lesions": [], "true_patient": p})
            image_id += 1
    return records


@pytest.fixture(scope="module")
def records():
    return pt.assign_pseudo_patients(make_records())


def split_of(splits):
    return {r["image_id"]: name for name, recs in splits.items() for r in recs}


# ---- pseudo-patients -----------------------------------------------------------------------------------

def test_pseudo_patients_recover_runs():
    raw = make_records()
    out = pt.assign_pseudo_patients(raw)
    assert len(out) == len(raw) and all("patient" not in r for r in raw)  # copies; inputs untouched
    true_to_pseudo = {}
    for r in out:
        true_to_pseudo.setdefault(r["true_patient"], set()).add(r["patient"])
    assert all(len(v) == 1 for v in true_to_pseudo.values())
    assert len({r["patient"] for r in out}) == len(true_to_pseudo)  # one pseudo-patient per true patient
    assert out[0]["patient"] == "P00001"


def test_pseudo_patients_order_and_keys():
    base = {"centre": 1, "age": 30, "gender": "F", "site": "femur", "label": "normal"}
    recs = [dict(base, image_id=3), dict(base, image_id=1), dict(base, image_id=2, age=31),
            dict(base, image_id=4, age=float("nan")), dict(base, image_id=5, age=None)]
    out = pt.assign_pseudo_patients(recs)
    by_id = {r["image_id"]: r["patient"] for r in out}
    assert [r["image_id"] for r in out] == [3, 1, 2, 4, 5]  # input order kept
    # sorted by id: 1 (30) | 2 (31) | 3 (30) | 4,5 (age missing: NaN and None agree)
    assert by_id == {1: "P00001", 2: "P00002", 3: "P00003", 4: "P00004", 5: "P00004"}
    with pytest.raises(ValueError, match="repeated"):
        pt.assign_pseudo_patients([dict(base, image_id=1), dict(base, image_id=1)])


# ---- grouped split -------------------------------------------------------------------------------------

def test_grouped_split_no_patient_crosses_and_stratified(records):
    splits = sp.grouped_split(records, (0.7, 0.1, 0.2), seed=0)
    assert set(splits) == {"train", "val", "test"}
    assert sorted(r["image_id"] for s in splits.values() for r in s) == [r["image_id"] for r in records]
    where = {}
    for name, recs in splits.items():
        for r in recs:
            where.setdefault(r["patient"], set()).add(name)
    assert all(len(s) == 1 for s in where.values())
    n = len(records)
    for name, frac in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(len(splits[name]) / n - frac) < 0.03, (name, len(splits[name]) / n)
        for label in ("normal", "benign", "malignant"):
            total = sum(r["label"] == label for r in records)
            got = sum(r["label"] == label for r in splits[name])
            assert abs(got - frac * total) <= max(4, 0.1 * frac * total), (name, label, got, frac * total)
    report = sp.split_report(splits)
    assert report.loc["total", "patients shared with other splits"] == 0
    assert report.loc["total", "images"] == n
    # patients, not only images, follow the fractions (no split gets mostly the many-view patients)
    for name, frac in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(report.loc[name, "patients"] / report.loc["total", "patients"] - frac) < 0.05


def test_grouped_split_deterministic_by_seed(records):
    a = split_of(sp.grouped_split(records, seed=3))
    b = split_of(sp.grouped_split(records, seed=3))
    c = split_of(sp.grouped_split(records, seed=4))
    assert a == b
    assert a != c


def test_grouped_split_assigns_patients_when_missing():
    raw = make_records(40)
    splits = sp.grouped_split(raw, seed=1)
    assert all(r["patient"] for s in splits.values() for r in s)
    where = {}
    for name, recs in splits.items():
        for r in recs:
            where.setdefault(r["true_patient"], set()).add(name)
    assert all(len(s) == 1 for s in where.values())


def test_grouped_split_zero_fraction_and_bad_fractions(records):
    splits = sp.grouped_split(records, (0.8, 0.0, 0.2))
    assert splits["val"] == [] and len(splits["train"]) > len(splits["test"]) > 0
    with pytest.raises(ValueError):
        sp.grouped_split(records, (0.7, 0.2, 0.2))
    with pytest.raises(ValueError):
        sp.grouped_split(records, (0.5, 0.5))


def test_duplicates_kept_together(records):
    rng = np.random.default_rng(5)
    ids = [r["image_id"] for r in records]
    pairs = [tuple(sorted(map(int, rng.choice(ids, 2, replace=False)))) for _ in range(25)]
    for seed in range(4):
        splits = sp.grouped_split(records, seed=seed, duplicates=pairs)
        where = split_of(splits)
        assert all(where[a] == where[b] for a, b in pairs)
        report = sp.split_report(splits, duplicates=pairs)
        assert report.loc["total", "duplicate pairs crossing"] == 0
        assert report.loc["total", "duplicate pairs inside"] == len(set(pairs))
    # without the duplicates argument some of these random pairs do cross (so the test above has teeth)
    plain = sp.split_report(sp.grouped_split(records, seed=0), duplicates=pairs)
    assert plain.loc["total", "duplicate pairs crossing"] > 0


# ---- centre split --------------------------------------------------------------------------------------

def test_centre_split(records):
    splits = sp.centre_split(records, train_centres=(1,), val_fraction=0.1, seed=0)
    assert {r["centre"] for r in splits["test"]} == {2, 3}
    assert {r["centre"] for r in splits["train"] + splits["val"]} == {1}
    assert splits["excluded"] == []
    centre1 = [r for r in records if r["centre"] == 1]
    assert len(splits["train"]) + len(splits["val"]) == len(centre1)
    assert abs(len(splits["val"]) / len(centre1) - 0.1) < 0.03
    report = sp.split_report(splits)
    assert report.loc["total", "patients shared with other splits"] == 0
    assert report.loc["test", "centres"] == "2,3"
    assert split_of(sp.centre_split(records, seed=2)) == split_of(sp.centre_split(records, seed=2))


def test_centre_split_cross_centre_duplicate_is_excluded(records):
    c1 = next(r for r in records if r["centre"] == 1)
    c2 = next(r for r in records if r["centre"] == 2)
    with pytest.warns(UserWarning, match="cross the centre boundary"):
        splits = sp.centre_split(records, duplicates=[(c1["image_id"], c2["image_id"])])
    where = split_of(splits)
    assert where[c1["image_id"]] == "excluded" and where[c2["image_id"]] == "test"
    same_patient = [r["image_id"] for r in records if r["patient"] == c1["patient"]]
    assert all(where[i] == "excluded" for i in same_patient)
    assert {r["centre"] for r in splits["test"]} == {2, 3}


# ---- near duplicates -----------------------------------------------------------------------------------

def _texture(seed, size=96):
    """Smooth random grey texture, radiograph-like in spectrum (unrelated ones differ by ~20–40 bits)."""
    from scipy import ndimage as ndi

    img = ndi.gaussian_filter(np.random.default_rng(seed).random((size, size)), 6)
    img = (img - img.min()) / (img.max() - img.min())
    return (255 * img).astype(np.uint8)


def test_find_near_duplicates(tmp_path):
    recs = []
    for k in range(6):
        path = tmp_path / f"img{k}.png"
        Image.fromarray(_texture(k)).save(path)
        recs.append({"image_id": 10 + k, "file": str(path)})
    # image 20: a rescaled JPEG copy of image 12; image 21: an exact copy of image 14
    Image.fromarray(_texture(2)).resize((150, 150), Image.BILINEAR).save(tmp_path / "copy.jpeg", quality=85)
    Image.fromarray(_texture(4)).save(tmp_path / "exact.png")
    recs += [{"image_id": 20, "file": str(tmp_path / "copy.jpeg")},
             {"image_id": 21, "file": str(tmp_path / "exact.png")}]
    assert pt.find_near_duplicates(recs) == [(12, 20), (14, 21)]
    assert (14, 21) in pt.find_near_duplicates(recs, max_distance=0)
    hashes = pt.image_hashes(recs)
    assert hashes.shape == (8, 64)
    assert pt.find_near_duplicates(recs, hashes=hashes) == [(12, 20), (14, 21)]
    # a large threshold pairs everything
    assert len(pt.find_near_duplicates(recs, max_distance=64, hashes=hashes)) == 8 * 7 // 2


def test_split_report_counts_leaks():
    recs = [{"image_id": i, "label": lab, "patient": p, "centre": 1}
            for i, lab, p in [(1, "normal", "A"), (2, "benign", "A"), (3, "malignant", "B"), (4, "benign", "C")]]
    splits = {"train": recs[:1] + recs[2:3], "val": [], "test": [recs[1], recs[3]]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = sp.split_report(splits, duplicates=[(3, 4)])
    assert report.loc["train", "images"] == 2 and report.loc["test", "benign"] == 2
    assert report.loc["train", "patients shared with other splits"] == 1  # patient A is in train and test
    assert report.loc["total", "patients shared with other splits"] == 1
    assert report.loc["total", "duplicate pairs crossing"] == 1
    assert report.loc["val", "images"] == 0
    assert report.loc["test", "benign %"] == 100.0


def test_tiny_dataset_fills_every_requested_split():
    """16 images in 10 multi-view groups (a smoke-sized phantom): val and test still get a group each."""
    recs = pt.assign_pseudo_patients(make_records(10, seed=4))
    for seed in range(5):
        splits = sp.grouped_split(recs, (0.7, 0.1, 0.2), seed=seed)
        assert all(len(splits[name]) > 0 for name in ("train", "val", "test")), seed
        assert sp.split_report(splits).loc["total", "patients shared with other splits"] == 0
    two = pt.assign_pseudo_patients(make_records(2, seed=4))
    splits = sp.grouped_split(two, (0.7, 0.1, 0.2))
    assert sum(len(v) > 0 for v in splits.values()) == 2  # two groups fill two splits at most


def test_label_conflicts_inside_a_duplicate_component_are_reported():
    recs = pt.assign_pseudo_patients(make_records(10, seed=4))
    assert pt.label_conflicts(recs, []) == []  # one class per patient, neighbours never merged
    # join two images of different classes, far apart in id, through a duplicate pair
    a = next(r for r in recs if r["label"] == "benign")
    b = next(r for r in reversed(recs) if r["label"] == "malignant")
    conflicts = pt.label_conflicts(recs, [(a["image_id"], b["image_id"])])
    assert len(conflicts) == 1
    joined = next(c for c in conflicts if a["image_id"] in c["image_ids"])
    assert b["image_id"] in joined["image_ids"] and {"benign", "malignant"} <= set(joined["labels"])


def test_random_split_is_by_image_and_leaks_multi_view_patients(records):
    """Issue 13's leaky split: every image placed on its own, classes still stratified, so patients with
    several views land on both sides — which the grouped split never allows."""
    leaky = sp.random_split(records, (0.7, 0.1, 0.2), seed=0)
    assert sorted(r["image_id"] for s in leaky.values() for r in s) == [r["image_id"] for r in records]
    n = len(records)
    for name, frac in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(len(leaky[name]) / n - frac) < 0.02
        for label in ("normal", "benign", "malignant"):
            total = sum(r["label"] == label for r in records)
            assert abs(sum(r["label"] == label for r in leaky[name]) - frac * total) <= 1.5
    assert sp.split_report(leaky).loc["total", "patients shared with other splits"] > 10
    assert sp.split_report(sp.grouped_split(records, seed=0)).loc["total", "patients shared with other splits"] == 0
    assert split_of(sp.random_split(records, seed=0)) == split_of(leaky)  # seeded
    assert split_of(sp.random_split(records, seed=1)) != split_of(leaky)
