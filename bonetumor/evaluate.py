"""Evaluation of a trained detector on a held-out split: the paper's algorithm step 3 ("test on a separate
set; accuracy, precision, recall and F1 for detection, segmentation and classification") and the numbers
behind its Table 2.

Predictions are computed **once** (:func:`predict`), saved as JSON (:func:`save_predictions`) and every
metric here reads the saved predictions, so re-drawing a table or a figure never re-runs the model.

What is measured (all values are fractions in [0, 1], not percent):

* **detection / segmentation** — COCO AP, AP50, AP75 (pycocotools ``COCOeval``, ``bbox`` and ``segm``),
  overall and per class (benign, malignant). Images without lesions are part of the evaluated image set, so
  a false positive on a normal radiograph lowers AP. Undefined cases are decided as follows, never by a
  crash: *no ground-truth lesion* (overall, or of one class) → AP is **NaN** (there is nothing to find;
  COCOeval's ``-1``); *lesions present but the model predicts nothing* → AP is **0.0** (every lesion missed).
* **lesions** — lesion-level precision, recall and F1 at IoU ≥ 0.5 after dropping detections below
  ``score_threshold``; greedy matching in order of decreasing score, each detection to the still-unmatched
  ground-truth lesion of highest IoU (box IoU by default). Class-aware (a match needs the same class) and
  class-agnostic variants. Precision is NaN when nothing was detected, recall NaN when there is no lesion.
  Mask Dice and IoU are reported for the class-agnostic matches (``dice_matched``) and per ground-truth
  lesion with a missed lesion scoring 0 (``dice_per_lesion``).
* **classification** — image-level, as the paper's Table 2 reports it; see :func:`image_table` for the exact
  rules. Accuracy, precision, recall, F1 and specificity with **95 % bootstrap confidence intervals that
  resample pseudo-patients** (:func:`bootstrap_ci`), ROC AUC of the malignancy score, confusion matrices.
* **refinement** — the paper's "post-processing of segmented regions" (:func:`refine_mask`); its effect on
  Dice is reported both ways (:func:`refinement_effect`).

Frames: a prediction carries the ``height``/``width`` of the image the model saw. When a record's
``width``/``height`` differ (records of the files on disk, model fed resized copies), the record's polygons
and boxes are scaled into the prediction's frame before any comparison (:func:`record_in_frame`).

Missing values: inside Python results use ``float('nan')``; :func:`evaluate_predictions` turns NaN into
``None`` so that its result is strict JSON, and :func:`metrics_table` turns ``None`` back into NaN.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from bonetumor import LABEL_TO_ID

#: Category ids of the COCO ground truth (the model's labels; 0 is background and never a category).
CATEGORIES = [{"id": LABEL_TO_ID[name], "name": name, "supercategory": "tumour"} for name in ("benign", "malignant")]
ID_TO_LABEL = {v: k for k, v in LABEL_TO_ID.items()}
PREDICTIONS_FORMAT = "bonetumor-predictions/1"
NORMAL, TUMOUR = "normal", "tumour"


# --------------------------------------------------------------------------------------------------------
# predictions: computed once, saved, loaded


def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE of one binary (H, W) mask, ``counts`` as ``str`` so that it goes into JSON."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_mask(rle: Mapping) -> np.ndarray:
    """Binary (H, W) ``bool`` mask of one RLE dict (``counts`` as ``str`` or ``bytes``)."""
    from pycocotools import mask as mask_utils

    rle = dict(rle)
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    with warnings.catch_warnings():  # pycocotools' own numpy-2 DeprecationWarning (copy keyword)
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _as_int(value) -> int:
    if hasattr(value, "item"):
        value = value.item()
    return int(value)


def _batches(data, batch_size: int):
    """Yield ``(images, targets)`` lists from a torch DataLoader (batches of ``(images, targets)``) or from a
    Dataset (items ``(image, target)``)."""
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader):
        for images, targets in data:
            yield list(images), list(targets)
        return
    images, targets = [], []
    for i in range(len(data)):
        image, target = data[i]
        images.append(image)
        targets.append(target)
        if len(images) == batch_size:
            yield images, targets
            images, targets = [], []
    if images:
        yield images, targets


def predict(model, dataset_or_loader, device="cpu", mask_threshold: float = 0.5, batch_size: int = 2,
            progress: bool = False) -> list[dict]:
    """Run ``model`` (put in eval mode, under ``torch.no_grad``) on every image of a detection Dataset or
    DataLoader (torchvision contract: ``(image, target)`` with ``target["image_id"]``).

    Returns one dict per image, in the data's order::

        {"image_id": 3, "height": 512, "width": 384,          # frame of the image the model saw
         "boxes": [[x0, y0, x1, y1], ...], "labels": [1 | 2, ...], "scores": [...],
         "masks": [RLE, ...]}                                  # masks pasted into the image, binarised at
                                                               # mask_threshold, COCO RLE with str counts

    All detections the model returns are kept (torchvision's own ``box_score_thresh``, 0.05 by default,
    already applies); the evaluation's ``score_threshold`` is applied later, so it can change without
    predicting again.
    """
    import torch

    was_training = model.training
    model.eval()
    model.to(device)
    out: list[dict] = []
    batches = _batches(dataset_or_loader, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="predict", unit="batch")
    try:
        with torch.no_grad():
            for images, targets in batches:
                results = model([img.to(device) for img in images])
                for img, target, res in zip(images, targets, results):
                    height, width = int(img.shape[-2]), int(img.shape[-1])
                    masks = (res["masks"][:, 0] >= mask_threshold).cpu().numpy() if "masks" in res else \
                        np.zeros((len(res["boxes"]), height, width), bool)
                    out.append({
                        "image_id": _as_int(target["image_id"]),
                        "height": height,
                        "width": width,
                        "boxes": [[round(float(v), 3) for v in box] for box in res["boxes"].cpu().tolist()],
                        "labels": [int(v) for v in res["labels"].cpu().tolist()],
                        "scores": [round(float(v), 6) for v in res["scores"].cpu().tolist()],
                        "masks": [encode_mask(m) for m in masks],
                    })
    finally:
        model.train(was_training)
    return out


def save_predictions(preds: list[dict], path: str | os.PathLike, meta: Mapping | None = None) -> Path:
    """Write predictions as JSON (atomically) with a ``meta`` block; suggested keys: ``settings`` (the
    settings tag), ``run``, ``split``, ``score_threshold``, ``mask_threshold``. ``format`` and ``n_images``
    are added."""
    from bonetumor.io import write_json

    meta = {"format": PREDICTIONS_FORMAT, **dict(meta or {}), "n_images": len(preds)}
    return write_json(path, {"meta": meta, "predictions": list(preds)}, indent=None)


def load_predictions(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """``(predictions, meta)`` from a file written by :func:`save_predictions`."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a predictions file (invalid JSON: {exc})") from exc
    if not isinstance(obj, dict) or "predictions" not in obj:
        raise ValueError(f"{path}: not a predictions file (no 'predictions' key)")
    meta = obj.get("meta", {})
    if meta.get("format", PREDICTIONS_FORMAT) != PREDICTIONS_FORMAT:
        raise ValueError(f"{path}: predictions format {meta.get('format')!r}, expected {PREDICTIONS_FORMAT!r}")
    return obj["predictions"], meta


