"""The package functions behind the notebooks' claims: data card (01), pre-processing views (02, 03),
evaluation tables and targets (05), the cases Figures 4 and 5 show (06)."""

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bonetumor import config
from bonetumor.data.btxrd import Problem
from bonetumor.data.layout import SITE_COLUMNS
from bonetumor.evaluation import encode_mask
from bonetumor.reporting import cases, data_card, evaluation_tables, preprocessing

# ---------------------------------------------------------------------------------------------- 01 data card


def test_kaggle_columns_add_up_and_hold_no_image_data():
    documented = data_card.kaggle_columns()
    assert len(documented) == 9 and list(documented.columns) == ["column", "type", "documented values", "counts"]
    counted = documented["counts"].dropna()
    assert len(counted) == 4 and all(sum(c.values()) == data_card.KAGGLE_ROWS for c in counted)
    assert data_card.image_like_columns(documented["column"]) == []


def test_image_like_columns_finds_labels_files_and_masks():
    columns = ["Age", "Image path", "Benign?", "lesion_mask", "Sex", "X-ray view"]
    assert data_card.image_like_columns(columns) == ["Image path", "Benign?", "lesion_mask", "X-ray view"]


def test_clinical_summary_and_comparison_with_the_documentation():
    clinical = pd.DataFrame({"Sex": ["Female", "Male", "Female", None], "Age": [20, 40, 60, 80],
                             "Grade": ["High", "High", "Intermediate", "High"]})
    table = data_card.clinical_summary(clinical).set_index("column")
    assert table.loc["Sex", "distinct values"] == 2 and table.loc["Sex", "missing"] == 1
    assert table.loc["Grade", "most frequent"] == "High 3, Intermediate 1"
    assert data_card.age_range(clinical) == {"min": 20.0, "mean": 50.0, "max": 80.0}
    comparison = data_card.clinical_vs_documented(clinical).set_index("column")
    assert list(comparison.index) == ["Sex", "Grade", "MSKCC type", "Status (NED, AWD, D)"]
    assert comparison.loc["Sex", "documented"] == {"Female": 300, "Male": 200}
    assert comparison.loc["Sex", "this file"] == {"Female": 2, "Male": 1}
    assert comparison.loc["MSKCC type", "this file"] is None


def test_btxrd_documented_counts_and_problem_table():
    assert data_card.BTXRD_IMAGES == 3746
    table = data_card.btxrd_counts({"normal": 3, "benign": 2, "malignant": 1})
    assert table.loc["benign"].tolist() == [1525, 2]
    problems = [Problem("images/a.jpg", "unreadable; image skipped", "image"),
                Problem("dataset.xlsx", "row 3: bad", "sheet")]
    frame = data_card.problem_table(problems)
    assert frame.values.tolist() == [["image", "images/a.jpg", "unreadable; image skipped"],
                                     ["sheet", "dataset.xlsx", "row 3: bad"]]
    assert list(data_card.problem_table([]).columns) == ["kind", "file", "reason"]


def _records(labels):
    return [{"name": f"IMG{i:03d}", "label": label, "file": f"/x/IMG{i:03d}.png", "image_id": i + 1}
            for i, label in enumerate(labels)]


def test_example_records_first_per_class_in_order():
    records = _records(["benign", "normal", "malignant", "normal", "benign", "benign", "normal", "normal"])
    chosen = data_card.example_records(records, per_class=2)
    assert [r["name"] for r in chosen] == ["IMG001", "IMG003", "IMG000", "IMG004", "IMG002"]


def test_first_tumour_image():
    assert data_card.first_tumour_image(_records(["normal", "malignant", "benign"])).name == "IMG001.png"
    assert data_card.first_tumour_image(_records(["normal", "normal"])).name == "IMG000.png"
    with pytest.raises(ValueError):
        data_card.first_tumour_image([])


# ------------------------------------------------------------------------------------- 02 pre-processing


def _sheet():
    rows = []
    for i, (age, gender, sites) in enumerate([(30, "m", ["femur"]), ("x", " F ", []), (50, "M", ["tibia", "fibula"])]):
        row = {"image_id": f"IMG{i}.jpeg", "Center": 1, "Age": age, "Gender": gender}
        row.update({c: int(c in sites) if i != 1 else None for c in SITE_COLUMNS})
        rows.append(row)
    return pd.DataFrame(rows)


def test_sheet_metadata_turns_the_one_hot_sites_back_into_one_column():
    sheet = _sheet()
    flags = preprocessing.site_flags(sheet)
    assert list(flags.columns) == list(SITE_COLUMNS) and flags.to_numpy().sum() == 3
    table = preprocessing.sheet_metadata(sheet)
    assert list(table.columns) == ["age", "sex", "site"]
    assert table["age"].iloc[0] == 30 and math.isnan(table["age"].iloc[1])
    assert table["sex"].tolist() == ["M", "F", "M"]
    assert table["site"].iloc[0] == "femur" and pd.isna(table["site"].iloc[1])
    assert table["site"].iloc[2] == "+".join(c for c in SITE_COLUMNS if c in ("tibia", "fibula"))


