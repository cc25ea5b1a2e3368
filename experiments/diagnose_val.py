"""Validation-split diagnosis of a training run for the recipe log (never the test split).

Predicts the validation split (``--split train``: the training images, to see whether a run fits what it
saw) with the box score threshold lowered to ``--score-floor`` (torchvision's default 0.05 hides every
detection of an under-confident model, so its AP50 reads 0 even when the ranking carries signal) and
prints box AP50 and the tumour-vs-normal ROC AUC of the top detection score.

    python experiments/diagnose_val.py RUN [--which best] [--score-floor 0.001] [--device cpu] [--split train]
"""

import argparse
import json

import numpy as np
from sklearn.metrics import roc_auc_score

from bonetumor import pipeline
from bonetumor.data.dataset import BoneTumourDataset
from bonetumor.engine.inference import predict
from bonetumor.evaluation import coco_metrics
from bonetumor.modeling.checkpoints import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--which", default="best")
    parser.add_argument("--score-floor", type=float, default=0.001)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--split", default="val", choices=["val", "train"], help="never the test split")
    args = parser.parse_args()

    model, run = load_model(args.run, which=args.which, device=args.device)
    settings = run["settings_object"]
    prepared = pipeline.prepare(settings, progress=False)
    records = prepared.splits[args.split]
    model.roi_heads.score_thresh = args.score_floor
    preds = predict(model, BoneTumourDataset(records, train=False), device=args.device,
                    mask_threshold=settings.evaluate.mask_threshold)
    coco = coco_metrics(preds, records)
    top = np.array([max([float(s) for s in p["scores"]], default=0.0) for p in preds])
    tumour = np.array([r["label"] != "normal" for r in records])
    print(json.dumps({"run": args.run, "which": args.which, "score_floor": args.score_floor,
                      "split": args.split, "images": len(records), "box_ap50": coco["bbox"]["AP50"],
                      "mask_ap50": coco["segm"]["AP50"], "tumour_auc": float(roc_auc_score(tumour, top)),
                      "median_top_score": float(np.median(top))}))


if __name__ == "__main__":
    main()
