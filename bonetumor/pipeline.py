"""The steps the notebooks and the CLI share, each done once and reused: the dataset (phantom generated
when missing), its records and splits, the trained run, the saved predictions and metrics.

Expensive results are written under ``runs/<profile>-<source>-<settings fingerprint>/`` and read back by
later steps, so that re-drawing a figure never retrains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bonetumor import paths
from bonetumor.config import Settings
from bonetumor.io import write_json


@dataclass
class Prepared:
    """A dataset read, resized to the model's size, grouped into pseudo-patients and split."""

    root: Path
    records: list[dict]
    problems: list
    duplicates: list[tuple[int, int]]
    splits: dict[str, list[dict]] = field(default_factory=dict)


def ensure_dataset(settings: Settings, progress: bool = True) -> Path:
    """The dataset folder of ``settings``; the phantom is generated there first if it is not complete."""
    root = settings.data_path
    if settings.data.source == "btxrd":
        if not root.exists():
            raise FileNotFoundError(f"BTXRD folder {root} does not exist (download it: bonetumor data download btxrd)")
        return root
    if not (root / "dataset.xlsx").is_file():
        from bonetumor.data import phantom

        phantom.generate(root, n_images=settings.data.phantom_images, seed=settings.seed,
                         size=settings.data.phantom_size, progress=progress)
    return root


def prepare(settings: Settings, progress: bool = True) -> Prepared:
    """Read the dataset (BTXRD reader, also for the phantom), resize it once into the cache, assign
    pseudo-patients, find near-duplicates and split (grouped 70/10/20 or held-out centre)."""
    from bonetumor.data import btxrd, splits

    root = ensure_dataset(settings, progress=progress)
    records, problems = btxrd.read_dataset(root)
    records = splits.assign_pseudo_patients(records)
    records = btxrd.resize_records(records, settings.data.image_size, progress=progress)
    duplicates = splits.find_near_duplicates(records)
    if settings.data.split_kind == "centre":
        split = splits.centre_split(records, val_fraction=settings.data.val_fraction, seed=settings.seed,
                                    duplicates=duplicates)
    else:
        fractions = (settings.data.train_fraction, settings.data.val_fraction, settings.data.test_fraction)
        split = splits.grouped_split(records, fractions, seed=settings.seed, duplicates=duplicates)
    return Prepared(root, records, problems, duplicates, split)


def run_dir(settings: Settings) -> Path:
    return paths.run_dir(settings.run_name)


def normalisation(records: list[dict]) -> tuple[list[float], list[float]]:
    """Grey-level mean and std of the training images: the model's input normalisation."""
    from bonetumor.preprocess import radiograph_stats

    stats = radiograph_stats(r["file"] for r in records)
    return [stats["mean"]], [stats["std"]]


def training_data(settings: Settings, prepared: Prepared | None = None):
    """``(train_dataset, val_dataset or None, image_mean, image_std)`` for :func:`bonetumor.train.train`."""
    from bonetumor.data.dataset import BoneTumourDataset

    prepared = prepared or prepare(settings)
    train_records, val_records = prepared.splits["train"], prepared.splits["val"]
    if not train_records:
        raise ValueError(f"the training split of {prepared.root} is empty")
    mean, std = normalisation(train_records)
    train_set = BoneTumourDataset(train_records, train=True, augment=settings.train.augment)
    val_set = BoneTumourDataset(val_records, train=False) if val_records else None
    return train_set, val_set, mean, std


def validation_metrics(settings: Settings):
    """The per-epoch validation callback: box AP50 (``val_ap50``, which picks the best epoch) and mask AP50."""
    from bonetumor import evaluate

    def metrics(model, loader) -> dict:
        preds = evaluate.predict(model, loader, device=next(model.parameters()).device,
                                 mask_threshold=settings.evaluate.mask_threshold)
        coco = evaluate.coco_metrics(preds, loader.dataset.records)
        return {"val_ap50": coco["bbox"]["AP50"], "val_mask_ap50": coco["segm"]["AP50"]}

    return metrics


def ensure_trained(settings: Settings, prepared: Prepared | None = None, progress=None, device=None) -> Path:
    """The run folder of ``settings``, trained first if it is not complete (a killed run is resumed). The
    folder's name carries a fingerprint of the settings (:attr:`Settings.run_name`), and
    :func:`bonetumor.train.train` refuses a checkpoint whose settings differ."""
    from bonetumor import train

    folder = run_dir(settings)
    info = folder / "run.json"
    if info.is_file() and json.loads(info.read_text()).get("status") == "complete":
        return folder
    train_set, val_set, mean, std = training_data(settings, prepared)
    train.train(settings, train_set, val_set, folder, mean, std, resume=True, device=device, progress=progress,
                val_metrics_fn=validation_metrics(settings))
    return folder


def ensure_predictions(settings: Settings, split: str = "test", prepared: Prepared | None = None,
                       device=None) -> Path:
    """``runs/<run>/predictions-<split>.json``: the best model's predictions on one split, computed once
    (see :func:`bonetumor.evaluate.cached_predictions`, which ``bonetumor evaluate`` uses too)."""
    from bonetumor import evaluate
    from bonetumor.data.dataset import BoneTumourDataset

    folder = ensure_trained(settings, prepared, device=device)
    prepared = prepared or prepare(settings)
    dataset = BoneTumourDataset(prepared.splits[split], train=False)
    _, path = evaluate.cached_predictions(folder, settings, split, dataset, which="best",
                                          mask_threshold=settings.evaluate.mask_threshold, device=device)
    return path


def ensure_metrics(settings: Settings, split: str = "test", prepared: Prepared | None = None) -> dict:
    """All metrics of one split from the saved predictions (``runs/<run>/metrics-<split>.json``). With
    ``evaluate.threshold_from: val`` the detection score threshold is first chosen on the validation split
    (:func:`bonetumor.evaluate.choose_score_threshold`)."""
    from bonetumor import evaluate
    from bonetumor.data.dataset import BoneTumourDataset

    prepared = prepared or prepare(settings)
    predictions = ensure_predictions(settings, split, prepared)
    target = predictions.with_name(f"metrics-{split}.json")
    if target.is_file() and target.stat().st_mtime >= predictions.stat().st_mtime:
        saved = json.loads(target.read_text())
        if saved.get("evaluate_settings") == settings.evaluate.model_dump(mode="json"):
            return saved
    preds, _ = evaluate.load_predictions(predictions)
    eval_settings, threshold = settings.evaluate, None
    if settings.evaluate.threshold_from == "val" and prepared.splits.get("val"):
        val = prepared.splits["val"]
        threshold = evaluate.threshold_from_validation(run_dir(settings), settings, val,
                                                       BoneTumourDataset(val, train=False))
        eval_settings = eval_settings.model_copy(update={"score_threshold": threshold["value"]})
    result = evaluate.evaluate_predictions(preds, prepared.splits[split], eval_settings, seed=settings.seed)
    result["threshold_selection"] = threshold
    result["description"] = settings.tag()
    result["evaluate_settings"] = settings.evaluate.model_dump(mode="json")
    write_json(target, result)
    return result
