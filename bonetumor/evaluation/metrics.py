"""Every metric of one evaluated split, from saved predictions and the split's records, in one strict-JSON
result (:func:`evaluate_predictions`) and its long table (:func:`metrics_table`): the paper's algorithm
step 3 ("test on a separate set; accuracy, precision, recall and F1 for detection, segmentation and
classification") and the numbers behind its Table 2.

What is measured (all values are fractions in [0, 1], not percent):

* **detection / segmentation** — COCO AP, AP50, AP75 overall and per class (:mod:`.coco_eval`).
* **lesions** — lesion-level precision, recall and F1 at IoU ≥ 0.5 after dropping detections below
  ``score_threshold``; mask Dice and IoU of matched lesions (:mod:`.lesions`).
* **classification** — image-level, as the paper's Table 2 reports it (:func:`.classification.image_table`
  gives the exact rules), with 95 % bootstrap confidence intervals that resample pseudo-patients
  (:mod:`.bootstrap`), ROC AUC of the malignancy score, confusion matrices.
* **refinement** — the paper's "post-processing of segmented regions" (:func:`.masks.refine_mask`); its
  effect on Dice is reported both ways (:func:`.lesions.refinement_effect`).

Frames: a prediction carries the ``height``/``width`` of the image the model saw. When a record's
``width``/``height`` differ (records of the files on disk, model fed resized copies), the record's polygons
and boxes are scaled into the prediction's frame before any comparison
(:func:`bonetumor.data.coco.record_in_frame`).

Missing values: inside Python results use ``float('nan')``; :func:`evaluate_predictions` turns NaN into
``None`` so that its result is strict JSON, and :func:`metrics_table` turns ``None`` back into NaN.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bonetumor.evaluation.bootstrap import bootstrap_ci
from bonetumor.evaluation.breakdown import lesion_breakdown, lesion_outcomes, per_centre
from bonetumor.evaluation.classification import (
    benign_vs_malignant, classifier_image_table, confusion, image_table, normal_images, three_class,
    tumour_vs_normal,
)
from bonetumor.evaluation.coco_eval import coco_metrics
from bonetumor.evaluation.lesions import lesion_metrics, refinement_effect
from bonetumor.evaluation.masks import refined_predictions
from bonetumor.evaluation.predictions import aligned_pairs


def _setting(settings_eval, name: str, default):
    if settings_eval is None:
        return default
    if isinstance(settings_eval, Mapping):
        return settings_eval.get(name, default)
    return getattr(settings_eval, name, default)


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    return obj


RULES = ("kept detection: score >= score_threshold; image 'tumour' iff it has a kept detection; image "
         "class = class of its top-scoring kept detection, 'normal' if none; benign vs malignant on "
         "ground-truth tumour images, positive = malignant, a 'normal' prediction is wrong; "
         "malignancy score = max score of malignant detections (all saved detections, 0 if none); "
         "95% percentile bootstrap CIs resampling pseudo-patients")


def evaluate_predictions(preds: Sequence[Mapping], records: Sequence[Mapping], settings_eval=None, seed: int = 0,
                         iou_threshold: float = 0.5) -> dict:
    """Every metric of this module from saved predictions and the records of the evaluated split.

    ``settings_eval`` is a :class:`bonetumor.config.EvalSettings` (or a dict with its fields):
    ``score_threshold`` (kept detections), ``bootstrap`` (number of patient resamples) and ``refine_masks``
    (when true, predicted masks are refined by :func:`refine_mask` before the COCO ``segm`` AP and the lesion
    Dice; ``refinement`` reports Dice both ways either way). Returns a strict-JSON dict (NaN → ``None``)::

        {"detection": {"AP", "AP50", "AP75", "AP_benign", …},          # COCO bbox
         "segmentation": {…},                                           # COCO segm
         "lesions": {"class_aware": {tp, fp, fn, precision, recall, f1}, "class_agnostic": {…},
                     "dice_matched", "iou_matched", "dice_per_lesion", …},
         "classification": {"tumour_vs_normal": {metric: {"value", "ci_low", "ci_high", "n_boot", "n_skipped"}},
                            "benign_vs_malignant": {…}, "auc_malignant": {…},
                            "three_class": {metric: {…}}, "normal_images": {metric: {…}},
                            "confusion": {…}, "rules": str},
         "breakdown": {"lesion_recall": {"coco_size", "side_fraction", "subtype", "centre"},
                       "per_centre": [{...}, ...]},
         "refinement": {"dice_raw", "dice_refined", …},
         "counts": {...}, "settings": {...}}
    """
    score_threshold = float(_setting(settings_eval, "score_threshold", 0.5))
    n_boot = int(_setting(settings_eval, "bootstrap", 1000))
    refine = bool(_setting(settings_eval, "refine_masks", False))

    pairs = aligned_pairs(preds, records)  # validates once; every function below aligns again in the same way
    used = [p for _, p in pairs]
    mask_preds = refined_predictions(used) if refine else used
    coco = coco_metrics(mask_preds, records)
    coco["bbox"] = coco_metrics(used, records)["bbox"] if refine else coco["bbox"]
    lesions = lesion_metrics(used, records, score_threshold, iou_threshold, "bbox", refine=refine)
    table = image_table(used, records, score_threshold)
    outcomes = lesion_outcomes(used, records, score_threshold, iou_threshold)
    result = {
        "detection": coco["bbox"],
        "segmentation": coco["segm"],
        "lesions": lesions,
        "classification": _classification(table, n_boot, seed),
        "breakdown": {"lesion_recall": lesion_breakdown(outcomes), "per_centre": per_centre(table, outcomes)},
        "refinement": refinement_effect(used, records, score_threshold, iou_threshold),
        "counts": _counts(pairs, table, used),
        "settings": {"score_threshold": score_threshold, "iou_threshold": iou_threshold, "bootstrap": n_boot,
                     "refine_masks": refine, "seed": seed, "ci_level": 0.95},
    }
    return _jsonable(result)


def evaluate_image_classifier(probabilities, records: Sequence[Mapping], n_boot: int = 1000, seed: int = 0) -> dict:
    """The image-level metrics of a whole-image classifier (Table 2's comparators), computed exactly as the
    detector's (:func:`_classification` on :func:`.classification.classifier_image_table`), with the same
    pseudo-patient bootstrap: ``{"classification", "counts", "settings"}`` (strict JSON), which
    :func:`metrics_table` reads like the detector's result."""
    table = classifier_image_table(probabilities, records)
    counts = {"images": len(table), "patients": int(table["patient"].nunique()),
              **{label: int((table["truth"] == label).sum()) for label in ("normal", "benign", "malignant")}}
    return _jsonable({"classification": _classification(table, n_boot, seed), "counts": counts,
                      "settings": {"bootstrap": int(n_boot), "seed": seed, "ci_level": 0.95,
                                   "rule": "pred_class = argmax of the class probabilities"}})


def _classification(table: pd.DataFrame, n_boot: int, seed: int) -> dict:
    """Image-level metrics with patient-bootstrap CIs: the paper's two binary tasks, the three classes and the
    false positives on normal images."""
    tvn = bootstrap_ci(table, tumour_vs_normal, n_boot, seed)
    bvm = bootstrap_ci(table, benign_vs_malignant, n_boot, seed)
    auc_malignant = bvm.pop("auc")
    return {
        "tumour_vs_normal": tvn,
        "benign_vs_malignant": bvm,
        "auc_malignant": auc_malignant,
        "three_class": bootstrap_ci(table, three_class, n_boot, seed),
        "normal_images": bootstrap_ci(table, normal_images, n_boot, seed),
        "confusion": confusion(table),
        "rules": RULES,
    }


def _counts(pairs, table: pd.DataFrame, used: Sequence[Mapping]) -> dict:
    return {
        "images": len(table),
        "patients": int(table["patient"].nunique()),
        "normal": int((table["truth"] == "normal").sum()),
        "benign": int((table["truth"] == "benign").sum()),
        "malignant": int((table["truth"] == "malignant").sum()),
        "lesions": int(sum(len(r.get("lesions", [])) for r, _ in pairs)),
        "detections": int(sum(len(p["scores"]) for p in used)),
        "detections_kept": int(table["n_kept"].sum()),
    }


def _num(value) -> float:
    return math.nan if value is None else float(value)


def metrics_table(result: Mapping) -> pd.DataFrame:
    """The result of :func:`evaluate_predictions` in long format — columns ``task, metric, value, ci_low,
    ci_high`` (fractions; ``ci_*`` NaN where no interval is computed) — for Table 2 and the figures.

    Tasks: ``detection`` and ``segmentation`` (COCO AP), ``lesions_class_aware``, ``lesions_class_agnostic``,
    ``lesion_masks``, ``tumour_vs_normal``, ``benign_vs_malignant`` (metrics ``accuracy``, ``precision``,
    ``recall``, ``specificity``, ``f1``, ``auc``), ``refinement``, ``three_class`` (per-class precision and
    recall, balanced accuracy, macro AUC, malignant recall), ``normal_images`` (false positives),
    ``lesion_recall_by_<coco_size | side_fraction | subtype | centre>`` (metric: the group and its number of
    lesions) and ``centre <c>`` (that centre's image-level metrics and lesion recall). A whole-image
    classifier's result (:func:`evaluate_image_classifier`) has the image-level tasks only."""
    rows = []

    def add(task, metric, value, lo=None, hi=None):
        rows.append({"task": task, "metric": metric, "value": _num(value), "ci_low": _num(lo), "ci_high": _num(hi)})

    for task in ("detection", "segmentation"):
        for metric, value in result.get(task, {}).items():
            add(task, metric, value)
    les = result.get("lesions")
    for variant in ("class_aware", "class_agnostic") if les else ():
        for metric in ("precision", "recall", "f1"):
            add(f"lesions_{variant}", metric, les[variant][metric])
    for metric in ("dice_matched", "iou_matched", "dice_per_lesion") if les else ():
        add("lesion_masks", metric, les[metric])
    cls = result["classification"]
    for task in ("tumour_vs_normal", "benign_vs_malignant"):
        for metric, v in cls[task].items():
            add(task, metric, v["value"], v["ci_low"], v["ci_high"])
    a = cls["auc_malignant"]
    add("benign_vs_malignant", "auc", a["value"], a["ci_low"], a["ci_high"])
    for metric in ("dice_raw", "dice_refined", "iou_raw", "iou_refined") if "refinement" in result else ():
        add("refinement", metric, result["refinement"][metric])
    for task in ("three_class", "normal_images"):
        for metric, v in cls.get(task, {}).items():
            add(task, metric, v["value"], v["ci_low"], v["ci_high"])
    breakdown = result.get("breakdown", {})
    for by, groups in breakdown.get("lesion_recall", {}).items():
        for g in groups:
            add(f"lesion_recall_by_{by}", f"{g['group']} ({g['lesions']} lesions)", g["recall"])
    for centre in breakdown.get("per_centre", []):
        for metric in ("images", "tumour_accuracy", "tumour_auc", "balanced_accuracy", "malignant_recall",
                       "lesion_recall"):
            add(f"centre {centre['centre']}", metric, centre[metric])
    return pd.DataFrame(rows, columns=["task", "metric", "value", "ci_low", "ci_high"])

