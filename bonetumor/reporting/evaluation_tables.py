"""The tables notebook 05 shows from one split's metrics (the result of
:func:`bonetumor.evaluation.evaluate_predictions`, as :func:`bonetumor.pipeline.ensure_metrics` saves it):
COCO AP, lesion-level counts, the image-level classification rows, the confusion matrices, and the measured
numbers beside the profile's targets (``targets`` in ``params/<profile>.yaml``)."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

CLASSIFICATION_TASKS = ("tumour_vs_normal", "benign_vs_malignant")


def coco_table(result: Mapping) -> pd.DataFrame:
    """COCO AP of boxes and masks side by side (one row per COCO metric)."""
    return pd.DataFrame({"boxes": result["detection"], "masks": result["segmentation"]})


def lesion_table(result: Mapping) -> pd.DataFrame:
    """Lesion-level counts and precision/recall/F1, one row per matching variant (class-aware, -agnostic)."""
    lesions = result["lesions"]
    return pd.DataFrame({k: v for k, v in lesions.items() if isinstance(v, dict)}).T


def classification_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The image-level rows of a long metrics table (:func:`bonetumor.evaluation.metrics_table`)."""
    return metrics[metrics["task"].isin(list(CLASSIFICATION_TASKS))]


def confusion_tables(result: Mapping) -> dict[str, pd.DataFrame]:
    """Each confusion matrix of the result as a labelled table (rows ``true …``, columns ``predicted …``)."""
    tables = {}
    for task, m in result["classification"]["confusion"].items():
        rows, cols = m.get("rows", m.get("labels")), m.get("columns", m.get("labels"))
        tables[task] = pd.DataFrame(m["matrix"], index=[f"true {r}" for r in rows],
                                    columns=[f"predicted {c}" for c in cols])
    return tables


def metric_value(metrics: pd.DataFrame, task: str, metric: str) -> float:
    """One value of a long metrics table; NaN when the table does not have it."""
    row = metrics[(metrics["task"] == task) & (metrics["metric"] == metric)]
    return float(row["value"].iloc[0]) if len(row) else math.nan


def targets_table(metrics: pd.DataFrame, targets: Sequence) -> pd.DataFrame:
    """The measured value of each target (:class:`bonetumor.config.Target`: ``name, task, metric, target``)
    beside it, and whether it is met (a missing measurement is not)."""
    table = pd.DataFrame([(t.name, metric_value(metrics, t.task, t.metric), t.target) for t in targets],
                         columns=["metric", "measured", "target"])
    table["met"] = table["measured"] >= table["target"]
    return table


def three_class_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """Normal / benign / malignant (per-class precision and recall, balanced accuracy, macro AUC, malignant
    recall) and the false positives on normal images, from a long metrics table."""
    return metrics[metrics["task"].isin(["three_class", "normal_images"])]


def lesion_recall_tables(result: Mapping) -> dict[str, pd.DataFrame]:
    """Lesion recall by COCO size, by fraction of the image side, by subtype and by centre: one table each
    (``group, lesions, found, recall``)."""
    by = result.get("breakdown", {}).get("lesion_recall", {})
    return {name: pd.DataFrame(rows, columns=["group", "lesions", "found", "recall"]) for name, rows in by.items()}


def per_centre_table(result: Mapping) -> pd.DataFrame:
    """Image-level metrics and lesion recall of each centre, one row per centre."""
    return pd.DataFrame(result.get("breakdown", {}).get("per_centre", []))


#: The rows of the grouped-split vs centre hold-out comparison: ``(task, metric)`` of a long metrics table.
HOLDOUT_ROWS = (("detection", "AP50"), ("segmentation", "AP50"), ("lesions_class_agnostic", "recall"),
                ("tumour_vs_normal", "accuracy"), ("tumour_vs_normal", "auc"), ("benign_vs_malignant", "accuracy"),
                ("benign_vs_malignant", "auc"), ("three_class", "balanced_accuracy"), ("three_class", "macro_auc"),
                ("three_class", "malignant_recall"), ("normal_images", "fp_image_rate"))


def holdout_table(splits: Mapping[str, tuple[pd.DataFrame, Mapping]]) -> pd.DataFrame:
    """The same metrics side by side for several splits — ``{name: (long metrics table, counts)}``, e.g.
    the grouped split and the centre hold-out: one row per metric of :data:`HOLDOUT_ROWS` plus the test
    images and pseudo-patients, one ``value``/``ci_low``/``ci_high`` column triple per split."""
    columns = {}
    for name, (metrics, counts) in splits.items():
        indexed = metrics.set_index(["task", "metric"])
        rows = {}
        for task, metric in HOLDOUT_ROWS:
            found = indexed.loc[(task, metric)] if (task, metric) in indexed.index else None
            rows[f"{task} {metric}"] = ((found["value"], found["ci_low"], found["ci_high"]) if found is not None
                                        else (math.nan, math.nan, math.nan))
        rows["test images"] = (counts["images"], math.nan, math.nan)
        rows["test pseudo-patients"] = (counts["patients"], math.nan, math.nan)
        for i, part in enumerate(("value", "ci_low", "ci_high")):
            columns[f"{name} {part}"] = {k: v[i] for k, v in rows.items()}
    table = pd.DataFrame(columns)
    table.index.name = "metric"
    return table.reset_index()
