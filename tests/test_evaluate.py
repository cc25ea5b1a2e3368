"""Evaluation metrics against hand-computed cases (bonetumor.evaluation), inference (bonetumor.engine.inference)
and the evaluate command through the pipeline."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pandas as pd
import pytest
import torch

from bonetumor import LABEL_TO_ID, pipeline
from bonetumor import evaluation as ev
from bonetumor.data.coco import coco_ground_truth, lesion_rle
from bonetumor.engine.inference import predict
from bonetumor.config import EvalSettings, ModelSettings
from bonetumor.modeling.vgg_maskrcnn import build_model

H = W = 64


def square(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def record(image_id, label, lesions=(), patient=None, width=W, height=H):
    return {"image_id": image_id, "name": f"IMG{image_id:06d}", "file": f"/nowhere/IMG{image_id:06d}.png",
            "width": width, "height": height, "label": label, "patient": patient or f"P{image_id}",
            "lesions": [{"category": cat, "subtype": None, "box": list(box), "polygons": [square(*box)]}
                        for cat, box in lesions]}


def gt_mask(box, h=H, w=W):
    return ev.decode_mask(lesion_rle({"box": list(box), "polygons": [square(*box)]}, h, w))


def pred(image_id, dets=(), h=H, w=W):
    """``dets``: (label name, score, box[, mask]) — mask defaults to the box's ground-truth rasterisation."""
    out = {"image_id": image_id, "height": h, "width": w, "boxes": [], "labels": [], "scores": [], "masks": []}
    for det in dets:
        name, score, box = det[:3]
        mask = det[3] if len(det) > 3 else gt_mask(box, h, w)
        out["boxes"].append(list(map(float, box)))
        out["labels"].append(LABEL_TO_ID[name])
        out["scores"].append(float(score))
        out["masks"].append(ev.encode_mask(mask))
    return out


MAL_BOX, BEN_BOX = (10, 10, 30, 30), (36, 20, 60, 44)


@pytest.fixture
def perfect():
    records = [record(1, "malignant", [("malignant", MAL_BOX)]), record(2, "benign", [("benign", BEN_BOX)]),
               record(3, "normal")]
    preds = [pred(1, [("malignant", 0.9, MAL_BOX)]), pred(2, [("benign", 0.8, BEN_BOX)]), pred(3)]
    return records, preds


# ---- ground truth ----------------------------------------------------------------------------------------

def test_coco_ground_truth_includes_normal_images_and_mask_areas(perfect):
    records, _ = perfect
    coco = coco_ground_truth(records)
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert coco.getAnnIds(imgIds=[3]) == []
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == {1: "benign", 2: "malignant"}
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    assert ann["category_id"] == 2 and ann["bbox"] == [10, 10, 20, 20]
    assert ann["area"] == gt_mask(MAL_BOX).sum() > 0


# ---- detection and segmentation AP -----------------------------------------------------------------------