def test_preprocessing_stages_in_order_ending_with_the_full_pipeline():
    from bonetumor.preprocess import preprocess_radiograph

    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(0.4, 0.1, (48, 40)), 0, 1).astype(np.float32)
    stages = preprocessing.preprocessing_stages(image)
    assert list(stages) == ["(a) original", "normalised", "normalised + denoised", "(b) + CLAHE (final)"]
    assert stages["(a) original"] is image
    np.testing.assert_array_equal(stages["(b) + CLAHE (final)"], preprocess_radiograph(image))
    np.testing.assert_array_equal(stages["normalised"], preprocess_radiograph(image, denoise=False, enhance=False))
    assert not np.array_equal(stages["normalised"], stages["normalised + denoised"])


def test_image_sample_all_in_name_order_or_a_seeded_sample():
    records = [{"name": f"IMG{i:03d}", "file": f"/d/IMG{i:03d}.png"} for i in (5, 1, 3, 2, 4)]
    rng = np.random.default_rng(0)
    assert [p.name for p in preprocessing.image_sample(records, rng, at_most=10)] == \
        [f"IMG{i:03d}.png" for i in (1, 2, 3, 4, 5)]
    many = [{"name": f"IMG{i:03d}", "file": f"/d/IMG{i:03d}.png"} for i in range(50)]
    first = preprocessing.image_sample(many, np.random.default_rng(1), at_most=10)
    again = preprocessing.image_sample(many, np.random.default_rng(1), at_most=10)
    assert first == again and len(first) == 10 and first == sorted(first)


# ------------------------------------------------------------------------------ 05 evaluation tables


def _result():
    return {
        "detection": {"AP": 0.3, "AP50": 0.6}, "segmentation": {"AP": 0.2, "AP50": 0.4},
        "lesions": {"class_aware": {"tp": 3, "fp": 1, "fn": 2, "precision": 0.75},
                    "class_agnostic": {"tp": 4, "fp": 0, "fn": 1, "precision": 1.0}, "dice_matched": 0.8},
        "classification": {"confusion": {
            "tumour_vs_normal": {"labels": ["normal", "tumour"], "matrix": [[5, 1], [2, 7]]},
            "benign_vs_malignant": {"rows": ["benign", "malignant"], "columns": ["benign", "malignant", "normal"],
                                    "matrix": [[3, 1, 1], [0, 2, 1]]}}},
    }


def test_coco_and_lesion_tables():
    coco = evaluation_tables.coco_table(_result())
    assert coco.loc["AP50"].tolist() == [0.6, 0.4]
    lesions = evaluation_tables.lesion_table(_result())
    assert list(lesions.index) == ["class_aware", "class_agnostic"]
    assert lesions.loc["class_agnostic", "tp"] == 4


def test_confusion_tables_label_rows_and_columns():
    tables = evaluation_tables.confusion_tables(_result())
    tv = tables["tumour_vs_normal"]
    assert list(tv.index) == ["true normal", "true tumour"]
    assert list(tv.columns) == ["predicted normal", "predicted tumour"] and tv.loc["true tumour", "predicted normal"] == 2
    bm = tables["benign_vs_malignant"]
    assert bm.shape == (2, 3) and bm.loc["true malignant", "predicted normal"] == 1


def test_classification_rows_and_targets_table():
    metrics = pd.DataFrame([("detection", "AP50", 0.62), ("segmentation", "AP50", 0.41),
                            ("tumour_vs_normal", "accuracy", 0.9), ("benign_vs_malignant", "f1", 0.5)],
                           columns=["task", "metric", "value"])
    assert evaluation_tables.classification_rows(metrics)["metric"].tolist() == ["accuracy", "f1"]
    assert evaluation_tables.metric_value(metrics, "detection", "AP50") == 0.62
    assert math.isnan(evaluation_tables.metric_value(metrics, "detection", "AP75"))
    table = evaluation_tables.targets_table(metrics, config.load("quick").targets)
    assert table["metric"].tolist() == ["box AP50", "mask AP50", "tumour vs normal accuracy",
                                        "benign vs malignant accuracy"]
    assert table["target"].tolist() == [0.60, 0.50, 0.85, 0.80]
    assert table["met"].tolist() == [True, False, True, False]  # the last one is not measured: not met
    assert math.isnan(table["measured"].iloc[3])


# ------------------------------------------------------------------------------------ targets and config