# --------------------------------------------------------------------------------------------------------
# ground truth


def record_in_frame(record: Mapping, width: int, height: int) -> dict:
    """A copy of ``record`` whose lesions (polygons, boxes) and size are scaled to a ``width`` × ``height``
    frame (the image the model saw); unchanged when the sizes already agree."""
    rec = dict(record)
    w0, h0 = int(record["width"]), int(record["height"])
    if (w0, h0) == (int(width), int(height)):
        return rec
    sx, sy = width / w0, height / h0
    lesions = []
    for lesion in record.get("lesions", []):
        les = dict(lesion)
        les["polygons"] = [[v * (sx if i % 2 == 0 else sy) for i, v in enumerate(poly)]
                           for poly in lesion.get("polygons", [])]
        if lesion.get("box") is not None:
            x0, y0, x1, y1 = lesion["box"]
            les["box"] = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
        lesions.append(les)
    rec.update(width=int(width), height=int(height), lesions=lesions)
    return rec


def lesion_rle(lesion: Mapping, height: int, width: int) -> dict:
    """One RLE of the lesion in an ``height`` × ``width`` frame: the training target's mask
    (:func:`bonetumor.data.dataset.rasterise_lesion`), encoded."""
    from pycocotools import mask as mask_utils

    from bonetumor.data.dataset import rasterise_lesion

    return mask_utils.encode(np.asfortranarray(rasterise_lesion(dict(lesion), height, width)))


def _lesion_box(rle: dict) -> list[float]:
    """The tight XYXY bounds of a lesion's mask: the boxes the model is trained on (see the Dataset)."""
    from pycocotools import mask as mask_utils

    x, y, w, h = mask_utils.toBbox(rle).tolist()
    return [x, y, x + w, y + h]


