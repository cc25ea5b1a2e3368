"""The synthetic radiograph phantom: BTXRD layout, determinism, annotations, no global-intensity shortcut."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bonetumor import cli
from bonetumor.data import btxrd, layout, phantom
from bonetumor.data.phantom import radiograph


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """60 images at 160 px (enough for a duplicate and every class), written once for several tests."""
    return phantom.generate(tmp_path_factory.mktemp("ph") / "small", n_images=60, seed=3, size=160, progress=False)


def _sheet(root: Path):
    import pandas as pd

    return pd.read_excel(root / "dataset.xlsx", sheet_name="Sheet1", engine="openpyxl")


def test_layout_and_sheet_columns(small):
    df = _sheet(small)
    assert list(df.columns) == list(phantom.SHEET_COLUMNS) and len(df.columns) == 37
    assert list(df.columns[:4]) == ["image_id", "center", "age", "gender"]
    assert list(df.columns[-6:]) == ["upper limb", "lower limb", "pelvis", "frontal", "lateral", "oblique"]
    assert len(df) == 60
    assert df["image_id"].tolist() == [f"IMG{i:06d}.jpeg" for i in range(1, 61)]
    images = sorted(p.name for p in (small / "images").iterdir())
    assert images == df["image_id"].tolist()
    tumour = df["tumor"] == 1
    annotations = sorted(p.name for p in (small / "Annotations").iterdir())
    assert annotations == [n.replace(".jpeg", ".json") for n in df.loc[tumour, "image_id"]]
    # one-hot groups consistent with one another
    assert ((df["benign"] + df["malignant"]) == df["tumor"]).all()
    assert (df[list(phantom.SUBTYPES)].sum(axis=1) == df["tumor"]).all()
    assert (df[list(phantom.BENIGN_SUBTYPES)].sum(axis=1) == df["benign"]).all()
    assert (df[list(phantom.VIEW_COLUMNS)].sum(axis=1) == 1).all()
    assert (df[list(layout.REGION_COLUMNS)].sum(axis=1) == 1).all()
    bones = ["ulna", "radius", "humerus", "tibia", "fibula", "femur"]
    assert (df[bones].sum(axis=1) == 1).all()
    assert ((df[["ulna", "radius", "humerus"]].sum(axis=1) == 1) == (df["upper limb"] == 1)).all()
    assert df["center"].isin([1, 2, 3]).all() and df["age"].between(1, 88).all()
    assert set(df["gender"]) <= {"M", "F"}
    # the layout's reader-facing files: greyscale JPEGs, longest side = size, varied aspect ratios
    shapes = [Image.open(small / "images" / n).size for n in images]
    assert all(max(s) == 160 for s in shapes) and len(set(shapes)) > 5
    meta = json.loads((small / "phantom.json").read_text())
    assert meta["seed"] == 3 and meta["n_images"] == 60


def test_multiview_runs_and_duplicates(small):
    df = _sheet(small)
    key = df[["center", "age", "gender"] + list(layout.SITE_COLUMNS) + ["tumor", "benign", "malignant"]]
    same_as_prev = (key == key.shift()).all(axis=1)
    runs = (~same_as_prev).cumsum()
    in_multi = runs.map(runs.value_counts()) > 1
    assert 0.5 < in_multi.mean() < 0.95  # BTXRD: about 75 % of images in multi-view runs
    # views differ within a run
    for _, run in df.groupby(runs):
        if len(run) > 1:
            views = run[list(phantom.VIEW_COLUMNS)].idxmax(axis=1)
            assert views.nunique() == len(run)
    dups = json.loads((small / "phantom.json").read_text())["duplicates"]
    assert len(dups) == 1
    (copy, source), = dups.items()
    a = np.asarray(Image.open(small / "images" / f"{copy}.jpeg"), float)
    b = np.asarray(Image.open(small / "images" / f"{source}.jpeg"), float)
    assert a.shape == b.shape and np.abs(a - b).mean() < 2.0  # the same picture, re-encoded
    assert (small / "images" / f"{copy}.jpeg").read_bytes() != (small / "images" / f"{source}.jpeg").read_bytes()
    rows = df.set_index("image_id")
    assert rows.loc[f"{copy}.jpeg"].equals(rows.loc[f"{source}.jpeg"])


def test_labelme_structure(small):
    df = _sheet(small).set_index("image_id")
    for path in sorted((small / "Annotations").glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc["version"] == "5.4.1" and doc["imageData"] is None
        assert doc["imagePath"] == path.stem + ".jpeg"
        W, H = Image.open(small / "images" / doc["imagePath"]).size
        assert (doc["imageWidth"], doc["imageHeight"]) == (W, H)
        row = df.loc[doc["imagePath"]]
        subtype = [s for s in phantom.SUBTYPES if row[s] == 1]
        assert len(subtype) == 1
        shapes = doc["shapes"]
        assert shapes, path.name
        assert shapes[0]["shape_type"] == "rectangle"
        rectangles = 0
        for shape in shapes:
            assert set(shape) >= {"label", "points", "shape_type", "group_id", "flags"}
            assert shape["label"] == subtype[0]  # the subtype name, not benign/malignant
            pts = np.array(shape["points"], float)
            assert (pts[:, 0] >= 0).all() and (pts[:, 0] <= W).all()
            assert (pts[:, 1] >= 0).all() and (pts[:, 1] <= H).all()
            if shape["shape_type"] == "rectangle":
                rectangles += 1
                assert pts.shape == (2, 2) and (pts[1] > pts[0]).all()
                rect = pts
            else:
                assert shape["shape_type"] == "polygon" and len(pts) >= 3
                # every polygon lies inside the rectangle of its lesion (the one before it)
                assert (pts >= rect[0] - 1e-6).all() and (pts <= rect[1] + 1e-6).all()
        polygons = sum(s["shape_type"] == "polygon" for s in shapes)
        assert polygons >= rectangles >= 1
        if subtype[0] == "multiple osteochondromas":
            assert rectangles >= 1


def test_class_proportions_respected(tmp_path):
    entries = phantom.plan(400, seed=11)
    labels = np.array([e["label"] for e in entries])
    for label, share in phantom.DEFAULT_PROPORTIONS.items():
        assert abs((labels == label).mean() - share) < 0.04, label
    subtypes = [e["subtype"] for e in entries if e["label"] == "benign"]
    assert max(set(subtypes), key=subtypes.count) == "osteochondroma"
    custom = phantom.plan(300, seed=11, proportions={"normal": 1, "benign": 1, "malignant": 2})
    labels = np.array([e["label"] for e in custom])
    assert abs((labels == "malignant").mean() - 0.5) < 0.04
    with pytest.raises(ValueError):
        phantom.plan(10, proportions={"cancer": 1.0})


def test_same_seed_identical_other_seed_different(tmp_path, small):
    again = phantom.generate(tmp_path / "again", n_images=60, seed=3, size=160, progress=False, workers=2)
    assert _hashes(again) == _hashes(small)  # byte-identical, serial vs 2 processes included
    other = phantom.generate(tmp_path / "other", n_images=60, seed=4, size=160, progress=False)
    h_small, h_other = _hashes(small), _hashes(other)
    differing = [k for k in h_small if k.startswith("images/") and h_small[k] != h_other.get(k)]
    assert len(differing) == 60 and h_small["dataset.xlsx"] != h_other["dataset.xlsx"]


def test_image_independent_of_generation_order():
    entries = phantom.plan(30, seed=5)
    a, _ = phantom.render(entries[17], 128)
    b, _ = phantom.render(phantom.plan(30, seed=5)[17], 128)
    for e in entries[:5]:  # rendering others first changes nothing
        phantom.render(e, 128)
    c, _ = phantom.render(entries[17], 128)
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_lesions_visible_and_sized():
    """Every tumour image has a lesion; the lesion is a sizeable part of the picture and changes the pixels."""
    entries = [e for e in phantom.plan(120, seed=2) if e["label"] != "normal"]
    fractions, contrasts = [], []
    for entry in entries:
        img, lesions = phantom.render(entry, 192)
        assert lesions, entry["name"]
        for lesion in lesions:
            rows, cols = np.nonzero(lesion["mask"])
            fractions.append(max(np.ptp(rows) + 1, np.ptp(cols) + 1) / min(img.shape))
        # the same view without its lesion differs inside the mask
        plain, _ = phantom.render(dict(entry, subtype=None, label="normal"), 192)
        mask = np.any([l["mask"] for l in lesions], axis=0)
        contrasts.append(np.abs(img[mask].astype(float) - plain[mask]).mean())
    fractions = np.array(fractions)
    assert 0.06 < np.median(fractions) < 0.35 and np.percentile(fractions, 95) < 0.5
    assert np.median(contrasts) > 8  # grey levels of 255


def test_no_global_histogram_shortcut():
    """A logistic regression on each image's 32-bin intensity histogram cannot tell the classes apart."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    entries = phantom.plan(360, seed=21, proportions={"normal": 0.34, "benign": 0.33, "malignant": 0.33})
    hist, labels, groups = [], [], []
    for entry in entries:
        img, _ = phantom.render(entry, 128)
        hist.append(np.histogram(img, bins=32, range=(0, 256))[0] / img.size)
        labels.append(entry["label"])
        groups.append(entry["patient"])
    X, labels, groups = np.array(hist), np.array(labels), np.array(groups)

    def balanced_accuracy(rows, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)  # views of a patient stay together
        return cross_val_score(clf, X[rows], y, groups=groups[rows], cv=cv, scoring="balanced_accuracy").mean()

    tumour = labels != "normal"
    assert balanced_accuracy(tumour, labels[tumour] == "malignant") <= 0.60
    assert balanced_accuracy(np.ones(len(labels), bool), tumour) <= 0.65


