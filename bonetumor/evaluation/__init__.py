"""Evaluation of a trained detector on a held-out split: pure functions of saved predictions and the
records of the evaluated split. Nothing here runs a model, trains, or reads run folders — inference is
:mod:`bonetumor.engine.inference`, the run-level caching is :mod:`bonetumor.pipeline`.

Modules: :mod:`.predictions` (prediction files, RLE masks, pairing with records, kept detections),
:mod:`.coco_eval` (COCO AP), :mod:`.lesions` (lesion matching, P/R/F1, Dice), :mod:`.masks` (mask overlap and
refinement), :mod:`.classification` (image-level metrics, the validation threshold), :mod:`.bootstrap`
(patient-bootstrap CIs), :mod:`.metrics` (everything of one split together, and its long table).
"""

from bonetumor.evaluation.bootstrap import bootstrap_ci
from bonetumor.evaluation.classification import (
    NORMAL, TUMOUR, benign_vs_malignant, choose_score_threshold, confusion, image_table, tumour_vs_normal,
)
from bonetumor.evaluation.coco_eval import coco_metrics
from bonetumor.evaluation.lesions import box_iou, greedy_match, lesion_metrics, refinement_effect
from bonetumor.evaluation.masks import dice, mask_iou, refine_mask, refined_predictions
from bonetumor.evaluation.metrics import evaluate_image_classifier, evaluate_predictions, metrics_table
from bonetumor.data.coco import decode_mask, encode_mask
from bonetumor.evaluation.predictions import (
    PREDICTIONS_FORMAT, aligned_pairs, kept_detections, load_predictions, save_predictions,
)

__all__ = [
    "NORMAL", "PREDICTIONS_FORMAT", "TUMOUR", "aligned_pairs", "benign_vs_malignant", "bootstrap_ci", "box_iou",
    "choose_score_threshold", "coco_metrics", "confusion", "decode_mask", "dice", "encode_mask",
    "evaluate_image_classifier", "evaluate_predictions", "greedy_match", "image_table", "kept_detections", "lesion_metrics", "load_predictions",
    "mask_iou", "metrics_table", "refine_mask", "refined_predictions", "refinement_effect", "save_predictions",
    "tumour_vs_normal",
]
