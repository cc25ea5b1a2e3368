"""The files of a training run folder besides the checkpoints' contents: their names, ``run.json`` (the
run record), ``history.csv`` and the summary :func:`bonetumor.engine.trainer.train` returns.

What a run folder holds (all written atomically: temporary file, then ``os.replace``; each epoch writes
``best.pt``/``model.safetensors`` (at a best epoch), ``history.csv``, then ``last.pt``, then ``run.json``, so
a failure part-way — a full disk — leaves ``last.pt`` at the previous complete epoch and ``--resume`` redoes
the epoch):

``last.pt``
    Checkpoint after the last *complete* epoch (see :func:`bonetumor.modeling.checkpoints.checkpoint_state`
    for the format). Loads with ``torch.load(path, weights_only=True)``: only tensors, dicts, lists, numbers
    and strings; the settings are a JSON string. ``--resume`` continues from it.
``best.pt``
    A copy of ``last.pt`` at the best epoch. Best means: the highest ``val_ap50`` when
    ``val_metrics_fn`` reports it (ties, as when AP50 is still 0, go to the lower validation loss);
    otherwise the lowest validation loss (``val_loss_total``, the training
    objective on the validation images, which includes the benign/malignant classification term that
    mask MSE ignores); with no validation images, the last epoch.
``interrupted.pt``
    Written when training is stopped by Ctrl-C (``KeyboardInterrupt``), then the interrupt is re-raised.
    It holds the mid-epoch state (``partial: True``) for inspection or salvage; ``last.pt`` is left as it
    was, and ``--resume`` restarts the interrupted epoch from ``last.pt``, so the resumed run stays exactly
    reproducible (resuming mid-epoch would need the data loader's position and its workers' RNG states).
``model.safetensors``
    The best model's weights only, with the settings and normalisation as metadata: for ``predict`` users.
``history.csv``
    One row per epoch (rewritten whole each epoch): the five Mask R-CNN loss terms averaged over the
    epoch's images, their total, learning rate, gradient norm, the same losses on the validation images,
    validation mask MSE (the paper's Figure 6 "MSE performance") and Dice, anything ``val_metrics_fn``
    returns, seconds and images/s.
``run.json``
    Settings, normalisation, initialisation (ImageNet or random), best epoch, status, device, times,
    ``world_size`` (processes that trained it, 1 without torchrun), ``global_batch_size`` and ``lr_applied``
    (the batch and base learning rate of one optimiser step across all processes,
    :mod:`bonetumor.engine.distributed`), and ``data``: the dataset folder (absolute) and its content
    fingerprint (:func:`data_record`), which ``bonetumor evaluate`` checks before scoring the run on a dataset.
"""

from __future__ import annotations

import logging
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

import bonetumor
from bonetumor import io
from bonetumor.modeling.checkpoints import RUN_FORMAT, RunFileError, read_run_json
from bonetumor.versioning import code_state

log = logging.getLogger(__name__)

#: Score of a NaN or missing metric in the choice of the best epoch (finite, so run.json stays valid JSON).
WORST = -1e300

#: The files of a run folder, in the order ``run.json`` lists them.
RUN_FILES = ("last.pt", "best.pt", "interrupted.pt", "model.safetensors", "history.csv", "run.json")