def test_targets_live_in_the_quick_profile_and_do_not_change_run_folders():
    quick = config.load("quick")
    assert len(quick.targets) == 4 and all(0 < t.target < 1 for t in quick.targets)
    # the committed reports were produced in this run folder: adding targets must not rename it
    assert quick.run_name == "quick-phantom-a1632004"
    changed = config.load("quick", {"targets": [{"name": "n", "task": "detection", "metric": "AP", "target": 0.1}]})
    assert changed.targets[0].name == "n" and changed.run_name == quick.run_name
    assert config.load("smoke").targets == ()
    with pytest.raises(ValueError, match="quick.yaml"):
        config.load("quick", {"targets": [{"name": "n", "task": "detection", "metric": "AP"}]})


# ------------------------------------------------------------------------------------ 06 cases


def _square(h, w, y0, x0, size):
    mask = np.zeros((h, w), bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return mask


def _case_data(tmp_path):
    h, w = 32, 40
    records, preds = [], []
    specs = [("normal", []), ("benign", [(4, 4)]), ("benign", [(10, 10)]), ("malignant", [(20, 20)])]
    for i, (label, squares) in enumerate(specs):
        file = tmp_path / f"IMG{i}.png"
        Image.fromarray(np.full((h, w), 40 * (i + 1), np.uint8)).save(file)
        lesions = [{"category": label, "polygons": [[x, y, x + 6, y, x + 6, y + 6, x, y + 6]], "box": [x, y, x + 6, y + 6]}
                   for y, x in squares]
        records.append({"image_id": i + 1, "name": f"IMG{i}", "label": label, "subtype": "s", "file": str(file),
                        "height": h, "width": w, "lesions": lesions})
    # image 2 (benign): only a detection below the threshold; image 3: two kept (unsorted) + one dropped
    preds = [
        {"image_id": 1, "boxes": [], "labels": [], "scores": [], "masks": []},
        {"image_id": 2, "boxes": [[4, 4, 10, 10]], "labels": [1], "scores": [0.2],
         "masks": [encode_mask(_square(h, w, 4, 4, 6))]},
        {"image_id": 3, "boxes": [[0, 0, 5, 5], [10, 10, 16, 16], [30, 20, 35, 25]], "labels": [2, 1, 1],
         "scores": [0.6, 0.9, 0.1], "masks": [encode_mask(_square(h, w, 0, 0, 5)),
                                              encode_mask(_square(h, w, 10, 10, 6)),
                                              encode_mask(_square(h, w, 20, 30, 5))]},
        {"image_id": 4, "boxes": [], "labels": [], "scores": [], "masks": []},
    ]
    return records, preds


def test_ranked_detections_keep_threshold_best_first(tmp_path):
    _, preds = _case_data(tmp_path)
    assert cases.ranked_detections(preds[2], 0.5) == [1, 0]
    assert cases.ranked_detections(preds[2], 0.6) == [1, 0]  # the threshold is inclusive
    assert cases.ranked_detections(preds[1], 0.5) == []


def test_truth_and_predicted_masks_are_unions(tmp_path):
    records, preds = _case_data(tmp_path)
    truth = cases.truth_mask(records[2])
    assert truth.shape == (32, 40) and truth[12, 12] and truth.sum() == 36 and not truth[0, 0]
    assert not cases.truth_mask(records[0]).any()
    predicted = cases.predicted_mask(preds[2], 0.5, (32, 40))
    assert predicted.sum() == 25 + 36 and not predicted[22, 32]  # the dropped detection is not drawn


def test_detection_example_first_tumour_image_with_a_kept_detection(tmp_path):
    records, preds = _case_data(tmp_path)
    example = cases.detection_example(preds, records, 0.5)
    assert example["record"]["name"] == "IMG2" and example["rule"] == cases.RULE_KEPT
    assert example["image"].shape == (32, 40) and example["image"][0, 0] == pytest.approx(120 / 255)
    assert example["predicted_mask"].sum() == 61 and example["truth_mask"].sum() == 36
    assert example["preprocessed"].shape == (32, 40)
    chosen, rule = cases.detection_choice(preds, records, 0.95)  # nothing kept anywhere
    assert chosen["image_id"] == 2 and rule == cases.RULE_NONE_KEPT
    with pytest.raises(ValueError):
        cases.detection_choice(preds[:1], records, 0.5)


def test_classification_examples_first_image_of_each_class(tmp_path):
    records, preds = _case_data(tmp_path)
    examples = cases.classification_examples(preds, records, 0.15)
    assert [c["truth"] for c in examples] == ["benign", "malignant"]
    benign, malignant = examples
    assert benign["title"] == "IMG1: truth benign (s); predicted benign (0.20)"
    assert benign["detections"][0]["box"] == [4, 4, 10, 10] and benign["detections"][0]["mask"].sum() == 36
    assert malignant["detections"] == [] and malignant["title"].endswith("predicted normal")
    top = cases.detections(preds[2], 0.0, at_most=2)
    assert [d["label"] for d in top] == ["benign", "malignant"] and [d["score"] for d in top] == [0.9, 0.6]
    only_benign = cases.classification_examples(preds[:3], records[:3], 0.5)
    assert [c["truth"] for c in only_benign] == ["benign"]