def coco_ground_truth(records: Sequence[Mapping], frames: Mapping[int, tuple[int, int]] | None = None):
    """In-memory COCO ground truth (``pycocotools.coco.COCO``) of ``records``: categories 1 benign,
    2 malignant; each lesion one annotation with its polygons as ``segmentation``, ``area`` from its mask and
    ``bbox`` from its box; images without lesions included (they hold no annotation). ``frames`` maps
    ``image_id`` → ``(width, height)`` to scale records into the frame of the predictions."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    images, annotations = [], []
    ann_id = 1
    for record in records:
        if frames and record["image_id"] in frames:
            record = record_in_frame(record, *frames[record["image_id"]])
        h, w = int(record["height"]), int(record["width"])
        images.append({"id": int(record["image_id"]), "width": w, "height": h,
                       "file_name": os.path.basename(str(record.get("file", record.get("name", ""))))})
        for lesion in record.get("lesions", []):
            rle = lesion_rle(lesion, h, w)
            x0, y0, x1, y1 = _lesion_box(rle)
            annotations.append({
                "id": ann_id, "image_id": int(record["image_id"]),
                "category_id": LABEL_TO_ID[lesion["category"]],
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
            })
            ann_id += 1
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": copy.deepcopy(CATEGORIES)}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# --------------------------------------------------------------------------------------------------------
# alignment of predictions with records


def _aligned(preds: Sequence[Mapping], records: Sequence[Mapping]) -> list[tuple[dict, dict]]:
    """``(record in the prediction's frame, prediction)`` pairs in record order. Predictions of images not
    among ``records`` are ignored (``records`` define the evaluated set); a record without a prediction is an
    error, since counting it as "nothing detected" would silently bias every metric."""
    by_id = {int(p["image_id"]): p for p in preds}
    if len(by_id) != len(preds):
        raise ValueError(f"{len(preds) - len(by_id)} duplicate image id(s) among the predictions")
    missing = [r["image_id"] for r in records if int(r["image_id"]) not in by_id]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} of {len(records)} images (image ids {missing[:10]}"
                         f"{' …' if len(missing) > 10 else ''}): predictions and records do not match")
    pairs = []
    for record in records:
        pred = by_id[int(record["image_id"])]
        if "width" in pred and "height" in pred:
            record = record_in_frame(record, pred["width"], pred["height"])
        pairs.append((dict(record), dict(pred)))
    return pairs


def _refined_preds(preds: Sequence[Mapping], **refine_kwargs) -> list[dict]:
    out = []
    for p in preds:
        q = dict(p)
        q["masks"] = [encode_mask(refine_mask(decode_mask(m), **refine_kwargs)) for m in p.get("masks", [])]
        out.append(q)
    return out


# --------------------------------------------------------------------------------------------------------
# COCO AP


def _nan_if_undefined(value: float) -> float:
    return float("nan") if value < 0 else float(value)


def coco_metrics(preds: Sequence[Mapping], records: Sequence[Mapping]) -> dict:
    """COCO AP, AP50, AP75 for ``bbox`` and ``segm``, overall and per class, over all images of ``records``
    (normal ones included). Returns ``{"bbox": {"AP", "AP50", "AP75", "AP_benign", "AP50_benign", …},
    "segm": {…}}``.

    No ground-truth lesion (overall / of a class) → NaN; lesions but no detection → 0.0 (see module doc).
    COCOeval's printed summary is captured, not shown.
    """
    from pycocotools.cocoeval import COCOeval

    pairs = _aligned(preds, records)
    gt = coco_ground_truth([r for r, _ in pairs])
    img_ids = [int(r["image_id"]) for r, _ in pairs]
    results = []
    for _, p in pairs:
        masks = p.get("masks") or [None] * len(p["boxes"])
        for box, label, score, rle in zip(p["boxes"], p["labels"], p["scores"], masks):
            x0, y0, x1, y1 = map(float, box)
            det = {"image_id": int(p["image_id"]), "category_id": int(label), "score": float(score),
                   "bbox": [x0, y0, x1 - x0, y1 - y0]}
            if rle is not None:
                det["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"]}
            results.append(det)

    cat_ids = [c["id"] for c in CATEGORIES]
    n_gt = {c: len(gt.getAnnIds(catIds=[c])) for c in cat_ids}
    out: dict[str, dict] = {}
    for iou_type in ("bbox", "segm"):
        dets = results if iou_type == "bbox" else [d for d in results if "segmentation" in d]
        scores: dict[str, float] = {}
        for suffix, cats in [("", cat_ids)] + [(f"_{ID_TO_LABEL[c]}", [c]) for c in cat_ids]:
            if sum(n_gt[c] for c in cats) == 0:  # nothing to find: undefined
                scores.update({f"AP{suffix}": math.nan, f"AP50{suffix}": math.nan, f"AP75{suffix}": math.nan})
                continue
            if not [d for d in dets if d["category_id"] in cats]:  # lesions present, all missed
                scores.update({f"AP{suffix}": 0.0, f"AP50{suffix}": 0.0, f"AP75{suffix}": 0.0})
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                dt = gt.loadRes(copy.deepcopy(dets))
                ev = COCOeval(gt, dt, iouType=iou_type)
                ev.params.imgIds = img_ids
                ev.params.catIds = cats
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            scores.update({f"AP{suffix}": _nan_if_undefined(ev.stats[0]),
                           f"AP50{suffix}": _nan_if_undefined(ev.stats[1]),
                           f"AP75{suffix}": _nan_if_undefined(ev.stats[2])})
        out[iou_type] = scores
    return out


# --------------------------------------------------------------------------------------------------------
# lesion level: matching, precision/recall/F1, Dice/IoU


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of XYXY boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two binary masks; 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)`` of two binary masks; 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def greedy_match(pred_boxes, pred_scores, gt_boxes, iou_threshold: float = 0.5, pred_labels=None,
                 gt_labels=None, iou: np.ndarray | None = None) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching: detections in order of decreasing score (ties: input order), each to the
    still-unmatched ground truth of highest IoU ≥ ``iou_threshold`` (and, when labels are given, the same
    label). ``iou`` (N_pred × N_gt) overrides box IoU (e.g. mask IoU). Returns ``(pred, gt, iou)`` triples."""
    iou = box_iou(pred_boxes, gt_boxes) if iou is None else np.asarray(iou, float)
    n_pred, n_gt = iou.shape if iou.ndim == 2 else (len(pred_scores), 0)
    order = np.argsort(-np.asarray(pred_scores, float), kind="stable")
    taken = np.zeros(n_gt, bool)
    matches = []
    for i in order:
        if n_gt == 0:
            break
        cand = iou[i].copy()
        cand[taken] = -1.0
        if pred_labels is not None and gt_labels is not None:
            cand[np.asarray(gt_labels) != pred_labels[i]] = -1.0
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            taken[j] = True
            matches.append((int(i), j, float(iou[i, j])))
    return matches


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    # 2TP / (2TP + FP + FN): the harmonic mean of precision and recall where both exist, 0 without a match
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def _kept(pred: Mapping, score_threshold: float) -> list[int]:
    return [i for i, s in enumerate(pred["scores"]) if s >= score_threshold]


def lesion_metrics(preds: Sequence[Mapping], records: Sequence[Mapping], score_threshold: float = 0.5,
                   iou_threshold: float = 0.5, match_on: str = "bbox", refine: bool | Mapping = False) -> dict:
    """Lesion-level detection precision/recall/F1 and mask Dice/IoU of matched lesions.

    Detections with score < ``score_threshold`` are dropped; the rest are matched greedily
    (:func:`greedy_match`) on box IoU (``match_on="bbox"``) or mask IoU (``"segm"``) ≥ ``iou_threshold``.
    TP = matched detections, FP = unmatched detections, FN = unmatched lesions, summed over images. F1 is 0
    when there are lesions or detections but no match, NaN when there are neither.

    Masks: for each class-agnostic match, Dice and IoU of the detection's binary mask with the lesion's mask
    (``dice_matched``/``iou_matched``: means over matches, NaN without any); ``dice_per_lesion``: mean over
    all ground-truth lesions with 0 for a missed one. ``refine`` (True or :func:`refine_mask` keyword
    arguments) refines predicted masks first; matching on boxes is unaffected by it.
    """
    if match_on not in ("bbox", "segm"):
        raise ValueError(f"match_on must be 'bbox' or 'segm', not {match_on!r}")
    refine_kwargs = (dict(refine) if isinstance(refine, Mapping) else {}) if refine else None
    counts = {"class_aware": [0, 0, 0], "class_agnostic": [0, 0, 0]}
    dices, ious, per_lesion = [], [], []
    for record, pred in _aligned(preds, records):
        keep = _kept(pred, score_threshold)
        h, w = int(record["height"]), int(record["width"])
        boxes = np.asarray([pred["boxes"][i] for i in keep], float).reshape(-1, 4)
        scores = np.asarray([pred["scores"][i] for i in keep], float)
        labels = np.asarray([pred["labels"][i] for i in keep], int)
        has_masks = len(pred.get("masks") or []) == len(pred["scores"]) and (pred.get("masks") is not None)
        pmasks = [decode_mask(pred["masks"][i]) for i in keep] if has_masks else None
        if pmasks is not None and refine_kwargs is not None:
            pmasks = [refine_mask(m, **refine_kwargs) for m in pmasks]
        lesions = record.get("lesions", [])
        grles = [lesion_rle(les, h, w) for les in lesions]
        gboxes = np.asarray([_lesion_box(rle) for rle in grles], float).reshape(-1, 4)
        glabels = np.asarray([LABEL_TO_ID[les["category"]] for les in lesions], int)
        gmasks = None
        if pmasks is not None or match_on == "segm":
            gmasks = [decode_mask(rle) for rle in grles]
        if match_on == "segm":
            if pmasks is None:
                raise ValueError("match_on='segm' needs predicted masks")
            iou = np.array([[mask_iou(pm, gm) for gm in gmasks] for pm in pmasks]).reshape(len(pmasks), len(gmasks))
        else:
            iou = box_iou(boxes, gboxes)
        for variant, aware in (("class_aware", True), ("class_agnostic", False)):
            matches = greedy_match(boxes, scores, gboxes, iou_threshold, labels if aware else None,
                                   glabels if aware else None, iou=iou)
            c = counts[variant]
            c[0] += len(matches)
            c[1] += len(keep) - len(matches)
            c[2] += len(lesions) - len(matches)
            if not aware and pmasks is not None:
                matched_gt = {}
                for i, j, _ in matches:
                    d = dice(pmasks[i], gmasks[j])
                    dices.append(d)
                    ious.append(mask_iou(pmasks[i], gmasks[j]))
                    matched_gt[j] = d
                per_lesion.extend(matched_gt.get(j, 0.0) for j in range(len(lesions)))
    out = {variant: _prf(*c) for variant, c in counts.items()}
    out.update({
        "match_on": match_on, "iou_threshold": iou_threshold, "score_threshold": score_threshold,
        "dice_matched": float(np.mean(dices)) if dices else math.nan,
        "iou_matched": float(np.mean(ious)) if ious else math.nan,
        "dice_per_lesion": float(np.mean(per_lesion)) if per_lesion else math.nan,
        "n_matched": len(dices),
    })
    return out


# --------------------------------------------------------------------------------------------------------
# post-processing of masks


def refine_mask(mask: np.ndarray, min_size: int = 64, fill_holes: bool = True, keep_largest: bool = False) -> np.ndarray:
    """Post-process one binary mask (the paper's "post-processing to refine segmented tumour regions"):

    1. ``fill_holes`` — fill enclosed holes (``scipy.ndimage.binary_fill_holes``): a lesion is one solid
       region; holes come from low mask probabilities in its interior.
    2. remove connected components (8-connectivity) of fewer than ``min_size`` pixels
       (``skimage.morphology.remove_small_objects``): isolated specks are not lesions.
    3. ``keep_largest`` — keep only the largest component.

    A non-empty mask is never emptied: when every component is below ``min_size``, the largest one is kept.
    Returns a ``bool`` array of the same shape.
    """
    from scipy import ndimage
    from skimage.morphology import remove_small_objects

    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"refine_mask expects a 2-D mask, got shape {m.shape}")
    if not m.any():
        return m.copy()
    if fill_holes:
        m = ndimage.binary_fill_holes(m)
    labels, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    if keep_largest:
        return largest
    if min_size > 1:
        m = remove_small_objects(m, max_size=min_size - 1, connectivity=2)
        if not m.any():
            m = largest
    return m


