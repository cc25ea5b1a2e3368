"""Training and prediction of the whole-image classifiers Table 2 compares against
(:mod:`bonetumor.modeling.classifiers`), with the detector's discipline: seeded and deterministic on CPU,
AdamW with a linear warm-up and a cosine decay over the whole run (:func:`bonetumor.engine.schedule.lr_factor`),
the best epoch chosen on the validation split (never the test split), and a checkpoint after every epoch
from which a killed run resumes.

The loss is cross-entropy weighted by inverse class frequency in the training split (normal : benign :
malignant is about 5 : 4 : 1 in BTXRD), so that the rare malignant class is not simply ignored.

Files of a run folder: ``last.pt`` (model, optimiser, schedule, epoch, history, best, RNG states),
``best.pt`` (the best epoch's weights), ``history.csv`` and ``run.json`` (``status``: running / complete).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bonetumor import io
from bonetumor.engine.determinism import deterministic_algorithms, rng_state, seed_everything, set_rng_state
from bonetumor.engine.schedule import lr_factor

#: Warm-up iterations of the classifiers' learning rate (or a tenth of the run when that is shorter).
WARMUP_ITERS = 50


@dataclass(frozen=True)
class ClassifierRecipe:
    """How a classifier is trained (from :class:`bonetumor.config.ComparatorSettings`)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int = 0


def class_weights(labels: list[int], classes: int = 3) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 over the classes present (an absent class: 0)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=classes).astype(float)
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
    present = weights > 0
    weights[present] *= present.sum() / weights[present].sum()
    return torch.tensor(weights, dtype=torch.float32)


def macro_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes that are present and not alone (NaN when none is)."""
    from sklearn.metrics import roc_auc_score

    aucs = []
    for k in range(probabilities.shape[1]):
        positive = labels == k
        if 0 < positive.sum() < len(labels):
            aucs.append(roc_auc_score(positive, probabilities[:, k]))
    return float(np.mean(aucs)) if aucs else math.nan


@torch.inference_mode()
def predict_probabilities(model: nn.Module, dataset: Dataset, device: torch.device | str = "cpu",
                          batch_size: int = 16) -> np.ndarray:
    """Softmax class probabilities ``(N, classes)`` of every image of ``dataset``, in its order."""
    was_training = model.training
    model.eval()
    out = [torch.softmax(model(images.to(device)).float(), dim=1).cpu()
           for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 3), np.float32)


def _one_epoch(model, loader, optimizer, scheduler, loss_fn, device) -> float:
    model.train()
    total, seen = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), torch.as_tensor(labels).to(device)
        loss = loss_fn(model(images), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite classifier loss {loss.item()} — lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * len(labels)
        seen += len(labels)
    return total / max(seen, 1)


def _validate(model, val_set, weights: torch.Tensor, device) -> dict:
    """Validation loss (the training loss's class weights), macro AUC and accuracy."""
    probabilities = predict_probabilities(model, val_set, device)
    labels = np.asarray(val_set.labels())
    log_p = torch.log(torch.from_numpy(probabilities).clamp_min(1e-12))
    loss = float(nn.functional.cross_entropy(log_p, torch.from_numpy(labels), weight=weights)) if len(labels) else math.nan
    return {"val_loss": loss, "val_macro_auc": macro_auc(probabilities, labels),
            "val_accuracy": float((probabilities.argmax(1) == labels).mean()) if len(labels) else math.nan}


def _better(row: Mapping, best: Mapping | None) -> bool:
    """Highest validation macro AUC, ties (or NaN) broken by the lower validation loss."""
    if best is None:
        return True
    auc, best_auc = row["val_macro_auc"], best["val_macro_auc"]
    auc, best_auc = (-1.0 if math.isnan(auc) else auc), (-1.0 if math.isnan(best_auc) else best_auc)
    return auc > best_auc or (auc == best_auc and row["val_loss"] < best["val_loss"])


def _restore(model, optimizer, scheduler, generator, last: Path) -> tuple[int, list, dict | None]:
    state = torch.load(last, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"], generator)
    return int(state["epoch"]), list(state["history"]), state["best"]


def train_classifier(model: nn.Module, train_set: Dataset, val_set: Dataset, run_dir: str | Path,
                     recipe: ClassifierRecipe, device: torch.device | str = "cpu", progress=None,
                     record: Mapping | None = None) -> dict:
    """Train ``model`` on ``train_set`` (an :class:`~bonetumor.data.image_classes.ImageClassDataset`),
    choosing the best epoch on ``val_set``; resumes from ``run_dir/last.pt`` when it exists; nothing to do
    when ``run.json`` says complete. ``progress``: a callable ``(epoch, row)`` called after each epoch.
    ``record``: extra fields for ``run.json`` (the settings). Returns run.json's content."""
    run_dir, device = Path(run_dir), torch.device(device)
    info_file, last = run_dir / "run.json", run_dir / "last.pt"
    if info_file.is_file() and _read_json(info_file).get("status") == "complete":
        return _read_json(info_file)
    run_dir.mkdir(parents=True, exist_ok=True)
    with deterministic_algorithms(device.type == "cpu"):
        seed_everything(recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, generator=generator)
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        total = recipe.epochs * len(loader)
        warmup = min(WARMUP_ITERS, total // 10)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(i, total, warmup))
        weights = class_weights(train_set.labels())
        loss_fn = nn.CrossEntropyLoss(weight=weights.to(device))
        done, history, best = _restore(model, optimizer, scheduler, generator, last) if last.is_file() else (0, [], None)
        base = {**dict(record or {}), "init": getattr(model, "init", None), "n_train": len(train_set),
                "n_val": len(val_set), "epochs": recipe.epochs}
        for epoch in range(done + 1, recipe.epochs + 1):
            start = time.perf_counter()
            row = {"epoch": epoch, "loss": _one_epoch(model, loader, optimizer, scheduler, loss_fn, device)}
            row.update(_validate(model, val_set, weights, device))
            row["seconds"] = time.perf_counter() - start
            history.append(row)
            if _better(row, best):
                best = dict(row)
                _save({"model": model.state_dict(), "epoch": epoch}, run_dir / "best.pt")
            _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history, "best": best,
                     "rng": rng_state(generator)}, last)
            io.write_text(run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
            io.write_json(info_file, {**base, "status": "running", "done": epoch, "best": best})
            if progress is not None:
                progress(epoch, row)
    info = {**base, "status": "complete", "done": recipe.epochs, "best": best,
            "train_seconds": float(sum(r["seconds"] for r in history))}
    io.write_json(info_file, info)
    return info


def load_best(model: nn.Module, run_dir: str | Path) -> nn.Module:
    """``model`` with the weights of the run's best epoch."""
    model.load_state_dict(torch.load(Path(run_dir) / "best.pt", map_location="cpu", weights_only=True)["model"])
    return model


def _read_json(path: Path) -> dict:
    import json

    return json.loads(Path(path).read_text())


def _save(state: Mapping, path: Path) -> None:
    """``torch.save`` to a temporary file moved into place (a crash never leaves half a checkpoint)."""
    with io.atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
