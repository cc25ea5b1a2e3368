"""The only orchestrator: the steps the notebooks and the command line share, each done once and reused —
the dataset (phantom generated when missing), its records and splits, the trained run, the saved
predictions, the validation score threshold and the metrics of a split (one schema, one threshold rule).

Expensive results are written under ``runs/<profile>-<source>-<settings fingerprint>/`` and read back by
later steps, so that re-drawing a figure never retrains. Informational messages (a reused or stale file) go
to the ``bonetumor`` logger; the command line shows them, a notebook does not.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from bonetumor import paths
from bonetumor.config import EvalSettings, Settings
from bonetumor.io import write_json

log = logging.getLogger("bonetumor")

#: Bumped whenever evaluate_predictions gains or changes a metric, so an older metrics file is never reused.
METRICS_FORMAT = "bonetumor-metrics/2"


@dataclass
class Prepared:
    """A dataset read, resized to the model's size, grouped into pseudo-patients and split."""

    root: Path
    records: list[dict]
    problems: list
    duplicates: list[tuple[int, int]]
    splits: dict[str, list[dict]] = field(default_factory=dict)

    def split(self, name: str) -> list[dict]:
        """The records of one split; ``ValueError`` naming the dataset when it does not exist or is empty."""
        if name not in self.splits:
            raise ValueError(f"no split {name!r} (splits: {', '.join(self.splits)})")
        if not self.splits[name]:
            raise ValueError(f"the {name} split of {self.root} is empty")
        return self.splits[name]


# ---- data ----------------------------------------------------------------------------------------------

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
                         size=settings.data.phantom_size, progress=progress, version=settings.data.phantom_version)
    return root


def prepare(settings: Settings, progress: bool = True) -> Prepared:
    """Read the dataset (BTXRD reader, also for the phantom), resize it once into the cache, assign
    pseudo-patients, find near-duplicates, preprocess when ``data.preprocess`` asks (cached too) and split
    (grouped 70/10/20, held-out centre, or the leaky random split)."""
    from bonetumor.data import btxrd, patients

    root = ensure_dataset(settings, progress=progress)
    records, problems = btxrd.read_dataset(root)
    records = patients.assign_pseudo_patients(records)
    # an image that fails its one full decode becomes a problem of the dataset and is left out of every split
    records = btxrd.resize_records(records, settings.data.image_size, progress=progress, problems=problems)
    duplicates = patients.find_near_duplicates(records)
    if settings.data.preprocess:  # after the duplicate search, so both inputs give the same split
        from bonetumor.preprocess.cache import preprocessed_records

        records = preprocessed_records(records, progress=progress)
    return Prepared(root, records, problems, duplicates, split_records(settings, records, duplicates))


def split_records(settings: Settings, records: list[dict], duplicates) -> dict[str, list[dict]]:
    """The splits ``settings.data.split_kind`` asks for: grouped by pseudo-patient and duplicate group, the
    held-out centre (train on centre 1, test on the others), or the leaky split by image (``random``)."""
    from bonetumor.data import splits

    if settings.data.split_kind == "centre":
        return splits.centre_split(records, val_fraction=settings.data.val_fraction, seed=settings.seed,
                                   duplicates=duplicates)
    fractions = (settings.data.train_fraction, settings.data.val_fraction, settings.data.test_fraction)
    if settings.data.split_kind == "random":
        log.info("split_kind random splits by image: patients and duplicates leak across splits")
        return splits.random_split(records, fractions, seed=settings.seed)
    return splits.grouped_split(records, fractions, seed=settings.seed, duplicates=duplicates)


def evaluation_dataset(records: list[dict]):
    """The Dataset a split is predicted on: the records' resized images, no augmentation."""
    from bonetumor.data.dataset import BoneTumourDataset

    return BoneTumourDataset(records, train=False)


# ---- training ------------------------------------------------------------------------------------------

def run_dir(settings: Settings) -> Path:
    return paths.run_dir(settings.run_name)


def normalisation(records: list[dict]) -> tuple[list[float], list[float]]:
    """Grey-level mean and std of the training images: the model's input normalisation."""
    from bonetumor.preprocess import radiograph_stats

    stats = radiograph_stats(r["file"] for r in records)
    return [stats["mean"]], [stats["std"]]