def run_paths(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Create ``run_dir`` if needed; the path of each of :data:`RUN_FILES` in it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return {name: run_dir / name for name in RUN_FILES}


def now() -> str:
    """The UTC time, to the second, as ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def previous_record(path: Path) -> tuple[dict, list[dict], dict | None, int | None]:
    """``(times, resumed, data, world_size)`` of an earlier ``run.json`` of the run being resumed: empty
    (world size None) when there is none, and when it is damaged (a warning says so; the resumed run writes
    a new one from the checkpoint). A run.json from before ``world_size`` was recorded counts as 1."""
    if not path.is_file():
        return {}, [], None, None
    try:
        old = read_run_json(path)
    except (OSError, RunFileError) as exc:
        log.warning("resume: %s; its times and resume history are not carried over", exc)
        return {}, [], None, None
    times, resumed, data = old.get("times"), old.get("resumed"), old.get("data")
    world_size = old.get("world_size", 1)
    return (times if isinstance(times, dict) else {}, resumed if isinstance(resumed, list) else [],
            data if isinstance(data, dict) else None, world_size if isinstance(world_size, int) else None)


def data_record(settings) -> dict | None:
    """The dataset a run trains on, for ``run.json``: ``{"path": its folder, absolute, "fingerprint": SHA-256
    of its content}`` (:func:`bonetumor.data.btxrd.fingerprint`); ``None`` when the settings name no dataset
    folder that exists (e.g. for Datasets built in memory)."""
    from bonetumor.data import btxrd

    try:
        root = btxrd.find_root(settings.data_path)
    except (OSError, ValueError):
        return None
    return {"path": str(root), "fingerprint": btxrd.fingerprint(root)}


def run_record(*, settings, normalisation: dict, init: str, n_train: int, n_val: int, iterations_per_epoch: int,
               device: torch.device, amp: bool, deterministic: bool, best: dict | None, done: int,
               resumed: list[dict], paths: Mapping[str, Path], times: dict, data: dict | None = None,
               world_size: int = 1) -> dict:
    """The content of ``run.json`` (status ``running``; :func:`write_record` updates it). ``world_size``:
    the processes training together (torchrun), whose global batch and learning rate it records."""
    return {
        "format": RUN_FORMAT,
        "status": "running",
        "tag": settings.tag(),
        "settings": settings.model_dump(mode="json"),
        "data": data,
        "normalisation": normalisation,
        "init": init,
        "n_train": n_train,
        "n_val": n_val,
        "iterations_per_epoch": iterations_per_epoch,
        "device": device_info(device),
        "world_size": world_size,
        "global_batch_size": world_size * settings.train.batch_size,
        "lr_applied": settings.train.lr * world_size,
        "amp_bf16": amp,
        "deterministic": deterministic,
        "best": best,
        "epochs_done": done,
        "resumed": resumed,
        "code": code_state(),
        "versions": {"bonetumor": bonetumor.__version__, "torch": str(torch.__version__),
                     "torchvision": _version("torchvision")},
        "files": {k: str(v) for k, v in paths.items()},
        "times": times,
    }


def write_record(info: dict, path: Path, history: list[dict], status: str, best: dict | None, done: int,
                 write: bool = True, **extra) -> None:
    """Update ``info`` (status, best epoch, epochs done, ``extra``, times) and, with ``write`` (rank 0
    under torchrun), write it to ``path``."""
    seconds = [float(r["seconds"]) for r in history]
    info.update(status=status, best=best, epochs_done=done, **extra)
    info["times"].update(updated=now(), train_seconds=sum(seconds),
                         seconds_per_epoch=float(np.mean(seconds)) if seconds else None)
    if write:
        io.write_json(path, info)


def best_score(row: Mapping) -> tuple[str, str, list[float]]:
    """``(metric, mode, score)`` of an epoch's history row; the best epoch (``best.pt``) has the largest
    ``score`` (compared as a list; an earlier epoch wins a tie). Highest ``val_ap50``, ties — e.g. AP50 still
    0 in the first epochs — broken by the lower ``val_loss_total``; without AP50 the lowest
    ``val_loss_total``; without validation the last epoch. NaN counts as worst."""
    def finite(v: float, sign: float) -> float:
        v = float(v)
        return sign * v if math.isfinite(v) else WORST

    loss = finite(row["val_loss_total"], -1) if "val_loss_total" in row else WORST
    if "val_ap50" in row:
        return "val_ap50", "max", [finite(row["val_ap50"], 1), loss]
    if "val_loss_total" in row:
        return "val_loss_total", "min", [loss]
    return "epoch", "max", [float(row["epoch"])]


def write_history(history: list[dict], path: Path) -> None:
    """``history.csv``: one row per epoch."""
    import pandas as pd

    with io.atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def summary(info: Mapping, paths: Mapping[str, Path], history: list[dict]) -> dict:
    """What :func:`bonetumor.engine.trainer.train` returns: status, epochs, best epoch, file paths, speed."""
    best = info.get("best") or {}
    seconds = [float(r["seconds"]) for r in history]
    return {
        "status": info["status"],
        "epochs_done": info["epochs_done"],
        "epochs": info["settings"]["train"]["epochs"],
        "best_epoch": best.get("epoch"),
        "best_metric": best.get("metric"),
        "best_value": best.get("value"),
        "run_dir": str(paths["run.json"].parent),
        "last": str(paths["last.pt"]),
        "best": str(paths["best.pt"]),
        "weights": str(paths["model.safetensors"]),
        "history": str(paths["history.csv"]),
        "run_json": str(paths["run.json"]),
        "device": info["device"]["device"],
        "train_seconds": sum(seconds),
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "images_per_s": float(np.mean([r["images_per_s"] for r in history])) if history else None,
    }


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    return info


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return None
