"""Table 2's comparators re-measured here: whole-image classifiers (:mod:`bonetumor.modeling.classifiers`)
trained on exactly the detector's training split, their epoch chosen on the same validation split, scored on
the same test split by the same metrics and the same pseudo-patient bootstrap as the detector
(:func:`bonetumor.evaluation.evaluate_image_classifier`).

Like the detector's, each classifier's run is cached under ``runs/`` in a folder named by a fingerprint of
everything that decides what it learns (data, recipe, architecture, seed), so redrawing never retrains, and
a killed run resumes from its last epoch. Settings: ``comparators`` in ``params/<profile>.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from bonetumor import paths, pipeline
from bonetumor.config import Settings
from bonetumor.io import write_json

log = logging.getLogger("bonetumor")

#: Bumped when the classifiers' metrics change meaning, so an older metrics file is never reused.
CLASSIFIER_METRICS_FORMAT = "bonetumor-classifier-metrics/2"


def image_size(settings: Settings) -> int:
    """The side of the square images the classifiers see."""
    return settings.comparators.image_size or settings.data.image_size


def run_name(settings: Settings, arch: str) -> str:
    """``<profile>-<source>-classifier-<arch>-<fingerprint>``."""
    c = settings.comparators
    relevant = {"data": settings.data.model_dump(mode="json"), "seed": settings.seed, "arch": arch,
                "recipe": c.model_dump(mode="json", exclude={"architectures"}), "image_size": image_size(settings),
                "vgg": ([settings.model.backbone, settings.model.width] if arch == "vgg19" else None)}
    digest = hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
    return f"{settings.profile}-{settings.data.source}-classifier-{arch}-{digest}"


def _datasets(settings: Settings, prepared: pipeline.Prepared):
    from bonetumor.data.image_classes import ImageClassDataset

    size = image_size(settings)
    return (ImageClassDataset(prepared.split("train"), size, train=settings.train.augment),
            ImageClassDataset(prepared.split("val"), size),
            ImageClassDataset(prepared.split("test"), size))


def _model(settings: Settings, arch: str, train_records: list[dict], pretrained: bool | None = None):
    """The untrained classifier (``pretrained=False`` when its weights are about to be loaded: the
    normalisation buffers come with them)."""
    from bonetumor.modeling.classifiers import build_classifier

    mean, std = pipeline.normalisation(train_records)
    pretrained = settings.comparators.pretrained if pretrained is None else pretrained
    return build_classifier(arch, pretrained=pretrained, width=settings.model.width,
                            backbone=settings.model.backbone, train_mean=mean, train_std=std)


def ensure_classifier(settings: Settings, arch: str, prepared: pipeline.Prepared | None = None,
                      device=None, progress=None) -> Path:
    """The run folder of classifier ``arch``, trained first when it is not complete (a killed run resumes).
    ``progress(epoch, row)``: called after each epoch."""
    from bonetumor.devices import device_for
    from bonetumor.engine.classifier import ClassifierRecipe, train_classifier
    from bonetumor.engine.determinism import seed_everything

    prepared = prepared or pipeline.prepare(settings, progress=False)
    folder = paths.run_dir(run_name(settings, arch))
    info = folder / "run.json"
    if info.is_file() and json.loads(info.read_text()).get("status") == "complete":
        return folder
    train_set, val_set, _ = _datasets(settings, prepared)
    c = settings.comparators
    recipe = ClassifierRecipe(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
                              seed=settings.seed)
    seed_everything(settings.seed)  # the random initialisation belongs to the run, not to what ran before it
    model = _model(settings, arch, prepared.split("train"))
    train_classifier(model, train_set, val_set, folder, recipe, device=device_for(device), progress=progress,
                     record={"arch": arch, "settings": settings.tag(), "image_size": image_size(settings),
                             "comparators": c.model_dump(mode="json")})
    return folder


def classifier_metrics(settings: Settings, arch: str, prepared: pipeline.Prepared | None = None, device=None,
                       progress=None) -> dict:
    """Test-split metrics of classifier ``arch`` (trained first when needed), saved as
    ``<run>/metrics-test.json`` and reused while the weights, bootstrap and seed are unchanged. Adds
    ``per_image`` (image ids and class probabilities, for paired comparisons) and ``meta`` (format, run,
    architecture, initialisation, epochs, best epoch, image size)."""
    from bonetumor.devices import device_for
    from bonetumor.engine.classifier import load_best, predict_probabilities
    from bonetumor.evaluation import evaluate_image_classifier

    prepared = prepared or pipeline.prepare(settings, progress=False)
    folder = ensure_classifier(settings, arch, prepared, device, progress)
    info = json.loads((folder / "run.json").read_text())
    key = {"format": CLASSIFIER_METRICS_FORMAT, "run": folder.name, "arch": arch, "init": info.get("init"),
           "epochs": info.get("epochs"), "best_epoch": (info.get("best") or {}).get("epoch"),
           "image_size": image_size(settings), "bootstrap": settings.evaluate.bootstrap, "seed": settings.seed}
    target = folder / "metrics-test.json"
    if target.is_file() and target.stat().st_mtime >= (folder / "best.pt").stat().st_mtime:
        saved = json.loads(target.read_text())
        if saved.get("meta") == key:
            log.info("using saved metrics %s", target)
            return saved
    device = device_for(device)
    _, _, test_set = _datasets(settings, prepared)
    model = load_best(_model(settings, arch, prepared.split("train"), pretrained=False), folder).to(device)
    probabilities = predict_probabilities(model, test_set, device)
    result = evaluate_image_classifier(probabilities, test_set.records, settings.evaluate.bootstrap, settings.seed)
    result["per_image"] = {"image_id": [int(r["image_id"]) for r in test_set.records],
                           "probabilities": probabilities.round(6).tolist()}
    result["meta"] = key
    write_json(target, result)
    return result


def classifier_image_table(result: dict, prepared: pipeline.Prepared):
    """The per-image table (:func:`bonetumor.evaluation.classification.classifier_image_table`) of a
    classifier's saved test result, for paired comparisons with the detector."""
    from bonetumor.evaluation.classification import classifier_image_table as table

    by_id = {int(r["image_id"]): r for r in prepared.split("test")}
    records = [by_id[i] for i in result["per_image"]["image_id"]]
    return table(result["per_image"]["probabilities"], records)