def test_perfect_prediction_scores_one(perfect):
    records, preds = perfect
    m = ev.coco_metrics(preds, records)
    for kind in ("bbox", "segm"):
        for key in ("AP", "AP50", "AP75", "AP_benign", "AP_malignant", "AP50_malignant"):
            assert m[kind][key] == pytest.approx(1.0), (kind, key)
    les = ev.lesion_metrics(preds, records)
    assert les["class_aware"] == {"tp": 2, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert les["dice_matched"] == 1.0 and les["iou_matched"] == 1.0 and les["dice_per_lesion"] == 1.0


def test_box_iou_of_a_shifted_box():
    # 20×20 boxes shifted by 4 px: intersection 16·20 = 320, union 400 + 400 − 320 = 480
    assert ev.box_iou([[14, 10, 34, 30]], [[10, 10, 30, 30]])[0, 0] == pytest.approx(320 / 480)
    # shifted by 10 px: 10·20 = 200 over 600
    assert ev.box_iou([[20, 10, 40, 30]], [[10, 10, 30, 30]])[0, 0] == pytest.approx(1 / 3)
    assert ev.box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_shifted_box_ap_counts_the_iou_thresholds_it_passes():
    # IoU 2/3 passes the COCO thresholds 0.50, 0.55, 0.60, 0.65 and fails 0.70 … 0.95: AP = 4/10
    records = [record(1, "malignant", [("malignant", MAL_BOX)])]
    preds = [pred(1, [("malignant", 0.9, (14, 10, 34, 30))])]
    m = ev.coco_metrics(preds, records)["bbox"]
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == pytest.approx(0.0)
    assert m["AP"] == pytest.approx(0.4)
    assert math.isnan(m["AP_benign"])  # no benign lesion: undefined
    # lesion level: matched at 0.5, not at 0.7
    assert ev.lesion_metrics(preds, records, iou_threshold=0.5)["class_aware"]["tp"] == 1
    les = ev.lesion_metrics(preds, records, iou_threshold=0.7)["class_aware"]
    assert (les["tp"], les["fp"], les["fn"], les["f1"]) == (0, 1, 1, 0.0)


def test_false_positive_ranked_above_the_true_one_halves_ap():
    # one lesion; a malignant false positive on the normal image scores higher than the hit:
    # ranked FP (P 0, R 0), TP (P 1/2, R 1) → interpolated precision 1/2 at every recall → AP 0.5
    records = [record(1, "malignant", [("malignant", MAL_BOX)]), record(2, "normal")]
    preds = [pred(1, [("malignant", 0.9, MAL_BOX)]), pred(2, [("malignant", 0.95, (5, 5, 25, 25))])]
    m = ev.coco_metrics(preds, records)
    assert m["bbox"]["AP50"] == pytest.approx(0.5) and m["segm"]["AP50"] == pytest.approx(0.5)
    les = ev.lesion_metrics(preds, records)["class_aware"]
    assert (les["tp"], les["fp"], les["fn"]) == (1, 1, 0)
    assert (les["precision"], les["recall"], les["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    tvn = ev.tumour_vs_normal(ev.image_table(preds, records))
    assert tvn["accuracy"] == 0.5 and tvn["precision"] == 0.5 and tvn["recall"] == 1.0
    assert tvn["specificity"] == 0.0 and tvn["f1"] == pytest.approx(2 / 3)
    # ranked below the hit, the same false positive costs nothing in AP
    preds[1]["scores"] = [0.5]
    assert ev.coco_metrics(preds, records)["bbox"]["AP50"] == pytest.approx(1.0)


def test_model_that_predicts_nothing(perfect):
    records, _ = perfect
    empty = [pred(r["image_id"]) for r in records]
    m = ev.coco_metrics(empty, records)
    assert all(v == 0.0 for kind in m.values() for v in kind.values())  # lesions exist, all missed
    les = ev.lesion_metrics(empty, records)
    assert les["class_agnostic"]["tp"] == 0 and les["class_agnostic"]["fn"] == 2
    assert math.isnan(les["class_agnostic"]["precision"]) and les["class_agnostic"]["recall"] == 0.0
    assert les["class_agnostic"]["f1"] == 0.0 and les["dice_per_lesion"] == 0.0 and math.isnan(les["dice_matched"])
    result = ev.evaluate_predictions(empty, records, EvalSettings(bootstrap=20))
    json.dumps(result, allow_nan=False)  # strict JSON
    assert result["classification"]["benign_vs_malignant"]["accuracy"]["value"] == 0.0  # all predicted normal
    assert result["classification"]["tumour_vs_normal"]["specificity"]["value"] == 1.0


def test_images_without_any_lesion():
    records = [record(1, "normal"), record(2, "normal", patient="P1")]
    nothing = [pred(1), pred(2)]
    m = ev.coco_metrics(nothing, records)
    assert all(math.isnan(v) for kind in m.values() for v in kind.values())  # nothing to find: undefined
    fp = [pred(1, [("benign", 0.9, MAL_BOX)]), pred(2)]
    assert all(math.isnan(v) for v in ev.coco_metrics(fp, records)["bbox"].values())
    les = ev.lesion_metrics(fp, records)["class_aware"]
    assert (les["precision"], les["f1"]) == (0.0, 0.0) and math.isnan(les["recall"])
    result = ev.evaluate_predictions(fp, records, {"score_threshold": 0.5, "bootstrap": 10})
    json.dumps(result, allow_nan=False)
    assert result["detection"]["AP"] is None
    tvn = result["classification"]["tumour_vs_normal"]
    assert tvn["accuracy"]["value"] == 0.5 and tvn["specificity"]["value"] == 0.5
    assert tvn["precision"]["value"] == 0.0 and tvn["recall"]["value"] is None
    bvm = result["classification"]["benign_vs_malignant"]
    assert bvm["accuracy"]["value"] is None and bvm["accuracy"]["n_skipped"] == 10
    assert result["counts"] == {"images": 2, "patients": 1, "normal": 2, "benign": 0, "malignant": 0, "lesions": 0,
                                "detections": 1, "detections_kept": 1}


def test_records_are_scaled_into_the_frame_of_the_predictions(perfect):
    records, preds = perfect
    big = [record(r["image_id"], r["label"], [(les["category"], [2 * v for v in les["box"]]) for les in r["lesions"]],
                  width=2 * W, height=2 * H) for r in records]
    assert ev.coco_metrics(preds, big)["bbox"]["AP"] == pytest.approx(1.0)


def test_missing_prediction_is_an_error(perfect):
    records, preds = perfect
    with pytest.raises(ValueError, match="no prediction"):
        ev.coco_metrics(preds[:2], records)


# ---- greedy matching --------------------------------------------------------------------------------------

def test_greedy_matching_takes_detections_by_score_and_respects_classes():
    gt = [[0, 0, 10, 10]]
    # two detections on the same lesion: the higher-scoring one wins, the other is a false positive
    assert ev.greedy_match([[0, 0, 10, 10], [0, 0, 10, 9]], [0.4, 0.8], gt) == [(1, 0, pytest.approx(0.9))]
    # class-aware: a wrong class does not match
    assert ev.greedy_match([[0, 0, 10, 10]], [0.9], gt, pred_labels=[1], gt_labels=[2]) == []


def test_wrong_class_counts_only_in_the_class_aware_variant():
    records = [record(1, "malignant", [("malignant", MAL_BOX)])]
    preds = [pred(1, [("benign", 0.9, MAL_BOX)])]
    les = ev.lesion_metrics(preds, records)
    assert les["class_agnostic"]["tp"] == 1 and les["class_aware"]["tp"] == 0
    assert les["class_aware"]["fp"] == 1 and les["class_aware"]["fn"] == 1


# ---- image level ------------------------------------------------------------------------------------------

def hand_table():
    truth = ["normal", "normal", "normal", "benign", "benign", "malignant", "malignant", "malignant"]
    dets = [
        [],                                            # N → normal
        [("benign", 0.7)],                             # N → benign (false tumour)
        [("malignant", 0.2)],                          # N → normal (below threshold); malignancy 0.2
        [("benign", 0.9), ("malignant", 0.6)],         # B → benign (top-scoring kept wins); malignancy 0.6
        [],                                            # B → normal (missed: wrong)
        [("malignant", 0.9)],                          # M → malignant
        [("benign", 0.8), ("malignant", 0.3)],         # M → benign
        [("malignant", 0.55), ("benign", 0.52)],       # M → malignant
    ]
    records = [record(i + 1, t, [] if t == "normal" else [(t, MAL_BOX)]) for i, t in enumerate(truth)]
    preds = [pred(i + 1, [(name, s, MAL_BOX) for name, s in d]) for i, d in enumerate(dets)]
    return preds, records


def test_image_classes_follow_the_documented_rules():
    preds, records = hand_table()
    t = ev.image_table(preds, records, score_threshold=0.5)
    assert t["pred_class"].tolist() == ["normal", "benign", "normal", "benign", "normal", "malignant", "benign",
                                        "malignant"]
    assert t["pred_tumour"].tolist() == [False, True, False, True, False, True, True, True]
    assert t["malignancy_score"].tolist() == [0.0, 0.0, 0.2, 0.6, 0.0, 0.9, 0.3, 0.55]
    assert t["tumour_score"].tolist() == [0.0, 0.7, 0.2, 0.9, 0.0, 0.9, 0.8, 0.55]


def test_image_level_metrics_by_hand():
    preds, records = hand_table()
    t = ev.image_table(preds, records, score_threshold=0.5)
    # tumour vs normal: TP 4 (images 4, 6, 7, 8), FP 1 (2), FN 1 (5), TN 2 (1, 3)
    tvn = ev.tumour_vs_normal(t)
    assert tvn["accuracy"] == pytest.approx(6 / 8)
    assert tvn["precision"] == pytest.approx(4 / 5) and tvn["recall"] == pytest.approx(4 / 5)
    assert tvn["f1"] == pytest.approx(0.8) and tvn["specificity"] == pytest.approx(2 / 3)
    # tumour AUC: positives {0.9, 0, 0.9, 0.8, 0.55} vs negatives {0, 0.7, 0.2}: 3 + 0.5 + 3 + 3 + 2 = 11.5 of 15
    assert tvn["auc"] == pytest.approx(11.5 / 15)
    # benign vs malignant on the 5 tumour images: truth B B M M M, predicted B normal M B M
    bvm = ev.benign_vs_malignant(t)
    assert bvm["accuracy"] == pytest.approx(3 / 5)          # the "normal" prediction is wrong
    assert bvm["precision"] == pytest.approx(1.0)           # 2 malignant predictions, both right
    assert bvm["recall"] == pytest.approx(2 / 3)            # 2 of 3 malignant found
    assert bvm["f1"] == pytest.approx(0.8)
    assert bvm["specificity"] == pytest.approx(1.0)         # neither benign image called malignant
    # malignancy AUC: malignant {0.9, 0.3, 0.55} vs benign {0.6, 0}: 2 + 1 + 1 = 4 of 6 pairs
    assert bvm["auc"] == pytest.approx(4 / 6)
    cm = ev.confusion(t)
    assert cm["three_class"]["matrix"] == [[2, 1, 0], [1, 1, 0], [0, 1, 2]]
    assert cm["tumour_vs_normal"]["matrix"] == [[2, 1], [1, 4]]
    assert cm["benign_vs_malignant"]["matrix"] == [[1, 0, 1], [1, 2, 0]]


def test_evaluate_predictions_and_metrics_table():
    preds, records = hand_table()
    result = ev.evaluate_predictions(preds, records, EvalSettings(bootstrap=30), seed=1)
    json.dumps(result, allow_nan=False)
    cls = result["classification"]
    assert cls["tumour_vs_normal"]["accuracy"]["value"] == pytest.approx(0.75)
    assert cls["auc_malignant"]["value"] == pytest.approx(4 / 6)
    assert "top-scoring" in cls["rules"]
    table = ev.metrics_table(result)
    assert list(table.columns) == ["task", "metric", "value", "ci_low", "ci_high"]
    assert {"detection", "segmentation", "lesions_class_aware", "lesion_masks", "tumour_vs_normal",
            "benign_vs_malignant", "refinement"} <= set(table["task"])
    row = table[(table.task == "benign_vs_malignant") & (table.metric == "recall")].iloc[0]
    assert row.value == pytest.approx(2 / 3) and row.ci_low <= row.value <= row.ci_high


# ---- bootstrap --------------------------------------------------------------------------------------------

def bootstrap_table(n=60, seed=3):
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.5
    pred_ok = rng.random(n) < 0.8
    return pd.DataFrame({"patient": [f"P{i // 2}" for i in range(n)], "truth_tumour": truth,
                         "pred_tumour": np.where(pred_ok, truth, ~truth),
                         "tumour_score": np.where(truth, 0.6, 0.4) + rng.normal(0, 0.2, n)})


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    t = bootstrap_table()
    a = ev.bootstrap_ci(t, ev.tumour_vs_normal, n=150, seed=5)
    b = ev.bootstrap_ci(t, ev.tumour_vs_normal, n=150, seed=5)
    c = ev.bootstrap_ci(t, ev.tumour_vs_normal, n=150, seed=6)
    assert a == b
    assert a != c
    for metric in ("accuracy", "precision", "recall", "f1", "auc"):
        v = a[metric]
        assert v["ci_low"] <= v["value"] <= v["ci_high"], metric
        assert v["ci_low"] < v["ci_high"] and v["n_boot"] + v["n_skipped"] == 150


def test_bootstrap_resamples_whole_patients():
    # patient A: 3 images all right; patient B: 1 image wrong. Drawing 2 patients can only give accuracy
    # 1 (A, A), 3/4 (A, B) or 0 (B, B); resampling images would also give 1/4 and 1/2.
    t = pd.DataFrame({"patient": ["A", "A", "A", "B"], "truth_tumour": [True, False, True, True],
                      "pred_tumour": [True, False, True, False], "tumour_score": [0.9, 0.1, 0.8, 0.2]})
    def accuracy(d):
        return {"accuracy": float((d["truth_tumour"] == d["pred_tumour"]).mean())}

    out = ev.bootstrap_ci(t, accuracy, n=200, seed=0, return_samples=True)
    values = set(np.round(out["_samples"]["accuracy"], 6))
    assert values <= {0.0, 0.75, 1.0} and 0.75 in values
    # the same table with one image per patient does reach the per-image values
    t_img = t.assign(patient=["A", "B", "C", "D"])
    per_image = set(np.round(ev.bootstrap_ci(t_img, accuracy, n=200, seed=0, return_samples=True)["_samples"]["accuracy"], 6))
    assert per_image & {0.25, 0.5}


def test_bootstrap_skips_and_counts_undefined_resamples():
    t = pd.DataFrame({"patient": ["A", "B", "C"], "truth_tumour": [True, False, True],
                      "pred_tumour": [True, False, False], "tumour_score": [0.9, 0.1, 0.3]})
    out = ev.bootstrap_ci(t, ev.tumour_vs_normal, n=100, seed=0)
    auc = out["auc"]  # undefined when the resample holds only tumour or only normal images
    assert auc["n_skipped"] > 0 and auc["n_boot"] + auc["n_skipped"] == 100
    assert out["accuracy"]["n_skipped"] == 0


# ---- mask refinement --------------------------------------------------------------------------------------

def holey_mask():
    gt = gt_mask(MAL_BOX)
    m = gt.copy()
    m[17:21, 17:21] = False     # a hole inside the lesion
    m[50:52, 50:52] = True      # a 4-pixel speck far away
    return gt, m


def test_refine_mask_fills_a_hole_and_removes_a_speck():
    gt, m = holey_mask()
    r = ev.refine_mask(m, min_size=10)
    assert r.dtype == bool and r[17:21, 17:21].all() and not r[50:52, 50:52].any()
    np.testing.assert_array_equal(r, gt)
    # without hole filling the hole stays; keep_largest drops the speck whatever its size
    assert not ev.refine_mask(m, min_size=10, fill_holes=False)[18, 18]
    assert not ev.refine_mask(m, min_size=1, keep_largest=True)[50:52, 50:52].any()
    # a mask made only of specks is not emptied: its largest component stays
    specks = np.zeros((20, 20), bool)
    specks[1, 1] = True
    specks[5:7, 5:7] = True
    np.testing.assert_array_equal(ev.refine_mask(specks, min_size=10), np.pad(np.ones((2, 2), bool), ((5, 13), (5, 13))))
    assert not ev.refine_mask(np.zeros((5, 5), bool)).any()


def test_refinement_effect_reports_dice_both_ways():
    gt, m = holey_mask()
    records = [record(1, "malignant", [("malignant", MAL_BOX)])]
    preds = [pred(1, [("malignant", 0.9, MAL_BOX, m)])]
    eff = ev.refinement_effect(preds, records, min_size=10)
    expected_raw = 2 * (gt & m).sum() / (gt.sum() + m.sum())
    assert eff["dice_raw"] == pytest.approx(expected_raw) and eff["dice_raw"] < 1
    assert eff["dice_refined"] == pytest.approx(1.0) and eff["n_matched"] == 1
    result = ev.evaluate_predictions(preds, records, EvalSettings(bootstrap=0, refine_masks=True))
    assert result["lesions"]["dice_matched"] == pytest.approx(1.0)  # refine_masks: refined masks are the headline
    assert result["refinement"]["dice_raw"] == pytest.approx(expected_raw)


def test_dice_and_iou_by_hand():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True            # 8 pixels
    b[1:3] = True           # 8 pixels, 4 shared
    assert ev.dice(a, b) == pytest.approx(0.5) and ev.mask_iou(a, b) == pytest.approx(4 / 12)


# ---- predictions: compute, save, load ----------------------------------------------------------------------

class FixedModel(torch.nn.Module):
    """Returns one malignant detection with a known box and a mask with probability 0.8 inside it."""

    def forward(self, images):
        out = []
        for img in images:
            h, w = img.shape[-2:]
            masks = torch.zeros(1, 1, h, w)
            masks[0, 0, 10:30, 10:30] = 0.8
            out.append({"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]), "labels": torch.tensor([2]),
                        "scores": torch.tensor([0.75]), "masks": masks})
        return out


def tiny_dataset(n=3, h=H, w=48):
    return [(torch.rand(3, h, w), {"image_id": i + 1}) for i in range(n)]


def test_predict_save_load_roundtrip(tmp_path):
    data = tiny_dataset()
    preds = predict(FixedModel(), data, "cpu", mask_threshold=0.5, batch_size=2)
    assert [p["image_id"] for p in preds] == [1, 2, 3]
    p = preds[0]
    assert (p["height"], p["width"]) == (H, 48) and p["labels"] == [2] and p["scores"] == [0.75]
    mask = ev.decode_mask(p["masks"][0])
    assert mask.shape == (H, 48) and mask.sum() == 400 and mask[10:30, 10:30].all()
    assert predict(FixedModel(), data, mask_threshold=0.9)[0]["masks"][0]["counts"] != p["masks"][0]["counts"]
    meta = {"settings": "profile smoke", "run": "r", "split": "test", "score_threshold": 0.5, "mask_threshold": 0.5}
    path = ev.save_predictions(preds, tmp_path / "preds.json", meta)
    loaded, meta2 = ev.load_predictions(path)
    assert loaded == preds and meta2["split"] == "test" and meta2["n_images"] == 3
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        ev.load_predictions(tmp_path / "bad.json")


def test_untrained_model_predictions_evaluate_without_crashing():
    torch.manual_seed(0)
    model = build_model(ModelSettings(width=0.0625, pretrained=False, anchor_sizes=(16, 32)), image_size=H)
    data = tiny_dataset(n=3)
    preds = predict(model, data, "cpu")
    assert model.training  # mode restored
    records = [record(1, "malignant", [("malignant", MAL_BOX)], width=48), record(2, "normal", width=48),
               record(3, "benign", [("benign", (5, 30, 25, 60))], width=48)]
    result = ev.evaluate_predictions(preds, records, EvalSettings(bootstrap=5, score_threshold=0.3))
    json.dumps(result, allow_nan=False)
    assert result["counts"]["images"] == 3 and result["counts"]["detections"] == sum(len(p["scores"]) for p in preds)


def _fake_run(tmp_path, monkeypatch, records, dataset_size):
    """A run folder whose model is :class:`FixedModel`, evaluated on ``records`` (no dataset on disk)."""
    from bonetumor import config
    from bonetumor.modeling import checkpoints

    settings = config.load("smoke")
    calls = []
    monkeypatch.setattr(checkpoints, "load_model", lambda run_dir, which="best", device="cpu":
                        (calls.append(which) or FixedModel(), {}))
    prepared = pipeline.Prepared(tmp_path, records, [], [], {"train": [], "val": [], "test": records})
    monkeypatch.setattr(pipeline, "prepare", lambda settings, progress=True: prepared)
    monkeypatch.setattr(pipeline, "evaluation_dataset", lambda recs: tiny_dataset(n=dataset_size))
    (tmp_path / "run.json").write_text(json.dumps({"settings": settings.model_dump(mode="json")}))
    return settings, calls


def test_cli_evaluate_predicts_once_then_reuses(tmp_path, monkeypatch, capsys):
    from bonetumor.cli import main

    records = [record(1, "malignant", [("malignant", (10, 10, 30, 30))], width=48), record(2, "normal", width=48)]
    settings, calls = _fake_run(tmp_path, monkeypatch, records, dataset_size=2)
    argv = ["evaluate", str(tmp_path), "--split", "test", "--json", "--bootstrap", "10"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["detection"]["AP"] == pytest.approx(1.0) and out["counts"]["images"] == 2
    assert out["threshold_selection"] is None  # empty validation split: the settings' threshold
    assert out["settings"]["score_threshold"] == settings.evaluate.score_threshold
    assert (tmp_path / "predictions-test.json").is_file() and (tmp_path / "metrics-test.json").is_file()
    assert calls == ["best"]
    # second call: metrics and predictions read back, not recomputed (the model now predicts nothing)
    empty = lambda self, images: [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),  # noqa: E731
                                   "scores": torch.zeros(0), "masks": torch.zeros(0, 1, H, 48)} for _ in images]
    monkeypatch.setattr(FixedModel, "forward", empty)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "using saved predictions" in err and "--recompute" not in err and calls == ["best"]
    assert json.loads((tmp_path / "metrics-test.json").read_text())["detection"]["AP"] == pytest.approx(1.0)
    # weights newer than the saved predictions: predicted again, and the metrics follow
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    os.utime(weights, (time.time() + 60, time.time() + 60))
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "predicting again" in captured.err and json.loads(captured.out)["detection"]["AP"] == 0.0
    assert calls == ["best", "best"]


def test_notebook_and_cli_share_one_metrics_file(tmp_path, monkeypatch, capsys):
    """pipeline.ensure_metrics (notebook 05) reuses what `bonetumor evaluate` wrote, and the other way round."""
    from bonetumor.cli import main

    records = [record(1, "malignant", [("malignant", (10, 10, 30, 30))], width=48), record(2, "normal", width=48)]
    settings, calls = _fake_run(tmp_path, monkeypatch, records, dataset_size=2)
    assert main(["evaluate", str(tmp_path), "--json"]) == 0
    written = (tmp_path / "metrics-test.json").read_bytes()
    capsys.readouterr()
    result = pipeline.ensure_metrics(settings, "test", run=tmp_path)
    assert (tmp_path / "metrics-test.json").read_bytes() == written  # reused, not rewritten
    assert result == json.loads(written) and result["meta"]["run"] == tmp_path.name
    assert calls == ["best"]
    # other evaluation settings: computed again, into the same file with the same schema
    again = pipeline.ensure_metrics(settings, "test", run=tmp_path, overrides={"bootstrap": 3})
    assert again["settings"]["bootstrap"] == 3 and set(again) == set(result)
    assert calls == ["best"]  # the predictions were still reused


def test_image_metrics_equal_sklearn_functions():
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    t = bootstrap_table(n=80, seed=11)
    got = ev.tumour_vs_normal(t)
    y, yhat = t["truth_tumour"].to_numpy(), t["pred_tumour"].to_numpy()
    assert got["accuracy"] == pytest.approx(accuracy_score(y, yhat))
    assert got["precision"] == pytest.approx(precision_score(y, yhat))
    assert got["recall"] == pytest.approx(recall_score(y, yhat))
    assert got["specificity"] == pytest.approx(recall_score(~y, ~yhat))
    assert got["f1"] == pytest.approx(f1_score(y, yhat))
    assert got["auc"] == pytest.approx(roc_auc_score(y, t["tumour_score"]))


def test_matching_on_masks_instead_of_boxes():
    # the box is exact but the mask covers only a 20×4 strip of the 20×20 lesion: mask IoU 0.2
    strip = np.zeros((H, W), bool)
    strip[10:14, 10:30] = True
    records = [record(1, "malignant", [("malignant", MAL_BOX)])]
    preds = [pred(1, [("malignant", 0.9, MAL_BOX, strip)])]
    assert ev.lesion_metrics(preds, records, match_on="bbox")["class_aware"]["tp"] == 1
    les = ev.lesion_metrics(preds, records, match_on="segm")
    assert (les["class_aware"]["tp"], les["class_aware"]["fp"], les["class_aware"]["fn"]) == (0, 1, 1)
    gt = gt_mask(MAL_BOX)
    assert ev.lesion_metrics(preds, records)["dice_matched"] == pytest.approx(2 * strip.sum() / (strip.sum() + gt.sum()))


def test_score_threshold_chosen_by_youden_on_validation_images():
    # tumour scores 0.9, 0.4, 0.3 on tumour images, 0.2 and 0.35 on normal ones. Threshold 0.3: sensitivity 1,
    # specificity 1/2, J 1/2; threshold 0.4: sensitivity 2/3, specificity 1, J 2/3, the best
    def pred(i, score):
        return {"image_id": i, "height": 32, "width": 32, "boxes": [[1, 1, 5, 5]], "labels": [1], "scores": [score],
                "masks": [ev.encode_mask(np.ones((32, 32), np.uint8))]}

    scores = {1: 0.9, 2: 0.4, 3: 0.3, 4: 0.2, 5: 0.35}
    recs = [record(i, "benign" if i <= 3 else "normal", [("benign", (1, 1, 5, 5))] if i <= 3 else [], width=32)
            for i in scores]
    chosen = ev.choose_score_threshold([pred(i, s) for i, s in scores.items()], recs)
    assert chosen["value"] == pytest.approx(0.4) and chosen["youden_j"] == pytest.approx(2 / 3)


def test_score_threshold_falls_back_without_both_classes():
    recs = [record(1, "normal", width=32)]
    preds = [{"image_id": 1, "height": 32, "width": 32, "boxes": [], "labels": [], "scores": [], "masks": []}]
    chosen = ev.choose_score_threshold(preds, recs, fallback=0.5)
    assert chosen["value"] == 0.5 and "fallback" in chosen["rule"]


def test_paired_difference_of_a_model_with_itself_is_exactly_zero_and_a_real_gap_is_seen():
    import pandas as pd

    from bonetumor.evaluation.bootstrap import paired_difference, unpaired_difference

    def accuracy(t):
        return {"accuracy": float((t["truth"] == t["pred"]).mean()) if len(t) else float("nan")}

    truth = ["normal", "benign"] * 20
    a = pd.DataFrame({"image_id": range(40), "patient": [f"p{i // 2}" for i in range(40)], "truth": truth,
                      "pred": truth})                                     # always right
    b = a.assign(pred=["normal"] * 40)                                    # right on half the images
    same = paired_difference(a, a, accuracy, n=200)["accuracy"]
    assert same["value"] == same["ci_low"] == same["ci_high"] == 0.0
    gap = paired_difference(a, b, accuracy, n=200)["accuracy"]
    assert gap["value"] == pytest.approx(0.5) and gap["ci_low"] == gap["ci_high"] == pytest.approx(0.5)
    # every patient holds one image the second model gets right and one it gets wrong: no resample changes
    # the gap — while unpaired resampling, blind to that pairing, still cannot move a's perfect score
    loose = unpaired_difference(a, b, accuracy, n=200)["accuracy"]
    assert loose["value"] == pytest.approx(0.5) and loose["ci_low"] <= 0.5 <= loose["ci_high"]
    with pytest.raises(ValueError, match="same images"):
        paired_difference(a, b.iloc[:10], accuracy)