def refinement_effect(preds: Sequence[Mapping], records: Sequence[Mapping], score_threshold: float = 0.5,
                      iou_threshold: float = 0.5, **refine_kwargs) -> dict:
    """Mask quality of the same (box-matched) lesions with raw and with refined masks:
    ``{"dice_raw", "dice_refined", "iou_raw", "iou_refined", "dice_per_lesion_raw", "dice_per_lesion_refined",
    "n_matched", "refine": kwargs}``."""
    raw = lesion_metrics(preds, records, score_threshold, iou_threshold, "bbox", refine=False)
    ref = lesion_metrics(preds, records, score_threshold, iou_threshold, "bbox", refine=refine_kwargs or True)
    return {"dice_raw": raw["dice_matched"], "dice_refined": ref["dice_matched"],
            "iou_raw": raw["iou_matched"], "iou_refined": ref["iou_matched"],
            "dice_per_lesion_raw": raw["dice_per_lesion"], "dice_per_lesion_refined": ref["dice_per_lesion"],
            "n_matched": raw["n_matched"], "refine": {"min_size": 64, "fill_holes": True, **refine_kwargs}}


# --------------------------------------------------------------------------------------------------------
# image level


def image_table(preds: Sequence[Mapping], records: Sequence[Mapping], score_threshold: float = 0.5) -> pd.DataFrame:
    """One row per image: how each image is classified from its detections. **The rules**:

    * ``truth`` — the record's label: ``normal``, ``benign`` or ``malignant``; ``truth_tumour`` — benign or
      malignant.
    * A detection is *kept* when its score ≥ ``score_threshold``.
    * ``pred_tumour`` — the image is "tumour" when it has at least one kept detection, else "normal".
    * ``pred_class`` — the class (benign/malignant) of the image's top-scoring kept detection; ``normal``
      when there is none.
    * ``tumour_score`` — the highest score of any detection, ``malignancy_score`` — the highest score of any
      malignant detection (0 when there is none); both over **all** saved detections (not thresholded), so
      that ROC AUC sees the full ranking.

    Columns: ``image_id, patient, truth, truth_tumour, pred_class, pred_tumour, tumour_score,
    malignancy_score, n_kept``.
    """
    rows = []
    malignant_id = LABEL_TO_ID["malignant"]
    for record, pred in _aligned(preds, records):
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
        })
    return pd.DataFrame(rows, columns=["image_id", "patient", "truth", "truth_tumour", "pred_class", "pred_tumour",
                                       "tumour_score", "malignancy_score", "n_kept"])


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


