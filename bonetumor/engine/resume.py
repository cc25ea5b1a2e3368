"""Resuming a run: the checkpoint to continue from, which settings may change between a run and its
resumption, whose normalisation is kept (the checkpoint's), and the restoring of a training session from
the checkpoint (:func:`restore`; under torchrun every process loads the same ``last.pt``, to the CPU first)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from bonetumor.config import Settings
from bonetumor.engine import run_files
from bonetumor.engine.determinism import set_rng_state
from bonetumor.modeling.checkpoints import load_checkpoint

log = logging.getLogger(__name__)

#: Settings that may differ between a run and its resumption (everything else must match).
RESUMABLE_CHANGES = {("train", "epochs"), ("train", "num_workers"), ("data", "path"), ("notebook_timeout",),
                     ("evaluate",)}


def checkpoint_to_resume(paths: Mapping[str, Path], settings: Settings, resume: bool) -> dict | None:
    """``last.pt`` of the run folder when resuming (its settings checked against ``settings``), else None;
    a folder that holds a run is an error without ``resume``."""
    if not paths["last.pt"].is_file():
        if resume:
            log.info("resume: %s holds no checkpoint yet, starting afresh", paths["last.pt"].parent)
        return None
    run_dir = paths["last.pt"].parent
    if not resume:
        raise ValueError(f"{run_dir} already holds a run (last.pt): pass resume=True (--resume) to continue it, "
                         "or choose another folder")
    checkpoint = load_checkpoint(paths["last.pt"])
    diffs = settings_differences(checkpoint["settings"], settings.model_dump(mode="json"))
    if diffs:
        raise ValueError(f"cannot resume {run_dir}: settings differ from the checkpoint's: " + "; ".join(diffs))
    return checkpoint


def kept_normalisation(checkpoint: Mapping, image_mean, image_std) -> tuple[list, list]:
    """The checkpoint's normalisation, with a warning when the one given differs."""
    saved_norm = checkpoint["normalisation"]
    if not np.allclose(np.resize(np.asarray(image_mean, float), 3), saved_norm["mean"], atol=1e-6) or \
            not np.allclose(np.resize(np.asarray(image_std, float), 3), saved_norm["std"], atol=1e-6):
        log.warning("resume: keeping the checkpoint's normalisation %s, not the one given", saved_norm)
    return saved_norm["mean"], saved_norm["std"]


def settings_differences(old: Mapping, new: Mapping, prefix: tuple = ()) -> list[str]:
    """``"key.path: old in the checkpoint, new now"`` for each setting that differs, apart from
    :data:`RESUMABLE_CHANGES`."""
    out = []
    for key in sorted(set(old) | set(new)):
        here = prefix + (key,)
        if here in RESUMABLE_CHANGES:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += settings_differences(a, b, here)
        elif a != b:
            out.append(f"{'.'.join(here)}: {a!r} in the checkpoint, {b!r} now")
    return out


def restore(session, checkpoint: Mapping, times: dict, data: dict | None) -> tuple[dict, list[dict], dict | None]:
    """Load the checkpoint's weights, optimiser, schedule, RNG states, history and counters into the
    training session (:class:`bonetumor.engine.trainer._Session`); return run.json's ``times``, ``resumed``
    and ``data`` carried over from the interrupted run. ``ValueError`` when the dataset's content, or the
    number of processes (torchrun), differs from the run's."""
    run_dir = session.paths["run.json"].parent
    old_times, resumed, old_data, old_world_size = run_files.previous_record(session.paths["run.json"])
    if data and old_data and old_data.get("fingerprint") and old_data.get("fingerprint") != data["fingerprint"]:
        raise ValueError(f"cannot resume {run_dir}: it started on {old_data.get('path')} "
                         f"(data fingerprint {str(old_data['fingerprint'])[:12]}), but {data['path']} has "
                         f"fingerprint {data['fingerprint'][:12]}: other data; train into another folder")
    if old_world_size is not None and old_world_size != session.world.size:
        raise ValueError(f"cannot resume {run_dir}: it trained with {old_world_size} process(es), this is "
                         f"{session.world.size}; resume with the same number (torchrun --nproc-per-node, "
                         "--nnodes), since the batch, learning rate and schedule depend on it")
    session.model.load_state_dict(checkpoint["model"])
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    session.scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng"], session.loader_generator)
    session.history, session.best = checkpoint["history"], checkpoint["best"]
    session.done, session.iteration = checkpoint["epoch"], checkpoint["iteration"]
    times = {**old_times, **times}
    times["started"] = old_times.get("started", times["started"])
    epochs = session.settings.train.epochs
    if session.done < epochs:
        resumed.append({"from_epoch": session.done, "epochs": epochs, "at": run_files.now()})
    return times, resumed, data or old_data
