"""The BTXRD reader on small hand-made folders in the BTXRD layout (not the phantom, so that the two check
each other): good input, every kind of bad input, COCO export, the resize cache and the download."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from bonetumor.data import btxrd
from bonetumor.data.btxrd import DatasetError, Problem
from bonetumor.data.coco import mask_to_polygons, write_coco

# ------------------------------------------------------------------------------------------ fixture builder

COLUMNS = [
    "image_id", "center", "age", "gender",
    "hand", "ulna", "radius", "humerus", "foot", "tibia", "fibula", "femur", "hip bone", "ankle-joint",
    "knee-joint", "hip-joint", "wrist-joint", "elbow-joint", "shoulder-joint",
    "tumor", "benign", "malignant",
    "osteochondroma", "multiple osteochondromas", "simple bone cyst", "giant cell tumor", "osteofibroma",
    "synovial osteochondroma", "other bt", "osteosarcoma", "other mt",
    "upper limb", "lower limb", "pelvis", "frontal", "lateral", "oblique",
]
MALIGNANT = {"osteosarcoma", "other mt"}


def sheet_row(image_id, label="normal", subtype=None, centre=1, age=30, gender="M", site=("femur",),
              view=("frontal",)):
    row = dict.fromkeys(COLUMNS, 0)
    row.update({"image_id": image_id, "center": centre, "age": age, "gender": gender})
    for s in site:
        row[s] = 1
    for v in view:
        row[v] = 1
    row["lower limb"] = 1
    if label != "normal":
        row["tumor"] = 1
        row[label] = 1
        row[subtype] = 1
    return row


def rect(x0, y0, x1, y1, label, group=None):
    return {"label": label, "points": [[x0, y0], [x1, y1]], "group_id": group, "shape_type": "rectangle",
            "flags": {}}


def poly(points, label, group=None):
    return {"label": label, "points": [list(p) for p in points], "group_id": group, "shape_type": "polygon",
            "flags": {}}


def circle(cx, cy, r, n=24):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [(float(cx + r * np.cos(a)), float(cy + r * np.sin(a))) for a in t]


def labelme(shapes, width, height, image_path):
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
            "imageHeight": height, "imageWidth": width}


def write_json(path, obj, crlf=False):
    text = json.dumps(obj, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", "\r\n").encode() if crlf else text.encode())


def write_image(path, width, height, blobs=(), seed=0):
    rng = np.random.default_rng(seed)
    arr = (rng.random((height, width)) * 40 + 60).astype(np.uint8)
    image = Image.fromarray(arr, mode="L")
    draw = ImageDraw.Draw(image)
    for cx, cy, r in blobs:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=220)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG", quality=90)


# Each item: sheet id, on-disk file name, size, label, subtype, centre, view, lesions [(cx, cy, r)]
CLEAN = [
    ("IMG000001.jpeg", "IMG000001.jpeg", (120, 90), "normal", None, 1, "frontal", []),
    ("IMG000002.jpeg", "IMG000002.jpeg", (120, 90), "benign", "osteochondroma", 1, "frontal", [(40, 40, 18)]),
    ("IMG000003.jpeg", "IMG000003.jpeg", (90, 120), "malignant", "osteosarcoma", 2, "lateral", [(45, 60, 20)]),
    ("IMG000004.jpeg", "IMG000004.jpeg", (120, 90), "normal", None, 3, "lateral", []),
    ("IMG000005.jpeg", "IMG000005.jpeg", (160, 120), "benign", "giant cell tumor", 1, "oblique",
     [(40, 40, 15), (110, 80, 20)]),
    # the sheet says .jpeg, the file is .jpg (as 27 real BTXRD files)
    ("IMG000006.jpeg", "IMG000006.jpg", (120, 90), "malignant", "other mt", 3, "frontal", [(60, 45, 25)]),
    # and the reverse
    ("IMG000007.jpg", "IMG000007.jpeg", (120, 90), "benign", "other bt", 2, "frontal", [(30, 30, 12)]),
]


def make_dataset(base: Path, items=CLEAN, crlf=False, nested=False, extra_rows=()) -> Path:
    """Write a BTXRD-layout folder ``base/BTXRD`` from ``items``; return its root."""
    root = base / "BTXRD"
    ann_dir = root / "Annotations" / ("Annotations" if nested else "")
    rows = []
    for k, (sheet_id, file_name, (w, h), label, subtype, centre, view, blobs) in enumerate(items):
        write_image(root / "images" / file_name, w, h, blobs, seed=k)
        rows.append(sheet_row(sheet_id, label, subtype, centre=centre, age=20 + k, gender="MF"[k % 2],
                              view=(view,)))
        if label != "normal":
            shapes = []
            for cx, cy, r in blobs:
                shapes.append(rect(cx - r, cy - r, cx + r, cy + r, subtype))
                shapes.append(poly(circle(cx, cy, r), subtype))
            write_json(ann_dir / f"{Path(file_name).stem}.json",
                       labelme(shapes, w, h, f"..\\images\\{file_name}"), crlf=crlf)
    rows += list(extra_rows)
    pd.DataFrame(rows, columns=COLUMNS).to_excel(root / "dataset.xlsx", sheet_name="Sheet1", index=False)
    return root


@pytest.fixture
def clean(tmp_path) -> Path:
    return make_dataset(tmp_path)


def messages(problems):
    return [str(p) for p in problems]


def one(problems, *needles):
    """The single problem whose text contains every needle (fails with the full list otherwise)."""
    hits = [str(p) for p in problems if all(n in str(p) for n in needles)]
    assert len(hits) == 1, f"expected one problem with {needles}, got {hits} among {messages(problems)}"
    return hits[0]


def set_json(root, name, mutate):
    path = next((root / "Annotations").rglob(f"{name}.json"))
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------------------------ good input

def test_sheet_columns_are_the_37_documented():
    assert list(btxrd.SHEET_COLUMNS) == COLUMNS and len(COLUMNS) == 37


def test_clean_dataset_reads_without_problems(clean):
    records, problems = btxrd.read_dataset(clean)
    assert problems == []
    assert [r["image_id"] for r in records] == list(range(1, 8))
    assert [r["name"] for r in records] == [f"IMG00000{i}" for i in range(1, 8)]
    by = {r["name"]: r for r in records}
    r2 = by["IMG000002"]
    assert (r2["label"], r2["subtype"], r2["centre"], r2["age"], r2["gender"]) == ("benign", "osteochondroma", 1, 21, "F")
    assert (r2["site"], r2["view"], r2["patient"]) == ("femur", "frontal", None)
    assert (r2["width"], r2["height"]) == (120, 90)
    assert len(r2["lesions"]) == 1
    lesion = r2["lesions"][0]
    assert lesion["category"] == "benign" and lesion["subtype"] == "osteochondroma"
    assert lesion["box"] == [22.0, 22.0, 58.0, 58.0]
    assert len(lesion["polygons"]) == 1 and len(lesion["polygons"][0]) == 48
    assert by["IMG000003"]["width"] == 90 and by["IMG000003"]["height"] == 120
    assert by["IMG000005"]["label"] == "benign" and len(by["IMG000005"]["lesions"]) == 2
    assert by["IMG000001"]["label"] == "normal" and by["IMG000001"]["lesions"] == [] and by["IMG000001"]["subtype"] is None
    assert all(Path(r["file"]).is_file() for r in records)


def test_jpg_jpeg_mismatch_both_ways_is_accepted(clean):
    records, problems = btxrd.read_dataset(clean)
    by = {r["name"]: r for r in records}
    assert Path(by["IMG000006"]["file"]).name == "IMG000006.jpg"
    assert Path(by["IMG000007"]["file"]).name == "IMG000007.jpeg"
    assert by["IMG000006"]["label"] == "malignant" and len(by["IMG000006"]["lesions"]) == 1
    assert problems == []


def test_parent_folder_nested_annotations_and_crlf(tmp_path):
    root = make_dataset(tmp_path, crlf=True, nested=True)
    assert b"\r\n" in next((root / "Annotations" / "Annotations").glob("*.json")).read_bytes()
    from_parent, problems = btxrd.read_dataset(tmp_path)  # the parent of BTXRD/
    assert problems == []
    from_root, _ = btxrd.read_dataset(root)
    assert from_parent == from_root
    assert sum(len(r["lesions"]) for r in from_parent) == 6


def test_summary_counts(clean):
    records, problems = btxrd.read_dataset(clean)
    s = btxrd.summary(records, problems)
    assert s == {"images": 7, "classes": {"normal": 2, "benign": 3, "malignant": 2}, "centres": {1: 3, 2: 2, 3: 2},
                 "annotated_images": 5, "lesions": 6, "problems": []}
    assert sum(s["classes"].values()) == s["images"]


def test_summary_lists_problem_text(tmp_path):
    items = [it for it in CLEAN if it[0] != "IMG000003.jpeg"]
    root = make_dataset(tmp_path, items=items, extra_rows=[sheet_row("IMG000099.jpeg")])
    records, problems = btxrd.read_dataset(root)
    s = btxrd.summary(records, problems)
    assert s["images"] == 6 and len(s["problems"]) == 1 and "IMG000099" in s["problems"][0]


def test_several_sites_are_joined_in_column_order(tmp_path):
    items = CLEAN[:1]
    root = make_dataset(tmp_path, items=items,
                        extra_rows=[sheet_row("IMG000002.jpeg", site=("knee-joint", "femur"), view=("lateral",))])
    write_image(root / "images" / "IMG000002.jpeg", 50, 40)
    records, problems = btxrd.read_dataset(root)
    assert problems == []
    assert records[1]["site"] == "femur+knee-joint" and records[1]["view"] == "lateral"


# ------------------------------------------------------------------------------------------ shape grouping

def _write_shapes(root, name, shapes):
    return set_json(root, name, lambda d: d.__setitem__("shapes", shapes))


def test_group_id_groups_shapes_and_several_polygons_per_lesion(clean):
    label = "giant cell tumor"
    _write_shapes(clean, "IMG000005", [
        rect(20, 20, 60, 60, label, group=1), poly(circle(30, 40, 8), label, group=1),
        poly(circle(50, 40, 8), label, group=1),
        # group 2 has no rectangle although it lies inside group 1's box: its box comes from its polygon
        poly(circle(40, 40, 5), label, group=2),
        rect(90, 60, 130, 100, label), poly(circle(110, 80, 15), label),
    ])
    records, problems = btxrd.read_dataset(clean)
    assert problems == []
    lesions = {r["name"]: r for r in records}["IMG000005"]["lesions"]
    assert len(lesions) == 3
    assert lesions[0]["box"] == [20, 20, 60, 60] and len(lesions[0]["polygons"]) == 2
    assert lesions[1]["box"] == pytest.approx([35, 35, 45, 45], abs=0.1) and len(lesions[1]["polygons"]) == 1
    assert lesions[2]["box"] == [90, 60, 130, 100] and len(lesions[2]["polygons"]) == 1


def test_ungrouped_polygons_pair_with_the_rectangle_covering_them(clean):
    label = "giant cell tumor"
    _write_shapes(clean, "IMG000005", [
        poly(circle(110, 80, 15), label),          # listed before its rectangle
        poly(circle(30, 30, 8), label),
        rect(15, 15, 50, 50, label),
        rect(90, 60, 130, 100, label),
        poly(circle(40, 40, 6), label),            # second polygon of the first lesion
        poly(circle(140, 20, 6), label),           # overlaps no rectangle: a lesion of its own
        rect(5, 90, 30, 115, label),               # a rectangle without polygon: box only, reported
    ])
    records, problems = btxrd.read_dataset(clean)
    lesions = {r["name"]: r for r in records}["IMG000005"]["lesions"]
    assert len(lesions) == 4
    boxes = [les["box"] for les in lesions]
    polys = [len(les["polygons"]) for les in lesions]
    by_box = dict(zip(map(tuple, boxes), polys))
    assert by_box[(15, 15, 50, 50)] == 2
    assert by_box[(90, 60, 130, 100)] == 1
    assert by_box[(5, 90, 30, 115)] == 0
    own = [les for les in lesions if les["box"][0] > 130]
    assert len(own) == 1 and own[0]["box"] == pytest.approx([134, 14, 146, 26], abs=0.1)
    msg = one(problems, "rectangle without polygon")
    assert msg.startswith("Annotations/IMG000005.json:")
    assert len(problems) == 1


def test_nested_rectangles_each_get_the_polygon_that_fits_them(clean):
    label = "giant cell tumor"
    outer = [(20, 20), (90, 20), (90, 80), (20, 80), (20, 50)]
    inner = [(40, 40), (60, 40), (60, 60), (40, 60)]
    _write_shapes(clean, "IMG000005", [rect(20, 20, 90, 80, label), rect(40, 40, 60, 60, label),
                                       poly(inner, label), poly(outer, label)])
    records, problems = btxrd.read_dataset(clean)
    assert problems == []
    lesions = {r["name"]: r for r in records}["IMG000005"]["lesions"]
    assert [(les["box"], les["polygons"]) for les in lesions] == [
        ([20, 20, 90, 80], [[v for p in outer for v in p]]), ([40, 40, 60, 60], [[v for p in inner for v in p]])]


# ------------------------------------------------------------------------------------------ bad input

def test_unreadable_and_truncated_images_are_reported_and_skipped(clean):
    (clean / "images" / "IMG000004.jpeg").write_bytes(b"this is not a JPEG")
    data = (clean / "images" / "IMG000002.jpeg").read_bytes()
    (clean / "images" / "IMG000002.jpeg").write_bytes(data[: len(data) // 2])
    (clean / "images" / "IMG000001.jpeg").write_bytes(b"")
    records, problems = btxrd.read_dataset(clean)
    assert {r["name"] for r in records} == {"IMG000003", "IMG000005", "IMG000006", "IMG000007"}
    assert "not a readable image" in one(problems, "images/IMG000004.jpeg")
    assert "truncated" in one(problems, "images/IMG000002.jpeg")
    assert "empty file" in one(problems, "images/IMG000001.jpeg")
    assert len(problems) == 3


def test_image_header_only_read_is_cheap(clean, monkeypatch):
    """Reading must not decode pixels: ImageFile.load (the JPEG decode) is never called."""
    from PIL import ImageFile

    calls = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    records, _ = btxrd.read_dataset(clean)
    assert len(records) == 7 and calls == []
    btxrd.load_image(records[0]["file"])  # the probe is live: a real decode goes through it
    assert calls


def test_malformed_json_is_reported_and_the_tumour_image_skipped(clean):
    path = clean / "Annotations" / "IMG000003.json"
    path.write_text('{"shapes": [ {"label": "osteosarcoma", ')
    records, problems = btxrd.read_dataset(clean)
    assert "IMG000003" not in {r["name"] for r in records}
    assert "malformed JSON" in one(problems, "Annotations/IMG000003.json")
    assert "no usable lesion" in one(problems, "images/IMG000003.jpeg", "malignant")
    assert len(problems) == 2


def test_not_labelme_json_is_reported(clean):
    (clean / "Annotations" / "IMG000003.json").write_text("[1, 2, 3]")
    _, problems = btxrd.read_dataset(clean)
    assert "not a LabelMe file" in one(problems, "Annotations/IMG000003.json")


def test_polygon_with_fewer_than_three_points(clean):
    _write_shapes(clean, "IMG000005", [
        rect(20, 20, 60, 60, "giant cell tumor"), poly(circle(40, 40, 15), "giant cell tumor"),
        poly([(100, 70), (120, 90)], "giant cell tumor"),
        {"label": "giant cell tumor", "points": [[1, "a"]], "shape_type": "polygon", "group_id": None},
        {"label": "giant cell tumor", "points": [[1, 2], [3, 4]], "shape_type": "circle", "group_id": None},
    ])
    records, problems = btxrd.read_dataset(clean)
    assert len({r["name"]: r for r in records}["IMG000005"]["lesions"]) == 1
    assert "needs 3" in one(problems, "Annotations/IMG000005.json", "shape 2", "2 point(s)")
    assert "not a list of [x, y] number pairs" in one(problems, "IMG000005.json", "shape 3")
    assert "not supported" in one(problems, "IMG000005.json", "shape 4", "circle")
    assert len(problems) == 3


def test_coordinates_outside_the_image_are_clipped_and_reported(clean):
    _write_shapes(clean, "IMG000002", [
        rect(-10, 50, 40, 200, "osteochondroma"), poly([(-10, 50), (40, 60), (30, 200)], "osteochondroma"),
    ])
    records, problems = btxrd.read_dataset(clean)
    lesion = {r["name"]: r for r in records}["IMG000002"]["lesions"][0]
    assert lesion["box"] == [0, 50, 40, 90]
    xs, ys = lesion["polygons"][0][0::2], lesion["polygons"][0][1::2]
    assert min(xs) >= 0 and max(ys) <= 90
    assert "2 shape(s) reach outside the 120x90 image; clipped" in one(problems, "Annotations/IMG000002.json")
    assert len(problems) == 1


def test_unknown_label_and_label_sheet_disagreement_sheet_wins(clean):
    _write_shapes(clean, "IMG000002", [rect(20, 20, 60, 60, "tumour?"), poly(circle(40, 40, 15), "tumour?")])
    _write_shapes(clean, "IMG000003", [rect(20, 40, 70, 80, "osteochondroma"),
                                       poly(circle(45, 60, 20), "osteochondroma")])
    _write_shapes(clean, "IMG000005", [rect(20, 20, 60, 60, "other bt"), poly(circle(40, 40, 15), "other bt")])
    records, problems = btxrd.read_dataset(clean)
    by = {r["name"]: r for r in records}
    assert by["IMG000002"]["lesions"][0]["category"] == "benign"         # kept, with the sheet's class
    assert "unknown label 'tumour?'" in one(problems, "Annotations/IMG000002.json")
    assert by["IMG000003"]["label"] == "malignant"
    assert by["IMG000003"]["lesions"][0]["category"] == "malignant"
    assert by["IMG000003"]["lesions"][0]["subtype"] == "osteosarcoma"
    msg = one(problems, "Annotations/IMG000003.json", "disagrees")
    assert "'osteochondroma' (benign)" in msg and "class and subtype" in msg and "sheet is used" in msg
    msg = one(problems, "Annotations/IMG000005.json", "disagrees")
    assert "subtype ('giant cell tumor', benign)" in msg
    assert len(problems) == 3


def test_sheet_row_without_image_and_image_without_row(tmp_path):
    root = make_dataset(tmp_path, extra_rows=[sheet_row("IMG000008.jpeg")])
    write_image(root / "images" / "IMG000777.jpeg", 40, 30)
    write_json(root / "Annotations" / "IMG000888.json", labelme([], 40, 30, "IMG000888.jpeg"))
    records, problems = btxrd.read_dataset(root)
    assert len(records) == 7
    assert "no image file IMG000008" in one(problems, "dataset.xlsx", "row 9 (IMG000008.jpeg)")
    assert "without a row in the sheet" in one(problems, "images/IMG000777.jpeg")
    assert "without a row in the sheet" in one(problems, "Annotations/IMG000888.json")
    assert len(problems) == 3


def test_tumour_row_without_annotation_is_reported_not_silently_normal(clean):
    (clean / "Annotations" / "IMG000006.json").unlink()
    records, problems = btxrd.read_dataset(clean)
    assert "IMG000006" not in {r["name"] for r in records}
    msg = one(problems, "images/IMG000006.jpg")
    assert "the sheet says malignant but there is no annotation file" in msg


def test_annotation_on_a_normal_image_is_reported(clean):
    write_json(clean / "Annotations" / "IMG000001.json",
               labelme([rect(10, 10, 30, 30, "osteochondroma"), poly(circle(20, 20, 8), "osteochondroma")],
                       120, 90, "IMG000001.jpeg"))
    records, problems = btxrd.read_dataset(clean)
    assert {r["name"]: r for r in records}["IMG000001"]["lesions"] == []
    assert "sheet says IMG000001 is normal" in one(problems, "Annotations/IMG000001.json")


def test_duplicate_ids_in_sheet_and_annotations(tmp_path):
    root = make_dataset(tmp_path, extra_rows=[sheet_row("IMG000002.jpeg", centre=3)])
    (root / "Annotations" / "Annotations").mkdir()
    shutil.copy(root / "Annotations" / "IMG000003.json", root / "Annotations" / "Annotations" / "IMG000003.json")
    records, problems = btxrd.read_dataset(root)
    assert [r["name"] for r in records].count("IMG000002") == 1
    assert {r["name"]: r for r in records}["IMG000002"]["centre"] == 1  # the first row is kept
    assert "duplicate image_id 'IMG000002.jpeg' (first at row 3)" in one(problems, "dataset.xlsx", "row 9")
    msg = one(problems, "Annotations/IMG000003.json", "several annotation files")
    assert "Annotations/Annotations/IMG000003.json" in msg
    assert len(problems) == 2


def test_two_files_for_one_id(clean):
    write_image(clean / "images" / "IMG000001.jpg", 30, 30)
    records, problems = btxrd.read_dataset(clean)
    assert Path(records[0]["file"]).name == "IMG000001.jpeg"  # the one the sheet names
    assert "several files for id IMG000001" in one(problems, "images/IMG000001.jpeg")


def test_missing_sheet_columns_is_an_error_listing_them(clean):
    df = pd.read_excel(clean / "dataset.xlsx").drop(columns=["hip bone", "other mt"])
    df.to_excel(clean / "dataset.xlsx", index=False)
    with pytest.raises(DatasetError) as info:
        btxrd.read_dataset(clean)
    assert "dataset.xlsx" in str(info.value) and "hip bone, other mt" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_no_sheet_or_no_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        btxrd.read_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no dataset.xlsx"):
        btxrd.read_dataset(tmp_path)


def test_no_images_folder_is_a_clear_error(clean):
    shutil.rmtree(clean / "images")
    with pytest.raises(DatasetError, match="no images/ folder"):
        btxrd.read_dataset(clean)


def test_unreadable_sheet_is_a_clear_error(clean):
    (clean / "dataset.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(DatasetError, match="dataset.xlsx: cannot read the sheet"):
        btxrd.read_dataset(clean)


def test_bad_sheet_values_are_reported(tmp_path):
    bad_gender = sheet_row("IMG000008.jpeg", gender="X", age=None)
    both = sheet_row("IMG000009.jpeg", "benign", "osteochondroma")
    both["malignant"] = 1
    root = make_dataset(tmp_path, extra_rows=[bad_gender, both])
    write_image(root / "images" / "IMG000008.jpeg", 40, 30)
    write_image(root / "images" / "IMG000009.jpeg", 40, 30)
    records, problems = btxrd.read_dataset(root)
    by = {r["name"]: r for r in records}
    assert by["IMG000008"]["gender"] is None and by["IMG000008"]["age"] is None
    assert "gender 'X' is not M or F" in one(problems, "dataset.xlsx", "row 9", "gender")
    assert "age is empty" in one(problems, "dataset.xlsx", "row 9", "age")
    assert "both benign and malignant" in one(problems, "dataset.xlsx", "row 10")
    assert "IMG000009" not in by


def test_read_sheet_is_the_sheet_with_normalised_column_names(clean):
    df = pd.read_excel(clean / "dataset.xlsx")
    df.columns = [f" {c.upper()}  " for c in df.columns]  # a header written by hand
    df.to_excel(clean / "dataset.xlsx", index=False)
    sheet = btxrd.read_sheet(clean)
    assert list(sheet.columns) == COLUMNS and len(sheet) == 7
    assert sheet["image_id"].tolist()[5:] == ["IMG000006.jpeg", "IMG000007.jpg"]
    assert sheet["tumor"].tolist() == [0, 1, 1, 0, 1, 1, 1] and sheet["gender"].tolist()[:2] == ["M", "F"]
    assert sheet.equals(btxrd.read_sheet(clean.parent)) and sheet.equals(btxrd.read_sheet(clean / "dataset.xlsx"))
    df.drop(columns=df.columns[[0, 9]]).to_excel(clean / "dataset.xlsx", index=False)
    with pytest.raises(DatasetError, match="lacks 2 of the 37 BTXRD columns: image_id, tibia"):
        btxrd.read_sheet(clean)


def test_parse_sheet_reads_rows_as_the_reader_does(tmp_path):
    contradicting = sheet_row("IMG000008.jpeg", "benign", "osteosarcoma", site=("femur", "knee-joint"))
    root = make_dataset(tmp_path, items=CLEAN[:3], extra_rows=[contradicting])
    table, problems = btxrd.parse_sheet(root)
    assert list(table.columns) == list(btxrd.PARSED_COLUMNS) and table["row"].tolist() == [1, 2, 3, 4]
    last = table.iloc[-1]
    assert (last["name"], last["label"], last["subtype"], last["site"]) == ("IMG000008", "benign", "osteosarcoma",
                                                                            "femur+knee-joint")
    assert "is malignant but the row says benign" in one(problems, "dataset.xlsx", "row 5")
    records, _ = btxrd.read_dataset(root)  # IMG000008 has no image: the reader drops it
    for record, row in zip(records, table.to_dict("records")):
        assert {k: record[k] for k in ("name", "label", "subtype", "site", "view", "centre", "age", "gender")} == \
            {k: row[k] for k in ("name", "label", "subtype", "site", "view", "centre", "age", "gender")}
        assert record["image_id"] == row["row"]


def test_find_image_picks_the_file_the_reader_picks(clean):
    records, _ = btxrd.read_dataset(clean)
    for record in records:
        assert btxrd.find_image(clean, record["name"]) == Path(record["file"])
    assert btxrd.find_image(clean.parent, "IMG000006.jpeg").name == "IMG000006.jpg"  # the sheet's .jpeg, a .jpg
    with pytest.raises(FileNotFoundError, match="IMG000099"):
        btxrd.find_image(clean, "IMG000099.jpeg")


def test_strict_mode_raises_listing_the_problems(clean):
    (clean / "images" / "IMG000004.jpeg").write_bytes(b"junk")
    with pytest.raises(DatasetError) as info:
        btxrd.read_dataset(clean, strict=True)
    assert "strict" in str(info.value) and "images/IMG000004.jpeg" in str(info.value)
    assert len(info.value.problems) == 1 and isinstance(info.value.problems[0], Problem)
    records, _ = btxrd.read_dataset(clean)  # and without strict the rest is usable
    assert len(records) == 6


def test_image_path_in_json_is_never_opened(clean, tmp_path, monkeypatch):
    outside = tmp_path / "outside.jpeg"
    write_image(outside, 999, 777)
    set_json(clean, "IMG000002", lambda d: d.__setitem__("imagePath", str(outside)))
    set_json(clean, "IMG000003", lambda d: d.__setitem__("imagePath", "../../../etc/IMG000003.jpeg"))
    opened = []
    original = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(Path(fp).resolve()) or original(fp, *a, **k))
    records, problems = btxrd.read_dataset(clean)
    rec = {r["name"]: r for r in records}["IMG000002"]
    assert (rec["width"], rec["height"]) == (120, 90)
    assert outside.resolve() not in opened and all(p.is_relative_to(clean.resolve()) for p in opened)
    assert "names another image; ignored" in one(problems, "Annotations/IMG000002.json", "outside.jpeg")
    assert len(problems) == 1  # same stem, other folder: not even worth a mention


def test_problem_is_frozen_and_names_the_file():
    p = Problem("images/x.jpeg", "truncated", "image")
    assert str(p) == "images/x.jpeg: truncated"
    with pytest.raises(AttributeError):
        p.reason = "fine"


# ------------------------------------------------------------------------------------------ fingerprint

def test_fingerprint_changes_with_content_not_with_mtime(clean):
    first = btxrd.fingerprint(clean)
    assert len(first) == 64 and first == btxrd.fingerprint(clean.parent)
    image = clean / "images" / "IMG000001.jpeg"
    data = image.read_bytes()
    image.write_bytes(data)  # new mtime, same bytes
    assert btxrd.fingerprint(clean) == first
    image.write_bytes(data + b"\0")
    assert btxrd.fingerprint(clean) != first


# ------------------------------------------------------------------------------------------ COCO

def test_coco_export_loads_in_pycocotools(clean, tmp_path):
    from pycocotools.coco import COCO

    records, _ = btxrd.read_dataset(clean)
    out = write_coco(records, tmp_path / "gt" / "coco.json")
    coco = COCO(str(out))
    assert sorted(coco.getImgIds()) == list(range(1, 8))
    assert sorted(coco.getAnnIds()) == list(range(1, 7))
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == {1: "benign", 2: "malignant"}
    assert coco.getAnnIds(imgIds=[1]) == []  # a normal image: listed, no annotation
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[3]))[0]
    assert ann["category_id"] == 2 and ann["iscrowd"] == 0
    assert ann["bbox"] == [25.0, 40.0, 40.0, 40.0]
    assert ann["area"] == pytest.approx(np.pi * 20 ** 2, rel=0.1)
    assert ann["area"] == coco.annToMask(ann).sum()


def test_coco_polygons_masks_polygons_keep_iou(clean, tmp_path):
    from pycocotools.coco import COCO

    records, _ = btxrd.read_dataset(clean)
    coco = COCO(str(write_coco(records, tmp_path / "coco.json")))
    assert len(coco.getAnnIds()) == 6
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann["image_id"])[0]
        mask = coco.annToMask(ann).astype(bool)
        polygons = mask_to_polygons(mask)
        back = dict(ann, segmentation=polygons)
        mask2 = coco.annToMask(back).astype(bool)
        assert mask.shape == (img["height"], img["width"])
        iou = (mask & mask2).sum() / (mask | mask2).sum()
        assert iou >= 0.9, (ann["id"], iou)


def test_coco_box_only_lesion_gets_its_box_as_mask(clean, tmp_path):
    from pycocotools.coco import COCO

    _write_shapes(clean, "IMG000002", [rect(10, 20, 50, 60, "osteochondroma")])
    records, _ = btxrd.read_dataset(clean)
    coco = COCO(str(write_coco(records, tmp_path / "c.json")))
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[2]))[0]
    mask = coco.annToMask(ann).astype(bool)
    assert mask[20:60, 10:50].all() and mask.sum() == 40 * 40 and ann["bbox"] == [10, 20, 40, 40]


def test_exported_coco_is_the_evaluated_ground_truth(clean, tmp_path):
    """One definition: the exported file holds exactly the ground truth the evaluation scores."""
    from bonetumor.data.coco import coco_ground_truth

    records, _ = btxrd.read_dataset(clean)
    exported = json.loads(write_coco(records, tmp_path / "c.json").read_text())
    evaluated = coco_ground_truth(records).dataset
    for key in ("images", "annotations", "categories"):
        assert exported[key] == json.loads(json.dumps(evaluated[key])), key


# ------------------------------------------------------------------------------------------ resize cache

def test_resize_cache_scales_annotations_and_does_not_decode_twice(tmp_path, monkeypatch):
    big = [("IMG000001.jpeg", "IMG000001.jpeg", (640, 480), "benign", "osteochondroma", 1, "frontal",
            [(200, 150, 60)]),
           ("IMG000002.jpeg", "IMG000002.jpeg", (300, 500), "normal", None, 1, "frontal", [])]
    root = make_dataset(tmp_path, items=big)
    records, problems = btxrd.read_dataset(root)
    assert problems == []
    cache = tmp_path / "cache"
    opened = []
    original = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or original(*a, **k))
    small = btxrd.resize_records(records, 64, cache_dir=cache, progress=False)
    assert len(opened) == 2
    r = small[0]
    assert (r["width"], r["height"], r["orig_width"], r["orig_height"]) == (64, 48, 640, 480)
    assert (small[1]["width"], small[1]["height"]) == (38, 64)
    with original(r["file"]) as im:
        assert im.mode == "L" and im.size == (64, 48) and im.format == "PNG"
    assert Path(r["file"]).parent == cache / "64px"
    assert r["orig_file"] == records[0]["file"]
    assert r["lesions"][0]["box"] == pytest.approx([14.0, 9.0, 26.0, 21.0])
    assert r["lesions"][0]["polygons"][0][:2] == pytest.approx([26.0, 15.0])
    assert records[0]["lesions"][0]["box"] == [140.0, 90.0, 260.0, 210.0]  # the input is not changed
    # the lesion is where the bright blob is
    arr = np.asarray(original(r["file"]))
    assert arr[15, 20] > 150 and arr[40, 55] < 130
    mtimes = [Path(x["file"]).stat().st_mtime_ns for x in small]
    opened.clear()
    again = btxrd.resize_records(records, 64, cache_dir=cache, progress=False)
    assert opened == [] and again == small
    assert [Path(x["file"]).stat().st_mtime_ns for x in again] == mtimes


def test_resize_upscales_small_images_and_key_follows_content(tmp_path):
    root = make_dataset(tmp_path, items=[CLEAN[0]])
    records, _ = btxrd.read_dataset(root)
    first = btxrd.resize_records(records, 240, cache_dir=tmp_path / "c", progress=False)[0]
    assert (first["width"], first["height"]) == (240, 180)
    write_image(Path(records[0]["file"]), 120, 90, seed=99)
    second = btxrd.resize_records(records, 240, cache_dir=tmp_path / "c", progress=False)[0]
    assert second["file"] != first["file"]


def test_resize_of_an_undecodable_image_names_it(tmp_path):
    root = make_dataset(tmp_path, items=[CLEAN[0]])
    records, _ = btxrd.read_dataset(root)
    Path(records[0]["file"]).write_bytes(b"\xff\xd8 no longer a JPEG")  # replaced after reading the dataset
    with pytest.raises(DatasetError, match="IMG000001.jpeg"):
        btxrd.resize_records(records, 32, cache_dir=tmp_path / "c", progress=False)


# ------------------------------------------------------------------------------------------ download

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path, monkeypatch):
    """A folder served on 127.0.0.1 for the duration of the test; yields (folder, base URL)."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _zip_folder(folder: Path, out: Path, arc_base: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(arc_base).as_posix())
    return out