def test_interrupted_run_leaves_no_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = radiograph.render

    def failing(entry, size):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk full")
        return original(entry, size)

    monkeypatch.setattr(radiograph, "render", failing)  # the renderer generate() calls for each image
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="disk full"):
        phantom.generate(out, n_images=12, seed=0, size=96, progress=False, workers=1)
    assert not out.exists() and not (out / "dataset.xlsx").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_refuses_to_overwrite_and_validates(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        phantom.generate(out, n_images=4, size=96, progress=False)
    assert (out / "keep.txt").exists()
    with pytest.raises(ValueError):
        phantom.generate(tmp_path / "x", n_images=0, size=96, progress=False)
    with pytest.raises(ValueError):
        phantom.generate(tmp_path / "y", n_images=4, size=16, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is fine
    assert cli.main(["data", "phantom", str(empty), "--images", "4", "--seed", "1", "--size", "96"]) == 0
    assert (empty / "dataset.xlsx").is_file() and "4 images" in capsys.readouterr().out


def test_btxrd_reader_reads_the_phantom(small):
    """Real and synthetic data take the same path: the BTXRD reader accepts the phantom without problems."""
    records, problems = btxrd.read_dataset(small)
    assert len(records) == 60
    assert not [p for p in problems if "duplicate" not in str(p).lower()], problems[:5]
    tumours = [r for r in records if r["label"] != "normal"]
    assert tumours and all(r["lesions"] for r in tumours)
    assert all(l["subtype"] == r["subtype"] for r in tumours for l in r["lesions"])
