"""Seeding, the deterministic-algorithms switch, and every RNG state training draws from (saved in each
checkpoint so that a resumed run repeats the same random numbers), plus :func:`isolated_rng` for code
(validation, extra metrics) that must not draw from the training stream."""

from __future__ import annotations

import contextlib
import random
from typing import Mapping

import numpy as np
import torch


__all__ = ["seed_everything", "deterministic_algorithms", "rng_state", "set_rng_state",
           "isolated_rng"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CUDA included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Inside the block: ``torch.use_deterministic_algorithms(enabled)`` and cuDNN benchmarking off; both
    restored after. Training enables it on CPU (checked to work with every Mask R-CNN op there), not on
    CUDA: torchvision's RoIAlign backward then falls back to a slow Python implementation and cuBLAS needs
    CUBLAS_WORKSPACE_CONFIG; GPU runs are seeded but not bitwise reproducible."""
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    # cudnn.benchmark stays False: Mask R-CNN's RoI heads see a different number of proposals every step,
    # so cuDNN re-tunes its kernels at nearly every iteration — measured 7× slower training with it on.
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(enabled)
    try:
        yield enabled
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.backends.cudnn.benchmark = previous_benchmark


def rng_state(loader_generator: torch.Generator | None = None) -> dict:
    """Every RNG state that training draws from, as tensors/numbers (``weights_only``-loadable)."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def set_rng_state(state: Mapping, loader_generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": np_state["bit_generator"],
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device | None = None):
    """Run a block on its own seeded torch/NumPy/Python generators and restore the outer states after:
    validation then draws nothing from the training stream, and gives the same numbers every time."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            seed_everything(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
