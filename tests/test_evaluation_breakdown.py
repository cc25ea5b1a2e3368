"""Three-class metrics, false positives on normal images, lesion recall by size / subtype / centre and
per-centre metrics, against cases computed by hand (bonetumor.evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, precision_score, recall_score, roc_auc_score

from bonetumor import LABEL_TO_ID
from bonetumor.evaluation import breakdown, image_table, lesion_metrics
from bonetumor.evaluation.classification import normal_images, three_class

H = W = 100


def square(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def record(image_id, label, lesions=(), centre=1, subtype=None):
    return {"image_id": image_id, "name": f"IMG{image_id}", "file": f"/x/{image_id}.png", "width": W, "height": H,
            "label": label, "patient": f"P{image_id}", "centre": centre, "subtype": subtype,
            "lesions": [{"category": cat, "subtype": sub, "box": list(box), "polygons": [square(*box)]}
                        for cat, sub, box in lesions]}


def pred(image_id, dets=()):
    return {"image_id": image_id, "height": H, "width": W, "boxes": [list(map(float, b)) for _, _, b in dets],
            "labels": [LABEL_TO_ID[c] for c, _, _ in dets], "scores": [s for _, s, _ in dets], "masks": []}


SMALL, MEDIUM, LARGE = (10, 10, 14, 14), (10, 10, 43, 43), (0, 0, 99, 99)  # areas 16, 1089, 9801 px; sides 4, 33, 99 %


@pytest.fixture
def case():
    records = [
        record(1, "malignant", [("malignant", "osteosarcoma", LARGE)], centre=1, subtype="osteosarcoma"),
        record(2, "benign", [("benign", "osteochondroma", SMALL), ("benign", "osteochondroma", MEDIUM)],
               centre=2, subtype="osteochondroma"),
        record(3, "normal", centre=1),
        record(4, "normal", centre=2),
        record(5, "benign", [("benign", "giant cell tumor", MEDIUM)], centre=2, subtype="giant cell tumor"),
    ]
    preds = [
        pred(1, [("malignant", 0.9, LARGE)]),                    # found, right class
        pred(2, [("benign", 0.8, MEDIUM), ("benign", 0.3, SMALL)]),  # small one below threshold: missed
        pred(3, [("benign", 0.7, (60, 60, 90, 90)), ("malignant", 0.6, (0, 0, 20, 20))]),  # 2 false positives
        pred(4, [("malignant", 0.2, (0, 0, 30, 30))]),          # below threshold: called normal
        pred(5, [("malignant", 0.55, MEDIUM)]),                  # found, wrong class
    ]
    return records, preds


def test_three_class_by_hand_and_against_sklearn(case):
    records, preds = case
    t = image_table(preds, records, score_threshold=0.5)
    assert t["pred_class"].tolist() == ["malignant", "benign", "benign", "normal", "malignant"]
    m = three_class(t)
    # normal: 2 true, predicted normal once (image 4): recall 1/2, precision 1/1
    assert m["recall_normal"] == 0.5 and m["precision_normal"] == 1.0
    # benign: 2 true (2, 5), predicted benign for 2 and 3: recall 1/2, precision 1/2
    assert m["recall_benign"] == 0.5 and m["precision_benign"] == 0.5
    # malignant: 1 true, predicted malignant for 1 and 5: recall 1, precision 1/2
    assert m["recall_malignant"] == 1.0 and m["precision_malignant"] == 0.5 and m["malignant_recall"] == 1.0
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    labels = ["normal", "benign", "malignant"]
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(t["truth"], t["pred_class"]))
    assert [m[f"recall_{c}"] for c in labels] == pytest.approx(recall_score(t["truth"], t["pred_class"], labels=labels,
                                                                           average=None))
    assert [m[f"precision_{c}"] for c in labels] == pytest.approx(
        precision_score(t["truth"], t["pred_class"], labels=labels, average=None))
    # macro one-vs-rest AUC with the documented per-class scores
    scores = {"normal": 1 - t["tumour_score"], "benign": t["benign_score"], "malignant": t["malignancy_score"]}
    expected = np.mean([roc_auc_score(t["truth"] == c, scores[c]) for c in labels])
    assert m["macro_auc"] == pytest.approx(expected)


def test_false_positives_on_normal_images(case):
    records, preds = case
    t = image_table(preds, records, score_threshold=0.5)
    fp = normal_images(t)
    assert fp["fp_image_rate"] == 0.5          # image 3 of the two normal ones
    assert fp["fp_per_image"] == 1.0           # 2 kept detections over 2 normal images


def test_lesion_outcomes_by_size_subtype_and_centre(case):
    records, preds = case
    lesions = breakdown.lesion_outcomes(preds, records, score_threshold=0.5)
    assert len(lesions) == 4
    assert lesions["found"].tolist() == [True, False, True, True]
    assert lesions["coco_size"].tolist() == ["large", "small", "medium", "medium"]
    assert lesions["size_bin"].tolist() == [">=35%", "<5%", "20-35%", "20-35%"]
    # the found lesions are exactly lesion_metrics' class-agnostic true positives
    tp = lesion_metrics(preds, records, score_threshold=0.5)["class_agnostic"]["tp"]
    assert tp == lesions["found"].sum() == 3
    by = breakdown.lesion_breakdown(lesions)
    assert by["coco_size"] == [{"group": "small", "lesions": 1, "found": 0, "recall": 0.0},
                               {"group": "medium", "lesions": 2, "found": 2, "recall": 1.0},
                               {"group": "large", "lesions": 1, "found": 1, "recall": 1.0}]
    assert {r["group"]: r["recall"] for r in by["subtype"]} == {"giant cell tumor": 1.0, "osteochondroma": 0.5,
                                                                 "osteosarcoma": 1.0}
    assert {r["group"]: (r["lesions"], r["found"]) for r in by["centre"]} == {1: (1, 1), 2: (3, 2)}
    assert [r["group"] for r in by["side_fraction"]] == ["<5%", "20-35%", ">=35%"]  # empty bins left out


def test_per_centre_metrics(case):
    records, preds = case
    t = image_table(preds, records, score_threshold=0.5)
    lesions = breakdown.lesion_outcomes(preds, records, score_threshold=0.5)
    rows = {r["centre"]: r for r in breakdown.per_centre(t, lesions)}
    assert set(rows) == {1, 2}
    c1, c2 = rows[1], rows[2]
    assert (c1["images"], c1["normal"], c1["benign"], c1["malignant"]) == (2, 1, 0, 1)
    # centre 1: image 1 tumour→tumour (right), image 3 normal→tumour (wrong)
    assert c1["tumour_accuracy"] == 0.5 and c1["lesion_recall"] == 1.0 and c1["malignant_recall"] == 1.0
    assert c2["images"] == 3 and c2["lesion_recall"] == pytest.approx(2 / 3)


def test_a_model_that_predicts_nothing(case):
    records, _ = case
    nothing = [pred(r["image_id"]) for r in records]
    t = image_table(nothing, records, score_threshold=0.5)
    m = three_class(t)
    assert m["recall_normal"] == 1.0 and m["recall_benign"] == 0.0 and m["malignant_recall"] == 0.0
    assert math.isnan(m["precision_benign"]) and math.isnan(m["precision_malignant"])
    assert m["balanced_accuracy"] == pytest.approx(1 / 3)
    assert m["macro_auc"] == pytest.approx(0.5)  # all scores tie
    assert normal_images(t) == {"fp_image_rate": 0.0, "fp_per_image": 0.0}
    lesions = breakdown.lesion_outcomes(nothing, records)
    assert not lesions["found"].any() and len(lesions) == 4


def test_an_all_normal_split(case):
    records, preds = case
    normal = [r for r in records if r["label"] == "normal"]
    t = image_table(preds, normal, score_threshold=0.5)
    m = three_class(t)
    assert m["recall_normal"] == 0.5 and math.isnan(m["recall_benign"]) and math.isnan(m["malignant_recall"])
    assert m["balanced_accuracy"] == 0.5 and math.isnan(m["macro_auc"])
    lesions = breakdown.lesion_outcomes(preds, normal)
    assert lesions.empty and breakdown.lesion_breakdown(lesions)["coco_size"] == []
    assert [r["lesion_recall"] for r in breakdown.per_centre(t, lesions)] == [pytest.approx(math.nan, nan_ok=True)] * 2


def test_the_additions_reach_the_metrics_file_and_its_table(case):
    from bonetumor.evaluation import evaluate_predictions, metrics_table

    records, preds = case
    result = evaluate_predictions(preds, records, {"score_threshold": 0.5, "bootstrap": 20}, seed=3)
    three = result["classification"]["three_class"]
    assert three["balanced_accuracy"]["value"] == pytest.approx(2 / 3)
    assert three["malignant_recall"]["value"] == 1.0 and three["malignant_recall"]["n_boot"] <= 20
    assert result["classification"]["normal_images"]["fp_image_rate"]["value"] == 0.5
    assert [g["group"] for g in result["breakdown"]["lesion_recall"]["coco_size"]] == ["small", "medium", "large"]
    assert [c["centre"] for c in result["breakdown"]["per_centre"]] == [1, 2]
    table = metrics_table(result)
    row = table[(table["task"] == "three_class") & (table["metric"] == "balanced_accuracy")].iloc[0]
    assert row["value"] == pytest.approx(2 / 3) and row["ci_low"] <= row["value"] <= row["ci_high"]
    assert table[table["task"] == "lesion_recall_by_coco_size"]["metric"].tolist() == \
        ["small (1 lesions)", "medium (2 lesions)", "large (1 lesions)"]
    assert table[(table["task"] == "centre 2") & (table["metric"] == "lesion_recall")]["value"].iloc[0] == \
        pytest.approx(2 / 3)


def test_lesions_without_subtype_or_centre_are_counted_as_unknown(case):
    records, preds = case
    records = [dict(r, centre=None) if r["image_id"] == 2 else r for r in records]
    records[1]["lesions"] = [dict(les, subtype=None) for les in records[1]["lesions"]]
    records[1]["subtype"] = None
    lesions = breakdown.lesion_outcomes(preds, records, score_threshold=0.5)
    by = breakdown.lesion_breakdown(lesions)
    assert by["subtype"][-1] == {"group": "unknown", "lesions": 2, "found": 1, "recall": 0.5}
    assert by["centre"][-1]["group"] == "unknown"
    for groups in by.values():
        assert sum(g["lesions"] for g in groups) == len(lesions)
