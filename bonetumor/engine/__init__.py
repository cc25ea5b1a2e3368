"""Running the model: training (determinism and RNG states, optimiser and schedule, one epoch,
validation, :func:`train`) and inference.

Names are imported lazily from their submodules on first use, so that importing one piece (e.g.
``bonetumor.engine.determinism``) does not import them all:

========================  ===============================================================
``engine.determinism``    ``seed_everything``, ``deterministic_algorithms``, ``rng_state``,
                          ``set_rng_state``, ``isolated_rng``
``engine.schedule``       ``make_optimizer``, ``lr_factor``, ``make_scheduler``
``engine.loop``           ``train_one_epoch``, ``make_loader``, ``NonFiniteLossError``
``engine.validation``     ``validate``, ``mask_mse``, ``probability_map``
``engine.resume``         which settings a resumed run may change
``engine.run_files``      the files of a run folder: ``run.json``, ``history.csv``
``engine.trainer``        ``train``
``engine.inference``      ``predict``, ``run_model``, ``inference_mode``: the one inference path
``engine.distributed``    DistributedDataParallel under torchrun (process group, sampler, rank 0 writes)
``engine.classifier``     ``train_classifier``, ``predict_probabilities``: Table 2's comparators
========================  ===============================================================
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "determinism": ("seed_everything", "deterministic_algorithms", "rng_state", "set_rng_state",
                    "isolated_rng"),
    "schedule": ("make_optimizer", "lr_factor", "make_scheduler", "WARMUP_START", "MULTISTEP_MILESTONES"),
    "loop": ("train_one_epoch", "make_loader", "NonFiniteLossError"),
    "validation": ("validate", "mask_mse", "probability_map", "MSE_SCORE_THRESHOLD"),
    "resume": ("RESUMABLE_CHANGES",),
    "trainer": ("train",),
    "inference": ("predict", "run_model", "inference_mode", "prediction_record"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
