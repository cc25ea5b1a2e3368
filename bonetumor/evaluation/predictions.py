"""Predictions as files: computed once by :func:`bonetumor.engine.inference.predict`, saved as JSON with a
``meta`` block, loaded back by every metric; masks as COCO RLE (:func:`~bonetumor.data.coco.encode_mask`). Also the two views of a prediction every
metric shares: its pairing with the records of the evaluated split, and the detections kept at a score
threshold."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence


from bonetumor.data.coco import record_in_frame

PREDICTIONS_FORMAT = "bonetumor-predictions/1"


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



def aligned_pairs(preds: Sequence[Mapping], records: Sequence[Mapping]) -> list[tuple[dict, dict]]:
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


def kept_detections(pred: Mapping, score_threshold: float) -> list[int]:
    """Indices of the detections of one prediction whose score is at least ``score_threshold``, in saved
    order: the detections every thresholded metric (and every figure) counts."""
    return [i for i, s in enumerate(pred["scores"]) if s >= score_threshold]

