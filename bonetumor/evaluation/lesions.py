"""Lesion level: greedy one-to-one matching of detections to ground-truth lesions, lesion precision /
recall / F1, mask Dice and IoU of matched lesions, and the effect of mask refinement on them.

Detections below ``score_threshold`` are dropped; the rest are matched greedily, in order of decreasing
score, each to the still-unmatched lesion of highest IoU (box IoU by default). Class-aware (a match needs
the same class) and class-agnostic variants. Precision is NaN when nothing was detected, recall NaN when
there is no lesion."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from bonetumor import LABEL_TO_ID
from bonetumor.evaluation.masks import dice, mask_iou, refine_mask
from bonetumor.data.coco import decode_mask, lesion_box, lesion_rle
from bonetumor.evaluation.predictions import aligned_pairs, kept_detections


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


def _kept_detections(pred: Mapping, keep: list[int], refine_kwargs: Mapping | None):
    """``(boxes, scores, labels, masks or None)`` of the kept detections of one prediction; masks decoded
    (and refined when ``refine_kwargs`` is not None) only when every detection carries one."""
    boxes = np.asarray([pred["boxes"][i] for i in keep], float).reshape(-1, 4)
    scores = np.asarray([pred["scores"][i] for i in keep], float)
    labels = np.asarray([pred["labels"][i] for i in keep], int)
    has_masks = len(pred.get("masks") or []) == len(pred["scores"]) and (pred.get("masks") is not None)
    masks = [decode_mask(pred["masks"][i]) for i in keep] if has_masks else None
    if masks is not None and refine_kwargs is not None:
        masks = [refine_mask(m, **refine_kwargs) for m in masks]
    return boxes, scores, labels, masks


def _ground_truth_lesions(record: Mapping, need_masks: bool):
    """``(rles, boxes, labels, masks or None)`` of one record's lesions in its own frame: the evaluation's
    ground truth (:mod:`bonetumor.data.coco`)."""
    h, w = int(record["height"]), int(record["width"])
    lesions = record.get("lesions", [])
    rles = [lesion_rle(les, h, w) for les in lesions]
    boxes = np.asarray([lesion_box(rle) for rle in rles], float).reshape(-1, 4)
    labels = np.asarray([LABEL_TO_ID[les["category"]] for les in lesions], int)
    masks = [decode_mask(rle) for rle in rles] if need_masks else None
    return rles, boxes, labels, masks


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
    for record, pred in aligned_pairs(preds, records):
        keep = kept_detections(pred, score_threshold)
        boxes, scores, labels, pmasks = _kept_detections(pred, keep, refine_kwargs)
        n_lesions = len(record.get("lesions", []))
        _, gboxes, glabels, gmasks = _ground_truth_lesions(record, pmasks is not None or match_on == "segm")
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
            c[2] += n_lesions - len(matches)
            if not aware and pmasks is not None:
                matched_gt = {}
                for i, j, _ in matches:
                    d = dice(pmasks[i], gmasks[j])
                    dices.append(d)
                    ious.append(mask_iou(pmasks[i], gmasks[j]))
                    matched_gt[j] = d
                per_lesion.extend(matched_gt.get(j, 0.0) for j in range(n_lesions))
    out = {variant: _prf(*c) for variant, c in counts.items()}
    out.update({
        "match_on": match_on, "iou_threshold": iou_threshold, "score_threshold": score_threshold,
        "dice_matched": float(np.mean(dices)) if dices else math.nan,
        "iou_matched": float(np.mean(ious)) if ious else math.nan,
        "dice_per_lesion": float(np.mean(per_lesion)) if per_lesion else math.nan,
        "n_matched": len(dices),
    })
    return out


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