def training_data(settings: Settings, prepared: Prepared | None = None, progress: bool = True):
    """``(train_dataset, val_dataset or None, image_mean, image_std)`` for :func:`bonetumor.engine.train`;
    ``progress``: bars while the data is written, resized or preprocessed (none for ``--no-progress``)."""
    from bonetumor.data.dataset import AUGMENT_STRENGTHS, BoneTumourDataset, LesionCentredCrop, PairedAugment

    prepared = prepared or prepare(settings, progress=progress)
    train_records, val_records = prepared.split("train"), prepared.splits["val"]
    mean, std = normalisation(train_records)
    crop = LesionCentredCrop(settings.train.crop_size) if settings.train.crop_size else None
    augment = PairedAugment(**AUGMENT_STRENGTHS[settings.train.augment_strength]) if settings.train.augment else False
    train_set = BoneTumourDataset(train_records, train=True, augment=augment, crop=crop)
    val_set = BoneTumourDataset(val_records, train=False) if val_records else None
    return train_set, val_set, mean, std


def validation_metrics(settings: Settings):
    """The per-epoch validation callback: box AP50 (``val_ap50``, which picks the best epoch) and mask AP50."""
    from bonetumor.engine.inference import predict
    from bonetumor.evaluation import coco_metrics

    def metrics(model, loader) -> dict:
        preds = predict(model, loader, device=next(model.parameters()).device,
                        mask_threshold=settings.evaluate.mask_threshold)
        coco = coco_metrics(preds, loader.dataset.records)
        return {"val_ap50": coco["bbox"]["AP50"], "val_mask_ap50": coco["segm"]["AP50"]}

    return metrics


def ensure_trained(settings: Settings, prepared: Prepared | None = None, progress=None, device=None) -> Path:
    """The run folder of ``settings``, trained first if it is not complete (a killed run is resumed). The
    folder's name carries a fingerprint of the settings (:attr:`Settings.run_name`), and
    :func:`bonetumor.engine.train` refuses a checkpoint whose settings differ."""
    from bonetumor.engine import train
    from bonetumor.modeling.checkpoints import read_run_json

    folder = run_dir(settings)
    info = folder / "run.json"
    if info.is_file() and read_run_json(info).get("status") == "complete":
        return folder
    train_set, val_set, mean, std = training_data(settings, prepared)
    train(settings, train_set, val_set, folder, mean, std, resume=True, device=device, progress=progress,
          val_metrics_fn=validation_metrics(settings))
    return folder


# ---- predictions, threshold, metrics ---------------------------------------------------------------------

def _stale_predictions(pred_file: Path, run: Path, wanted: Mapping, which: str) -> dict:
    """Why the saved predictions cannot be reused (empty when they can)."""
    from bonetumor.evaluation import load_predictions

    _, meta = load_predictions(pred_file)
    stale = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
    weights = [run / name for name in (("model.safetensors", "best.pt") if which == "best" else (f"{which}.pt",))]
    if any(w.is_file() and w.stat().st_mtime > pred_file.stat().st_mtime for w in weights):
        stale["weights"] = "newer than the predictions"
    return stale


def cached_predictions(run: Path, settings: Settings, split: str, records: list[dict], which: str = "best",
                       device=None, recompute: bool = False) -> tuple[list[dict], Path]:
    """The predictions of a trained run on one split, computed once and saved as
    ``<run>/predictions-<split>.json``.

    Saved predictions are reused only when their ``meta`` names the same run, split, checkpoint, data folder
    and mask threshold and they are newer than the weights; otherwise (or with ``recompute``) the run's
    model predicts again and the file is replaced."""
    from bonetumor.devices import device_for
    from bonetumor.engine.inference import predict
    from bonetumor.evaluation import load_predictions, save_predictions
    from bonetumor.modeling import checkpoints

    run = Path(run)
    pred_file = run / f"predictions-{split}.json"
    wanted = {"run": run.name, "split": split, "checkpoint": which, "data": str(settings.data_path),
              "mask_threshold": settings.evaluate.mask_threshold}
    if pred_file.is_file() and not recompute:
        stale = _stale_predictions(pred_file, run, wanted, which)
        if not stale:
            log.info("using saved predictions %s", pred_file)
            return load_predictions(pred_file)[0], pred_file
        log.info("saved predictions %s were made with other settings %s; predicting again", pred_file, stale)
    device = device_for(device)
    model, _ = checkpoints.load_model(run, which=which, device=device)
    preds = predict(model, evaluation_dataset(records), device, mask_threshold=settings.evaluate.mask_threshold)
    save_predictions(preds, pred_file, {"settings": settings.tag(), **wanted})
    return preds, pred_file