def test_download_checks_md5_and_returns_the_root(tmp_path, http_dir):
    served, base = http_dir
    src = make_dataset(tmp_path / "src", items=CLEAN[:3])
    archive = _zip_folder(src, served / "BTXRD.zip", src.parent)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(btxrd.DownloadError, match="does not match MD5"):
        btxrd.download_btxrd(tmp_path / "bad", url=f"{base}/BTXRD.zip", md5="0" * 32, progress=False)
    assert not (tmp_path / "bad" / "BTXRD").exists()
    root = btxrd.download_btxrd(tmp_path / "dest", url=f"{base}/BTXRD.zip", md5=md5, progress=False)
    assert root == (tmp_path / "dest" / "BTXRD").resolve()
    records, problems = btxrd.read_dataset(root)
    assert len(records) == 3 and problems == []
    archive.unlink()  # present already: no second download
    assert btxrd.download_btxrd(tmp_path / "dest", url=f"{base}/BTXRD.zip", md5=md5, progress=False) == root


def test_download_unwraps_a_zip_inside_the_zip(tmp_path, http_dir):
    served, base = http_dir
    src = make_dataset(tmp_path / "src", items=CLEAN[:2])
    inner = _zip_folder(src, tmp_path / "BTXRD.zip", src.parent)
    with zipfile.ZipFile(served / "article.zip", "w") as zf:
        zf.write(inner, "BTXRD.zip")
    root = btxrd.download_btxrd(tmp_path / "dest", url=f"{base}/article.zip", md5=None, progress=False)
    assert len(btxrd.read_dataset(root)[0]) == 2


