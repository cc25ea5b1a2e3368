"""The paper's choices ablated: each an extra training run of the detector with one thing changed and
everything else equal, compared with a reference run on the same schedule (notebook 07).

* ``roi_max_pool`` — RoI max pooling (the paper's equation 8) instead of RoIAlign;
* ``preprocessed_input`` — the paper's image preprocessing (Figure 4b) as the model's input instead of the raw
  radiograph (``data.preprocess``);
* ``imagenet_init`` — random instead of ImageNet initialisation; only where the reference really started
  from ImageNet weights (the ``full`` profile with the weights at hand);
* ``random_split`` — the leaky split by image, as most published BTXRD results split, instead of by
  pseudo-patient: the same recipe trained and tested on other images, so its difference is unpaired.

Runs are cached like every detector run (settings fingerprint), so redrawing never retrains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from bonetumor import pipeline
from bonetumor.config import Settings, merge_overrides

#: What each ablation changes, in words, and the settings it changes.
ABLATIONS = {
    "roi_max_pool": ("RoI max pooling (eq. 8) instead of RoIAlign", {"model": {"roi_op": "pool"}}),
    "preprocessed_input": ("Figure 4b preprocessing as input instead of the raw radiograph",
                           {"data": {"preprocess": True}}),
    "imagenet_init": ("random instead of ImageNet initialisation", {"model": {"pretrained": False}}),
    "random_split": ("leaky split by image instead of by pseudo-patient", {"data": {"split_kind": "random"}}),
}


@dataclass
class DetectorResult:
    """One detector run scored on its test split: the settings, the metrics (``ensure_metrics``'s schema) and
    the per-image table (:func:`bonetumor.evaluation.classification.image_table` at the run's threshold)."""

    settings: Settings
    metrics: dict
    images: pd.DataFrame


def _with(settings: Settings, overrides: dict) -> Settings:
    merged = merge_overrides(settings.model_dump(mode="json"), overrides)
    return Settings.model_validate(merged)


def reference_settings(settings: Settings) -> Settings:
    """The run every ablation is compared with: the profile's own, on ``ablations.epochs`` when set."""
    epochs = settings.ablations.epochs or settings.train.epochs
    return _with(settings, {"train": {"epochs": epochs}})


def reduced_schedule(settings: Settings) -> bool:
    return reference_settings(settings).train.epochs < settings.train.epochs


def ablated_settings(settings: Settings, name: str) -> Settings:
    """The reference's settings with ablation ``name``'s one change."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; choose from {', '.join(ABLATIONS)}")
    return _with(reference_settings(settings), ABLATIONS[name][1])


def detector_result(settings: Settings, prepared: pipeline.Prepared | None = None, device=None) -> DetectorResult:
    """Train (when needed) and score the detector of ``settings`` on its test split."""
    from bonetumor.evaluation import image_table, load_predictions

    prepared = prepared or pipeline.prepare(settings, progress=False)
    metrics = pipeline.ensure_metrics(settings, "test", prepared, device=device)
    preds, _ = load_predictions(metrics["meta"]["predictions"])
    table = image_table(preds, prepared.split("test"), metrics["settings"]["score_threshold"])
    return DetectorResult(settings, metrics, table)


def _prepared_for(settings: Settings, base: pipeline.Prepared) -> pipeline.Prepared:
    """``base``'s records re-split for ``settings`` (same images), or read again when the input differs."""
    if settings.data.preprocess:
        return pipeline.prepare(settings, progress=False)
    return pipeline.Prepared(base.root, base.records, base.problems, base.duplicates,
                             pipeline.split_records(settings, base.records, base.duplicates))


def why_not(settings: Settings, name: str, reference: DetectorResult | None = None) -> str | None:
    """Why ablation ``name`` cannot be measured for ``settings`` (``None`` when it can)."""
    if name != "imagenet_init":
        return None
    if not settings.model.pretrained:
        return "the reference already starts from random initialisation (model.pretrained is false)"
    if settings.model.width != 1:
        return f"no ImageNet weights exist at width {settings.model.width:g}"
    if reference is not None:
        run = pipeline.run_dir(reference.settings) / "run.json"
        if run.is_file() and json.loads(run.read_text()).get("init") != "imagenet":
            return "ImageNet weights were not available where the reference was trained"
    return None


def ensure_ablation(settings: Settings, name: str, base: pipeline.Prepared, reference: DetectorResult,
                    device=None) -> DetectorResult | None:
    """Ablation ``name``'s run scored on its test split, trained first when needed; ``None`` when it
    cannot be measured here (:func:`why_not`)."""
    if why_not(settings, name, reference) is not None:
        return None
    ablated = ablated_settings(settings, name)
    return detector_result(ablated, _prepared_for(ablated, base), device)


def paired(name: str) -> bool:
    """Whether the ablation is scored on the reference's own test images (all but the random split)."""
    return name != "random_split"
