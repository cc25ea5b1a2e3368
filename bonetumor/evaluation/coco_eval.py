"""COCO AP (pycocotools ``COCOeval``, ``bbox`` and ``segm``) of saved predictions, overall and per class.

Images without lesions are part of the evaluated image set, so a false positive on a normal radiograph
lowers AP. Undefined cases are decided, never a crash: *no ground-truth lesion* (overall, or of one class)
→ AP is **NaN** (there is nothing to find; COCOeval's ``-1``); *lesions present but the model predicts
nothing* → AP is **0.0** (every lesion missed)."""

from __future__ import annotations

import contextlib
import copy
import io
import math
from typing import Mapping, Sequence

from bonetumor import ID_TO_LABEL
from bonetumor.data.coco import CATEGORIES, coco_ground_truth
from bonetumor.evaluation.predictions import aligned_pairs


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

    pairs = aligned_pairs(preds, records)
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

