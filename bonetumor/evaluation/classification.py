"""Image level: how each image is classified from its detections (:func:`image_table`, the rules), the
paper's accuracy / precision / recall / F1 (equations 1–4) for tumour vs normal and benign vs malignant,
ROC AUC, confusion matrices, and the score threshold chosen on the validation split."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bonetumor import ID_TO_LABEL, IMAGE_LABELS, LABEL_TO_ID
from bonetumor.evaluation.predictions import aligned_pairs

NORMAL, TUMOUR = "normal", "tumour"
#: The three image classes, in the order every three-class result uses.
THREE_CLASSES = IMAGE_LABELS
IMAGE_TABLE_COLUMNS = ["image_id", "patient", "truth", "truth_tumour", "pred_class", "pred_tumour", "tumour_score",
                       "malignancy_score", "n_kept", "benign_score", "subtype", "centre"]


def image_table(preds: Sequence[Mapping], records: Sequence[Mapping], score_threshold: float = 0.5) -> pd.DataFrame:
    """One row per image: how each image is classified from its detections. **The rules**:

    * ``truth`` — the record's label: ``normal``, ``benign`` or ``malignant``; ``truth_tumour`` — benign or
      malignant.
    * A detection is *kept* when its score ≥ ``score_threshold``.
    * ``pred_tumour`` — the image is "tumour" when it has at least one kept detection, else "normal".
    * ``pred_class`` — the class (benign/malignant) of the image's top-scoring kept detection; ``normal``
      when there is none.
    * ``tumour_score`` — the highest score of any detection, ``malignancy_score`` / ``benign_score`` — the
      highest score of any malignant / benign detection (0 when there is none); all over **all** saved
      detections (not thresholded), so that ROC AUC sees the full ranking.

    Columns: ``image_id, patient, truth, truth_tumour, pred_class, pred_tumour, tumour_score,
    malignancy_score, n_kept, benign_score, subtype, centre`` (the last two from the record, ``None`` when
    it has none).
    """
    rows = []
    malignant_id, benign_id = LABEL_TO_ID["malignant"], LABEL_TO_ID["benign"]
    for record, pred in aligned_pairs(preds, records):
        scores = np.asarray(pred["scores"], float)
        labels = np.asarray(pred["labels"], int)
        keep = scores >= score_threshold
        if keep.any():
            top = int(np.flatnonzero(keep)[np.argmax(scores[keep])])
            pred_class = ID_TO_LABEL[int(labels[top])]
        else:
            pred_class = NORMAL
        truth = record["label"]
        if truth not in ("normal", "benign", "malignant"):
            raise ValueError(f"image {record['image_id']}: unknown label {truth!r}")
        rows.append({
            "image_id": int(record["image_id"]),
            "patient": str(record.get("patient", f"image-{record['image_id']}")),
            "truth": truth,
            "truth_tumour": truth != NORMAL,
            "pred_class": pred_class,
            "pred_tumour": bool(keep.any()),
            "tumour_score": float(scores.max()) if len(scores) else 0.0,
            "malignancy_score": float(scores[labels == malignant_id].max()) if (labels == malignant_id).any() else 0.0,
            "n_kept": int(keep.sum()),
            "benign_score": float(scores[labels == benign_id].max()) if (labels == benign_id).any() else 0.0,
            "subtype": record.get("subtype"),
            "centre": record.get("centre"),
        })
    return pd.DataFrame(rows, columns=IMAGE_TABLE_COLUMNS)


def _binary_metrics(y_true: np.ndarray, y_pred: np.ndarray, correct: np.ndarray | None = None) -> dict:
    """Accuracy, precision, recall (sensitivity), specificity and F1 of boolean arrays (positive = True),
    from scikit-learn's confusion matrix (one call instead of one per metric: the bootstrap calls this
    thousands of times; ``tests/test_evaluate.py`` checks the values equal ``sklearn.metrics``' own
    functions). ``correct`` overrides what accuracy counts as right (used when a third, "normal", prediction
    is always wrong). Undefined values are NaN: precision without a predicted positive, recall without an
    actual positive, specificity without an actual negative, F1 (= 2TP / (2TP + FP + FN)) with neither."""
    from sklearn.metrics import confusion_matrix

    n = len(y_true)
    if n == 0:
        return {k: math.nan for k in ("accuracy", "precision", "recall", "specificity", "f1")}
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y_true, y_pred, labels=[False, True]).ravel())
    accuracy = float(np.mean(correct)) if correct is not None else (tp + tn) / n
    return {
        "accuracy": float(accuracy),
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "recall": tp / (tp + fn) if tp + fn else math.nan,
        "specificity": tn / (tn + fp) if tn + fp else math.nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan,
    }


def _auc(y_true: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(y_true) == 0 or y_true.all() or not y_true.any():
        return math.nan
    return float(roc_auc_score(y_true, score))


def choose_score_threshold(preds: Sequence[Mapping], records: Sequence[Mapping], fallback: float = 0.5) -> dict:
    """The detection score threshold at which tumour-vs-normal image classification on these (validation)
    images has the largest Youden's J = sensitivity + specificity − 1, i.e. the ROC curve's point farthest
    above chance (scikit-learn's ``roc_curve`` of each image's ``tumour_score``).

    Chosen on the validation split, never on the test split, so the test metrics stay honest: the paper's
    algorithm validates and fine-tunes before testing (steps 2.6–2.7). Returns ``{"value", "rule",
    "youden_j", "n_images"}``; ``value`` is ``fallback`` when the images hold no tumour or no normal one."""
    from sklearn.metrics import roc_curve

    table = image_table(preds, records, score_threshold=fallback)
    y = table["truth_tumour"].to_numpy(bool)
    rule = "max Youden's J of tumour vs normal on the validation images"
    if len(y) == 0 or y.all() or not y.any():
        return {"value": float(fallback), "rule": f"fallback {fallback}: validation images lack a class",
                "youden_j": math.nan, "n_images": int(len(y))}
    fpr, tpr, thresholds = roc_curve(y, table["tumour_score"].to_numpy(float))
    usable = np.isfinite(thresholds) & (thresholds > 0)  # a threshold of 0 would keep images with no detection
    if not usable.any():
        return {"value": float(fallback), "rule": f"fallback {fallback}: no detection on the validation images",
                "youden_j": math.nan, "n_images": int(len(y))}
    j = np.where(usable, tpr - fpr, -np.inf)
    best = int(np.argmax(j))
    return {"value": float(thresholds[best]), "rule": rule, "youden_j": float(j[best]), "n_images": int(len(y))}


def tumour_vs_normal(table: pd.DataFrame) -> dict:
    """Tumour (positive) vs normal on all images: accuracy, precision, recall, specificity, F1 and ROC AUC
    of ``tumour_score``."""
    y = table["truth_tumour"].to_numpy(bool)
    yhat = table["pred_tumour"].to_numpy(bool)
    out = _binary_metrics(y, yhat)
    out["auc"] = _auc(y, table["tumour_score"].to_numpy(float))
    return out


def benign_vs_malignant(table: pd.DataFrame) -> dict:
    """Malignant (positive) vs benign on the images whose ground truth is a tumour. An image with no kept
    detection is predicted "normal": it is **wrong** for accuracy, not a malignant prediction (so a
    malignant one predicted normal is a false negative; a benign one predicted normal is neither a true nor
    a false positive, but lowers accuracy and counts as a negative for specificity). ``auc`` is the ROC AUC of
    ``malignancy_score``."""
    t = table[table["truth_tumour"].to_numpy(bool)]
    y = (t["truth"] == "malignant").to_numpy(bool)
    yhat = (t["pred_class"] == "malignant").to_numpy(bool)
    correct = (t["pred_class"] == t["truth"]).to_numpy(bool)
    out = _binary_metrics(y, yhat, correct=correct)
    out["auc"] = _auc(y, t["malignancy_score"].to_numpy(float))
    return out


def confusion(table: pd.DataFrame) -> dict:
    """Confusion matrices (rows truth, columns prediction, scikit-learn): ``tumour_vs_normal`` (normal,
    tumour), ``benign_vs_malignant`` (on tumour images; columns benign, malignant, normal) and ``three_class``
    (all images; normal, benign, malignant)."""
    from sklearn.metrics import confusion_matrix

    tv = ["normal", "tumour"]
    truth_tv = np.where(table["truth_tumour"], TUMOUR, NORMAL)
    pred_tv = np.where(table["pred_tumour"], TUMOUR, NORMAL)
    three = ["normal", "benign", "malignant"]
    t = table[table["truth_tumour"].to_numpy(bool)]
    bm = confusion_matrix(t["truth"], t["pred_class"], labels=["benign", "malignant", "normal"]) if len(t) \
        else np.zeros((3, 3), int)
    return {
        "tumour_vs_normal": {"labels": tv, "matrix": (confusion_matrix(truth_tv, pred_tv, labels=tv) if len(table)
                                                      else np.zeros((2, 2), int)).tolist()},
        "benign_vs_malignant": {"rows": ["benign", "malignant"], "columns": ["benign", "malignant", "normal"],
                                "matrix": bm[:2].tolist()},
        "three_class": {"labels": three, "matrix": (confusion_matrix(table["truth"], table["pred_class"], labels=three)
                                                    if len(table) else np.zeros((3, 3), int)).tolist()},
    }


def three_class(table: pd.DataFrame) -> dict:
    """Normal / benign / malignant on all images, as BTXRD's peers report it: per-class precision and recall
    of ``pred_class`` against ``truth`` (``precision_<class>``, ``recall_<class>``), balanced accuracy (the
    mean recall over the classes present, scikit-learn's definition), macro one-vs-rest ROC AUC and the
    malignant recall singled out (``malignant_recall``: the clinically costly miss).

    Per-class scores for the AUC: normal ``1 − tumour_score``, benign ``benign_score``, malignant
    ``malignancy_score``; a class's AUC is undefined when the class is absent or alone, and the macro AUC
    is the mean over the defined ones (NaN when none is). Undefined values are NaN."""
    truth = table["truth"].to_numpy()
    pred = table["pred_class"].to_numpy()
    out: dict[str, float] = {}
    recalls = []
    for cls in THREE_CLASSES:
        tp = int(((truth == cls) & (pred == cls)).sum())
        n_true, n_pred = int((truth == cls).sum()), int((pred == cls).sum())
        out[f"precision_{cls}"] = tp / n_pred if n_pred else math.nan
        out[f"recall_{cls}"] = tp / n_true if n_true else math.nan
        if n_true:
            recalls.append(out[f"recall_{cls}"])
    out["balanced_accuracy"] = float(np.mean(recalls)) if recalls else math.nan
    scores = {"normal": 1.0 - table["tumour_score"].to_numpy(float), "benign": table["benign_score"].to_numpy(float),
              "malignant": table["malignancy_score"].to_numpy(float)}
    aucs = [_auc(truth == cls, scores[cls]) for cls in THREE_CLASSES]
    defined = [a for a in aucs if not math.isnan(a)]
    out["macro_auc"] = float(np.mean(defined)) if defined else math.nan
    out["malignant_recall"] = out["recall_malignant"]
    return out


def normal_images(table: pd.DataFrame) -> dict:
    """False positives on normal images, which can only produce false positives: ``fp_image_rate`` (the
    fraction of normal images with at least one kept detection, = 1 − specificity of tumour vs normal) and
    ``fp_per_image`` (kept detections per normal image); NaN without a normal image."""
    normal = table[table["truth"].to_numpy() == NORMAL]
    if not len(normal):
        return {"fp_image_rate": math.nan, "fp_per_image": math.nan}
    return {"fp_image_rate": float(normal["pred_tumour"].to_numpy(bool).mean()),
            "fp_per_image": float(normal["n_kept"].to_numpy(float).mean())}



def classifier_image_table(probabilities, records: Sequence[Mapping]) -> pd.DataFrame:
    """:func:`image_table`'s rows for a whole-image classifier (Table 2's comparators), so that it is scored
    by exactly the detector's metrics. ``probabilities``: ``(N, 3)`` for normal, benign, malignant, in the
    order of ``records``. The rules: ``pred_class`` is the most probable class; ``pred_tumour`` iff that is
    not normal; ``tumour_score`` = 1 − p(normal), ``malignancy_score`` = p(malignant), ``benign_score`` =
    p(benign); ``n_kept`` = 1 for an image called a tumour (a classifier makes one finding per image)."""
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.shape != (len(records), len(THREE_CLASSES)):
        raise ValueError(f"expected probabilities of shape ({len(records)}, 3), got {probabilities.shape}")
    rows = []
    for record, p in zip(records, probabilities):
        pred_class = THREE_CLASSES[int(np.argmax(p))]
        truth = record["label"]
        if truth not in THREE_CLASSES:
            raise ValueError(f"image {record['image_id']}: unknown label {truth!r}")
        rows.append({"image_id": int(record["image_id"]),
                     "patient": str(record.get("patient", f"image-{record['image_id']}")),
                     "truth": truth, "truth_tumour": truth != NORMAL, "pred_class": pred_class,
                     "pred_tumour": pred_class != NORMAL, "tumour_score": float(1.0 - p[0]),
                     "malignancy_score": float(p[2]), "n_kept": int(pred_class != NORMAL),
                     "benign_score": float(p[1]), "subtype": record.get("subtype"), "centre": record.get("centre")})
    return pd.DataFrame(rows, columns=IMAGE_TABLE_COLUMNS)