def validation_threshold(run: Path, settings: Settings, prepared: Prepared, which: str = "best",
                         device=None) -> dict | None:
    """The detection score threshold chosen on the validation split
    (:func:`bonetumor.evaluation.choose_score_threshold` on the run's saved validation predictions), also
    written to ``<run>/score_threshold.json`` for ``bonetumor predict``. ``None`` when the settings fix the
    threshold (``evaluate.threshold_from: settings``) or the validation split is empty: the settings'
    threshold then stays."""
    from bonetumor.evaluation import choose_score_threshold

    if settings.evaluate.threshold_from != "val":
        return None
    val = prepared.splits.get("val")
    if not val:
        log.info("the validation split of %s is empty; score threshold %s from the settings", prepared.root,
                 settings.evaluate.score_threshold)
        return None
    preds, _ = cached_predictions(run, settings, "val", val, which=which, device=device)
    chosen = choose_score_threshold(preds, val, fallback=settings.evaluate.score_threshold)
    write_json(Path(run) / "score_threshold.json", {**chosen, "checkpoint": which})
    return chosen


def score_threshold_for(run: Path, settings: Settings, which: str = "best", given: float | None = None) -> float:
    """The detection score threshold ``bonetumor predict`` uses: ``given``, else the one chosen on the
    validation split for this checkpoint (``<run>/score_threshold.json``, written by
    :func:`validation_threshold`), else the settings'. A malformed file is a ``ValueError`` naming it."""
    import math

    from bonetumor.modeling.checkpoints import read_run_json

    chosen = Path(run) / "score_threshold.json"
    if given is not None:
        return float(given)
    if not chosen.is_file():
        return float(settings.evaluate.score_threshold)
    how = "delete it (`bonetumor evaluate RUN` writes it again) or pass --score-threshold"
    try:
        saved = read_run_json(chosen)
        value = float(saved["value"])
    except (ValueError, KeyError, TypeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ValueError(f"{chosen}: not a score threshold file ({detail}); {how}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{chosen}: score threshold {value!r} is not a number between 0 and 1; {how}")
    if saved.get("checkpoint", which) != which:
        log.info("%s was chosen for the %r checkpoint, not %r; score threshold %s from the settings", chosen,
                 saved["checkpoint"], which, settings.evaluate.score_threshold)
        return float(settings.evaluate.score_threshold)
    return value


def ensure_predictions(settings: Settings, split: str = "test", prepared: Prepared | None = None,
                       device=None) -> Path:
    """``runs/<run>/predictions-<split>.json``: the best model's predictions on one split, trained and
    predicted first when needed (:func:`cached_predictions`)."""
    folder = ensure_trained(settings, prepared, device=device)
    prepared = prepared or prepare(settings)
    return cached_predictions(folder, settings, split, prepared.split(split), device=device)[1]


def _metrics_key(settings: Settings, eval_settings: EvalSettings, which: str, seed: int, pred_file: Path) -> dict:
    """What a saved metrics file must match to be reused."""
    return {"format": METRICS_FORMAT, "settings": settings.tag(), "checkpoint": which, "seed": seed,
            "predictions": str(pred_file), "evaluate_settings": eval_settings.model_dump(mode="json")}


def ensure_metrics(settings: Settings, split: str = "test", prepared: Prepared | None = None, *,
                   run: Path | None = None, which: str = "best", overrides: Mapping | None = None,
                   seed: int | None = None, device=None, recompute: bool = False, out: Path | None = None) -> dict:
    """Every metric of one split (:func:`bonetumor.evaluation.evaluate_predictions`), written to
    ``<run>/metrics-<split>.json`` (or ``out``) and reused while its settings, checkpoint, seed and
    predictions are unchanged. ``bonetumor evaluate`` and the notebooks both call this, so they write and
    reuse the same file.

    ``run``: a trained run folder (default: the run of ``settings``, trained first when needed).
    ``overrides``: fields of ``settings.evaluate`` to change (``score_threshold``, ``bootstrap``,
    ``refine_masks``); a given ``score_threshold`` is used as it is, otherwise the threshold is chosen on the
    validation split (:func:`validation_threshold`). ``seed``: the bootstrap's (default ``settings.seed``).

    The result has the keys of :func:`~bonetumor.evaluation.evaluate_predictions`, plus
    ``threshold_selection`` (the validation choice, or ``None``) and ``meta`` (format, settings, run, split,
    checkpoint, seed, predictions file, evaluation settings)."""
    from bonetumor.evaluation import evaluate_predictions

    prepared = prepared or prepare(settings, progress=False)
    run = Path(run) if run is not None else ensure_trained(settings, prepared, device=device)
    records = prepared.split(split)
    overrides = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    eval_settings = settings.evaluate.model_copy(update=overrides)
    threshold = None if "score_threshold" in overrides else validation_threshold(run, settings, prepared, which, device)
    if threshold is not None:
        eval_settings = eval_settings.model_copy(update={"score_threshold": threshold["value"]})
    preds, pred_file = cached_predictions(run, settings, split, records, which, device, recompute)
    seed = settings.seed if seed is None else int(seed)
    target = Path(out) if out is not None else run / f"metrics-{split}.json"
    key = {**_metrics_key(settings, eval_settings, which, seed, pred_file), "run": run.name, "split": split}
    if not recompute and target.is_file() and target.stat().st_mtime >= pred_file.stat().st_mtime:
        saved = json.loads(target.read_text())
        if saved.get("meta") == key:
            log.info("using saved metrics %s", target)
            return saved
    result = evaluate_predictions(preds, records, eval_settings, seed=seed)
    result["threshold_selection"] = threshold
    result["meta"] = key
    write_json(target, result)
    return result


# ---- the centre hold-out -----------------------------------------------------------------------------------

def centre_holdout_settings(settings: Settings) -> Settings:
    """``settings`` for the centre hold-out run: ``data.split_kind: centre`` and the schedule of
    ``centre_holdout.epochs`` (the profile's own when unset). Its fingerprint, hence its run folder, differs
    from the grouped run's."""
    epochs = settings.centre_holdout.epochs or settings.train.epochs
    return settings.model_copy(update={
        "data": settings.data.model_copy(update={"split_kind": "centre"}),
        "train": settings.train.model_copy(update={"epochs": epochs})})


def ensure_centre_holdout(settings: Settings, prepared: Prepared | None = None, device=None) -> dict | None:
    """The test metrics of the centre hold-out run (trained on centre 1, tested on every other centre), in
    :func:`ensure_metrics`'s schema plus ``holdout`` (settings tag, epochs, whether the schedule is shorter
    than the profile's, centres, split sizes); ``None`` when the data has fewer than two centres. Trains the
    run first when needed; the dataset is read once (``prepared``, whatever its split)."""
    from bonetumor.data.splits import TRAIN_CENTRES

    prepared = prepared or prepare(settings, progress=False)
    centres = sorted({int(r["centre"]) for r in prepared.records if r.get("centre") is not None})
    if len(centres) < 2:
        log.info("%s has %s centre(s); no centre hold-out", prepared.root, len(centres))
        return None
    held = centre_holdout_settings(settings)
    held_prepared = Prepared(prepared.root, prepared.records, prepared.problems, prepared.duplicates,
                             split_records(held, prepared.records, prepared.duplicates))
    result = ensure_metrics(held, "test", held_prepared, device=device)
    sizes = {name: len(recs) for name, recs in held_prepared.splits.items()}
    test_centres = sorted({int(r["centre"]) for r in held_prepared.splits["test"] if r.get("centre") is not None})
    result["holdout"] = {"settings": held.tag(), "run": held.run_name, "epochs": held.train.epochs,
                         "reduced_schedule": held.train.epochs < settings.train.epochs,
                         "train_centres": list(TRAIN_CENTRES), "test_centres": test_centres, "split_sizes": sizes}
    return result
