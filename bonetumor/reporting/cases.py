"""The test cases notebook 06 draws, chosen from the saved predictions by stated rules (never picked by eye),
with what Figures 4 and 5 draw of them: the image, the union of the kept detections' masks, the union of the
ground-truth lesions' masks, and the kept detections best first.

A detection is *kept* when its score reaches the evaluation's score threshold
(:func:`bonetumor.evaluation.kept_detections`), as in every thresholded metric.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from bonetumor import ID_TO_LABEL
from bonetumor.data.dataset import rasterise_lesion
from bonetumor.evaluation import decode_mask, kept_detections
from bonetumor.preprocess import preprocess_radiograph, read_grayscale

RULE_KEPT = "first test tumour image with a kept detection"
RULE_NONE_KEPT = "first test tumour image: no test tumour image has a kept detection"


def ranked_detections(pred: Mapping, score_threshold: float) -> list[int]:
    """Indices of the kept detections of one prediction, highest score first."""
    keep = set(kept_detections(pred, score_threshold))
    return [int(i) for i in np.argsort(pred["scores"])[::-1] if int(i) in keep]


def truth_mask(record: Mapping) -> np.ndarray:
    """The union of the record's lesion masks (the training target's rasteriser) in the record's frame."""
    mask = np.zeros((record["height"], record["width"]), bool)
    for lesion in record["lesions"]:
        mask |= rasterise_lesion(lesion, record["height"], record["width"]).astype(bool)
    return mask


def predicted_mask(pred: Mapping, score_threshold: float, shape: tuple[int, int]) -> np.ndarray:
    """The union of the kept detections' masks (``shape``: the frame of the image the model saw)."""
    mask = np.zeros(shape, bool)
    for i in ranked_detections(pred, score_threshold):
        mask |= decode_mask(pred["masks"][i]).astype(bool)
    return mask


def _by_id(records: Sequence[Mapping]) -> dict:
    return {r["image_id"]: r for r in records}


def detection_choice(predictions: Sequence[Mapping], records: Sequence[Mapping],
                     score_threshold: float) -> tuple[Mapping, str]:
    """Figure 4's case and the rule that chose it: the first tumour image (in the predictions' order) with a
    kept detection, else the first tumour image."""
    by_id = _by_id(records)
    tumour = [p for p in predictions if by_id[p["image_id"]]["label"] != "normal"]
    if not tumour:
        raise ValueError("no tumour image among the predictions")
    chosen = next((p for p in tumour if ranked_detections(p, score_threshold)), tumour[0])
    return chosen, RULE_KEPT if ranked_detections(chosen, score_threshold) else RULE_NONE_KEPT


def detection_example(predictions: Sequence[Mapping], records: Sequence[Mapping], score_threshold: float) -> dict:
    """Everything Figure 4 draws (:func:`bonetumor.reporting.figures.figure4`): ``record``, ``prediction``,
    ``rule`` (see :func:`detection_choice`), ``image`` (what the model saw), ``preprocessed`` (the paper's
    pre-processing of it), ``predicted_mask`` and ``truth_mask``."""
    chosen, rule = detection_choice(predictions, records, score_threshold)
    record = _by_id(records)[chosen["image_id"]]
    image = read_grayscale(record["file"])
    return {"record": record, "prediction": chosen, "rule": rule, "image": image,
            "preprocessed": preprocess_radiograph(image),
            "predicted_mask": predicted_mask(chosen, score_threshold, image.shape),
            "truth_mask": truth_mask(record)}


def detections(pred: Mapping, score_threshold: float, at_most: int = 3) -> list[dict]:
    """The best ``at_most`` kept detections as ``{"box", "label", "score", "mask"}`` (label a class name)."""
    return [{"box": pred["boxes"][i], "label": ID_TO_LABEL[pred["labels"][i]], "score": pred["scores"][i],
             "mask": decode_mask(pred["masks"][i])} for i in ranked_detections(pred, score_threshold)[:at_most]]


def verdict(dets: Sequence[Mapping]) -> str:
    """What the image is classified as from its kept detections (the best one decides)."""
    return f"predicted {dets[0]['label']} ({dets[0]['score']:.2f})" if dets else "predicted normal"


def classification_examples(predictions: Sequence[Mapping], records: Sequence[Mapping], score_threshold: float,
                            labels: Sequence[str] = ("benign", "malignant")) -> list[dict]:
    """Figure 5's cases (:func:`bonetumor.reporting.figures.figure5`): the first test image of each class in
    ``labels`` that has one, with ``image``, ``truth``, ``detections`` (best three kept) and ``title``."""
    by_id = _by_id(records)
    cases = []
    for label in labels:
        pred = next((p for p in predictions if by_id[p["image_id"]]["label"] == label), None)
        if pred is None:
            continue
        rec = by_id[pred["image_id"]]
        dets = detections(pred, score_threshold)
        cases.append({"image": read_grayscale(rec["file"]), "truth": label, "detections": dets,
                      "title": f"{rec['name']}: truth {label} ({rec['subtype']}); {verdict(dets)}"})
    return cases
