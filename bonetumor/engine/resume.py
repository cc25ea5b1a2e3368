"""Resuming a run: the checkpoint to continue from, which settings may change between a run and its
resumption, and whose normalisation is kept (the checkpoint's)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from bonetumor.config import Settings
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