def bootstrap_ci(table: pd.DataFrame, metric_fn: Callable[[pd.DataFrame], Mapping[str, float]], n: int = 1000,
                 seed: int = 0, level: float = 0.95, group: str = "patient", return_samples: bool = False) -> dict:
    """Percentile bootstrap confidence intervals of every metric ``metric_fn(table)`` returns, resampling
    **groups** (pseudo-patients, column ``group``) with replacement — all images of a drawn patient enter the
    resample together, as often as the patient is drawn — so that correlated images of one patient do not
    narrow the interval. ``n`` resamples from ``numpy.random.default_rng(seed)``.

    A resample where a metric is undefined (NaN, e.g. no malignant image drawn) is skipped for that metric.
    Returns ``{metric: {"value", "ci_low", "ci_high", "n_boot", "n_skipped"}}`` (``ci_*`` NaN when ``n`` is 0
    or every resample was skipped); with ``return_samples`` also ``{"_samples": {metric: array}}``.
    """
    point = {k: float(v) for k, v in metric_fn(table).items()}
    groups = table[group].astype(str).to_numpy()
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    samples = {k: [] for k in point}
    rng = np.random.default_rng(seed)
    if len(uniq):
        for _ in range(int(n)):
            drawn = rng.integers(0, len(uniq), len(uniq))
            idx = np.concatenate([members[g] for g in drawn])
            values = metric_fn(table.iloc[idx])
            for k in point:
                samples[k].append(float(values[k]))
    alpha = (1.0 - level) / 2.0
    out: dict = {}
    for k, value in point.items():
        arr = np.asarray(samples[k], float)
        valid = arr[~np.isnan(arr)]
        lo, hi = (np.percentile(valid, [100 * alpha, 100 * (1 - alpha)]) if len(valid) else (math.nan, math.nan))
        out[k] = {"value": value, "ci_low": float(lo), "ci_high": float(hi), "n_boot": int(len(valid)),
                  "n_skipped": int(len(arr) - len(valid))}
    if return_samples:
        out["_samples"] = {k: np.asarray(v, float) for k, v in samples.items()}
    return out