def test_download_of_a_missing_url_is_a_clear_error(tmp_path, http_dir):
    _, base = http_dir
    with pytest.raises(btxrd.DownloadError, match="nothing-here.zip"):
        btxrd.download_btxrd(tmp_path / "d", url=f"{base}/nothing-here.zip", md5=None, progress=False)


def test_data_card_counts(clean):
    records, _ = btxrd.read_dataset(clean)
    card = btxrd.data_card(records).set_index(["attribute", "value"])
    assert list(card.columns) == ["normal", "benign", "malignant", "total"]
    assert card.loc[("all", "images")].tolist() == [2, 3, 2, 7]
    assert card.loc[("all", "lesions")].tolist() == [0, 4, 2, 6]
    assert card.loc[("subtype", "none")].tolist() == [2, 0, 0, 2]
    assert card.loc[("subtype", "giant cell tumor")].tolist() == [0, 1, 0, 1]
    assert card.loc[("centre", "3")].tolist() == [1, 0, 1, 2]
    assert card.loc[("view", "lateral")].tolist() == [1, 0, 1, 2]
    for attribute in ("subtype", "centre", "view"):
        assert card.loc[attribute]["total"].sum() == 7


def test_exif_orientation_gives_the_displayed_frame(tmp_path):
    """LabelMe annotates the image as displayed (EXIF applied): sizes and cached pixels use that frame."""
    root = make_dataset(tmp_path, items=[CLEAN[0]])
    path = root / "images" / "IMG000001.jpeg"
    stored = np.zeros((90, 120), np.uint8)  # stored landscape, bright left strip
    stored[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: the strip ends up on top
    Image.fromarray(stored, mode="L").save(path, format="JPEG", exif=exif, quality=95)
    records, problems = btxrd.read_dataset(root)
    assert problems == []
    assert (records[0]["width"], records[0]["height"], records[0]["exif_orientation"]) == (90, 120, 6)
    small = btxrd.resize_records(records, 60, cache_dir=tmp_path / "c", progress=False)[0]
    arr = np.asarray(Image.open(small["file"]))
    assert arr.shape == (60, 45) and arr[:5].mean() > 200 and arr[-20:].mean() < 30
    assert "exif_orientation" not in small
