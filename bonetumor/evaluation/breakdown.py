"""Where the detector succeeds and fails: every ground-truth lesion found or missed
(:func:`lesion_outcomes`), lesion recall by size (COCO small / medium / large, and by fraction of the image
side), by subtype and by centre, and image-level metrics per centre (:func:`per_centre`).

A lesion is *found* when a kept detection (score ≥ ``score_threshold``) matches it class-agnostically at box
IoU ≥ ``iou_threshold``, with the greedy matching of :func:`bonetumor.evaluation.lesions.lesion_metrics`, so
the found lesions here are exactly its class-agnostic true positives."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bonetumor.data.coco import lesion_box, lesion_rle
from bonetumor.evaluation.classification import THREE_CLASSES, three_class, tumour_vs_normal
from bonetumor.evaluation.lesions import box_iou, greedy_match
from bonetumor.evaluation.predictions import aligned_pairs, kept_detections

#: COCO's area ranges (pixels of the image the model saw): small < 32², medium < 96², large ≥ 96².
COCO_SMALL, COCO_MEDIUM = 32 ** 2, 96 ** 2
#: Lesion size as its box's longer side over the image's longer side; bins' upper edges and labels.
SIDE_FRACTION_EDGES = (0.05, 0.10, 0.20, 0.35)
SIDE_FRACTION_LABELS = ("<5%", "5-10%", "10-20%", "20-35%", ">=35%")
LESION_COLUMNS = ["image_id", "centre", "category", "subtype", "area", "coco_size", "side_fraction", "size_bin",
                  "found"]


def coco_size(area: float) -> str:
    return "small" if area < COCO_SMALL else "medium" if area < COCO_MEDIUM else "large"


def size_bin(side_fraction: float) -> str:
    return SIDE_FRACTION_LABELS[int(np.searchsorted(SIDE_FRACTION_EDGES, side_fraction, side="right"))]


def lesion_outcomes(preds: Sequence[Mapping], records: Sequence[Mapping], score_threshold: float = 0.5,
                    iou_threshold: float = 0.5) -> pd.DataFrame:
    """One row per ground-truth lesion (columns :data:`LESION_COLUMNS`): its image, centre, class, subtype,
    mask area (pixels of the prediction's frame), COCO size, side fraction and its bin, and ``found``."""
    from pycocotools import mask as mask_utils

    rows = []
    for record, pred in aligned_pairs(preds, records):
        h, w = int(record["height"]), int(record["width"])
        keep = kept_detections(pred, score_threshold)
        boxes = np.asarray([pred["boxes"][i] for i in keep], float).reshape(-1, 4)
        scores = np.asarray([pred["scores"][i] for i in keep], float)
        lesions = record.get("lesions", [])
        rles = [lesion_rle(les, h, w) for les in lesions]
        gboxes = np.asarray([lesion_box(rle) for rle in rles], float).reshape(-1, 4)
        found = {j for _, j, _ in greedy_match(boxes, scores, gboxes, iou_threshold, iou=box_iou(boxes, gboxes))}
        for j, (lesion, rle) in enumerate(zip(lesions, rles)):
            x0, y0, x1, y1 = gboxes[j]
            fraction = max(x1 - x0, y1 - y0) / max(w, h)
            area = float(mask_utils.area(rle))
            rows.append({"image_id": int(record["image_id"]), "centre": record.get("centre"),
                         "category": lesion["category"], "subtype": lesion.get("subtype") or record.get("subtype"),
                         "area": area, "coco_size": coco_size(area), "side_fraction": float(fraction),
                         "size_bin": size_bin(fraction), "found": j in found})
    return pd.DataFrame(rows, columns=LESION_COLUMNS)


def recall_by(lesions: pd.DataFrame, column: str, order: Sequence | None = None) -> list[dict]:
    """Lesion recall per value of ``column`` of :func:`lesion_outcomes`: ``[{"group", "lesions", "found",
    "recall"}]`` in ``order`` (default: sorted, a missing value last as ``"unknown"``), groups without a
    lesion left out, so that every lesion is counted in exactly one group."""
    values = lesions[column].astype(object).where(lesions[column].notna(), "unknown")
    if order is None:
        known = sorted((v for v in values.unique() if v != "unknown"), key=str)
        order = known + (["unknown"] if (values == "unknown").any() else [])
    out = []
    for g in order:
        sel = lesions[(values == g).to_numpy()]
        if len(sel):
            out.append({"group": g.item() if isinstance(g, np.generic) else g, "lesions": int(len(sel)),
                        "found": int(sel["found"].sum()), "recall": float(sel["found"].mean())})
    return out


def lesion_breakdown(lesions: pd.DataFrame) -> dict:
    """Lesion recall by COCO size, by fraction of the image side, by subtype and by centre."""
    return {"coco_size": recall_by(lesions, "coco_size", ("small", "medium", "large")),
            "side_fraction": recall_by(lesions, "size_bin", SIDE_FRACTION_LABELS),
            "subtype": recall_by(lesions, "subtype"),
            "centre": recall_by(lesions, "centre")}


def per_centre(table: pd.DataFrame, lesions: pd.DataFrame) -> list[dict]:
    """Image-level metrics of each centre (column ``centre`` of the image table): images, each class's count,
    tumour-vs-normal accuracy and AUC, balanced accuracy, malignant recall, lesion recall."""
    out = []
    for centre in sorted(table["centre"].dropna().unique(), key=str):
        t = table[table["centre"] == centre]
        les = lesions[lesions["centre"] == centre]
        tvn, three = tumour_vs_normal(t), three_class(t)
        row = {"centre": centre.item() if isinstance(centre, np.generic) else centre, "images": int(len(t))}
        row.update({cls: int((t["truth"] == cls).sum()) for cls in THREE_CLASSES})
        row.update({"tumour_accuracy": tvn["accuracy"], "tumour_auc": tvn["auc"],
                    "balanced_accuracy": three["balanced_accuracy"], "malignant_recall": three["malignant_recall"],
                    "lesion_recall": float(les["found"].mean()) if len(les) else math.nan})
        out.append(row)
    return out