# --------------------------------------------------------------------------------------------------------
# everything together


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
                            "benign_vs_malignant": {…}, "auc_malignant": {…}, "confusion": {…}, "rules": str},
         "refinement": {"dice_raw", "dice_refined", …},
         "counts": {...}, "settings": {...}}
    """
    score_threshold = float(_setting(settings_eval, "score_threshold", 0.5))
    n_boot = int(_setting(settings_eval, "bootstrap", 1000))
    refine = bool(_setting(settings_eval, "refine_masks", False))

    pairs = _aligned(preds, records)  # validates once; every function below aligns again in the same way
    used = [p for _, p in pairs]
    mask_preds = _refined_preds(used) if refine else used
    coco = coco_metrics(mask_preds, records)
    coco["bbox"] = coco_metrics(used, records)["bbox"] if refine else coco["bbox"]
    lesions = lesion_metrics(used, records, score_threshold, iou_threshold, "bbox", refine=refine)
    table = image_table(used, records, score_threshold)

    tvn = bootstrap_ci(table, tumour_vs_normal, n_boot, seed)
    bvm = bootstrap_ci(table, benign_vs_malignant, n_boot, seed)
    auc_malignant = bvm.pop("auc")
    classification = {
        "tumour_vs_normal": tvn,
        "benign_vs_malignant": bvm,
        "auc_malignant": auc_malignant,
        "confusion": confusion(table),
        "rules": ("kept detection: score >= score_threshold; image 'tumour' iff it has a kept detection; image "
                  "class = class of its top-scoring kept detection, 'normal' if none; benign vs malignant on "
                  "ground-truth tumour images, positive = malignant, a 'normal' prediction is wrong; "
                  "malignancy score = max score of malignant detections (all saved detections, 0 if none); "
                  "95% percentile bootstrap CIs resampling pseudo-patients"),
    }
    n_lesions = sum(len(r.get("lesions", [])) for r, _ in pairs)
    counts = {
        "images": len(table),
        "patients": int(table["patient"].nunique()),
        "normal": int((table["truth"] == "normal").sum()),
        "benign": int((table["truth"] == "benign").sum()),
        "malignant": int((table["truth"] == "malignant").sum()),
        "lesions": int(n_lesions),
        "detections": int(sum(len(p["scores"]) for p in used)),
        "detections_kept": int(table["n_kept"].sum()),
    }
    result = {
        "detection": coco["bbox"],
        "segmentation": coco["segm"],
        "lesions": lesions,
        "classification": classification,
        "refinement": refinement_effect(used, records, score_threshold, iou_threshold),
        "counts": counts,
        "settings": {"score_threshold": score_threshold, "iou_threshold": iou_threshold, "bootstrap": n_boot,
                     "refine_masks": refine, "seed": seed, "ci_level": 0.95},
    }
    return _jsonable(result)


def _num(value) -> float:
    return math.nan if value is None else float(value)


def metrics_table(result: Mapping) -> pd.DataFrame:
    """The result of :func:`evaluate_predictions` in long format — columns ``task, metric, value, ci_low,
    ci_high`` (fractions; ``ci_*`` NaN where no interval is computed) — for Table 2 and the figures.

    Tasks: ``detection`` and ``segmentation`` (COCO AP), ``lesions_class_aware``, ``lesions_class_agnostic``,
    ``lesion_masks``, ``tumour_vs_normal``, ``benign_vs_malignant`` (metrics ``accuracy``, ``precision``,
    ``recall``, ``specificity``, ``f1``, ``auc``) and ``refinement``."""
    rows = []

    def add(task, metric, value, lo=None, hi=None):
        rows.append({"task": task, "metric": metric, "value": _num(value), "ci_low": _num(lo), "ci_high": _num(hi)})

    for task in ("detection", "segmentation"):
        for metric, value in result[task].items():
            add(task, metric, value)
    les = result["lesions"]
    for variant in ("class_aware", "class_agnostic"):
        for metric in ("precision", "recall", "f1"):
            add(f"lesions_{variant}", metric, les[variant][metric])
    for metric in ("dice_matched", "iou_matched", "dice_per_lesion"):
        add("lesion_masks", metric, les[metric])
    cls = result["classification"]
    for task in ("tumour_vs_normal", "benign_vs_malignant"):
        for metric, v in cls[task].items():
            add(task, metric, v["value"], v["ci_low"], v["ci_high"])
    a = cls["auc_malignant"]
    add("benign_vs_malignant", "auc", a["value"], a["ci_low"], a["ci_high"])
    for metric in ("dice_raw", "dice_refined", "iou_raw", "iou_refined"):
        add("refinement", metric, result["refinement"][metric])
    return pd.DataFrame(rows, columns=["task", "metric", "value", "ci_low", "ci_high"])


# --------------------------------------------------------------------------------------------------------
# command line: ``bonetumor evaluate RUN --data PATH --split test [--json]``


def add_evaluate_arguments(parser) -> None:
    """Arguments of ``bonetumor evaluate``."""
    parser.add_argument("run", metavar="RUN", help="run folder, or a run name under runs/")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="BTXRD-layout folder (default: the run's own data, e.g. its phantom)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate")
    parser.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--score-threshold", type=float, default=None, help="override settings.evaluate")
    parser.add_argument("--bootstrap", type=int, default=None, help="number of patient resamples (override)")
    parser.add_argument("--refine", action="store_true", help="refine predicted masks before mask metrics")
    parser.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: the run's seed)")
    parser.add_argument("--recompute", action="store_true", help="predict again even if saved predictions exist")
    parser.add_argument("--out", metavar="JSON", default=None,
                        help="write the metrics here (default RUN/metrics-<split>.json)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")


def resolve_run(run: str | os.PathLike) -> Path:
    """A run folder given as a path, or as a name under ``bonetumor.paths.RUNS``."""
    from bonetumor import paths

    path = Path(run).expanduser()
    if path.is_dir():
        return path.resolve()
    if (paths.RUNS / str(run)).is_dir():
        return paths.RUNS / str(run)
    raise FileNotFoundError(f"no run {run!r}: neither {path} nor {paths.RUNS / str(run)} is a folder")


def _split_loader(settings):
    """``load_split(settings, split) -> (records, dataset)`` over one :func:`bonetumor.pipeline.prepare` (same
    reader, resize cache, pseudo-patients, duplicates and seeded split as training), prepared on first use."""
    from bonetumor import pipeline
    from bonetumor.data.dataset import BoneTumourDataset

    prepared = []

    def load_split(settings, split: str):
        if not prepared:
            prepared.append(pipeline.prepare(settings, progress=False))
        return _split_of(prepared[0], split, BoneTumourDataset)

    return load_split


def _split_of(prepared, split: str, dataset_class):
    if split not in prepared.splits:
        raise ValueError(f"no split {split!r} (splits: {', '.join(prepared.splits)})")
    records = prepared.splits[split]
    if not records:
        raise ValueError(f"the {split} split of {prepared.root} is empty")
    return records, dataset_class(records, train=False)


def cached_predictions(run_dir: Path, settings, split: str, dataset, which: str = "best", mask_threshold: float = 0.5,
                       device=None, recompute: bool = False) -> tuple[list[dict], Path]:
    """The predictions of a trained run on one split, computed once and saved as
    ``<run_dir>/predictions-<split>.json``.

    Saved predictions are reused only when their ``meta`` names the same run, split, checkpoint, data folder
    and mask threshold and they are newer than the weights; otherwise (or with ``recompute``) the run's
    model predicts again and the file is replaced. Both ``bonetumor evaluate`` and the notebooks use this."""
    import sys

    from bonetumor.train import device_for, load_model

    run_dir = Path(run_dir)
    pred_file = run_dir / f"predictions-{split}.json"
    wanted = {"run": run_dir.name, "split": split, "checkpoint": which, "data": str(settings.data_path),
              "mask_threshold": mask_threshold}
    if pred_file.is_file() and not recompute:
        saved, meta = load_predictions(pred_file)
        stale = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
        weights = [run_dir / name for name in (("model.safetensors", "best.pt") if which == "best" else (f"{which}.pt",))]
        if any(w.is_file() and w.stat().st_mtime > pred_file.stat().st_mtime for w in weights):
            stale["weights"] = "newer than the predictions"
        if not stale:
            print(f"bonetumor: using saved predictions {pred_file} (--recompute to predict again)", file=sys.stderr)
            return saved, pred_file
        print(f"bonetumor: saved predictions {pred_file} were made with other settings {stale}; predicting again",
              file=sys.stderr)
    device = device_for(device)
    model, _ = load_model(run_dir, which=which, device=device)
    preds = predict(model, dataset, device, mask_threshold=mask_threshold)
    save_predictions(preds, pred_file, {"settings": settings.tag(), **wanted})
    return preds, pred_file


def threshold_from_validation(run_dir: Path, settings, val_records, val_dataset, which: str = "best",
                              device=None) -> dict:
    """:func:`choose_score_threshold` on the run's (saved) predictions for the validation split, also written
    to ``<run_dir>/score_threshold.json`` for ``bonetumor predict``."""
    from bonetumor.io import write_json

    preds, _ = cached_predictions(run_dir, settings, "val", val_dataset, which=which,
                                  mask_threshold=settings.evaluate.mask_threshold, device=device)
    chosen = choose_score_threshold(preds, val_records, fallback=settings.evaluate.score_threshold)
    write_json(Path(run_dir) / "score_threshold.json", {**chosen, "checkpoint": which})
    return chosen


def cli_evaluate(args, load_split: Callable | None = None) -> int:
    """Handler of ``bonetumor evaluate``: predictions of ``RUN`` on ``--split`` (loaded from
    ``RUN/predictions-<split>.json`` when present, else predicted with the run's model and saved there),
    then :func:`evaluate_predictions`; writes ``RUN/metrics-<split>.json`` and prints the metrics. Saved
    predictions are reused as :func:`cached_predictions` says.

    ``load_split(settings, split) -> (records, dataset)`` gives the split's records (in the frame the model
    saw) and its evaluation Dataset (no augmentation); default :func:`_split_loader`, the pipeline's split —
    the very split the run was trained with."""
    import sys

    from bonetumor import config
    from bonetumor.io import write_json

    run_dir = resolve_run(args.run)
    settings = config.Settings.model_validate(json.loads((run_dir / "run.json").read_text())["settings"])
    if args.data:
        data = settings.data.model_copy(update={"source": "btxrd", "path": Path(args.data).expanduser().resolve()})
        settings = settings.model_copy(update={"data": data})
    overrides = {k: v for k, v in {"score_threshold": args.score_threshold, "bootstrap": args.bootstrap,
                                   "refine_masks": True if args.refine else None}.items() if v is not None}
    eval_settings = settings.evaluate.model_copy(update=overrides)

    load_split = load_split or _split_loader(settings)
    records, dataset = load_split(settings, args.split)
    threshold = None
    if args.score_threshold is None and settings.evaluate.threshold_from == "val":
        try:
            val_records, val_dataset = load_split(settings, "val")
        except ValueError as exc:  # no validation images: the settings' threshold stays
            print(f"bonetumor: {exc}; score threshold {eval_settings.score_threshold} from the settings",
                  file=sys.stderr)
        else:
            threshold = threshold_from_validation(run_dir, settings, val_records, val_dataset, which=args.which,
                                                  device=args.device)
            eval_settings = eval_settings.model_copy(update={"score_threshold": threshold["value"]})

    preds, pred_file = cached_predictions(run_dir, settings, args.split, dataset, which=args.which,
                                          mask_threshold=eval_settings.mask_threshold, device=args.device,
                                          recompute=args.recompute)

    result = evaluate_predictions(preds, records, eval_settings, seed=settings.seed if args.seed is None else args.seed)
    result["meta"] = {"settings": settings.tag(), "run": run_dir.name, "split": args.split,
                      "predictions": str(pred_file), "threshold_selection": threshold}
    out = Path(args.out) if args.out else run_dir / f"metrics-{args.split}.json"
    write_json(out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"# {settings.tag()} — run {run_dir.name}, split {args.split}")
        print(metrics_table(result).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"(written to {out})")
    return 0
