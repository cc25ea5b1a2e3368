"""Which torch device to run on — one rule for training, loading a trained model and inference."""

from __future__ import annotations

import torch


def device_for(preference: str | torch.device | None = None) -> torch.device:
    """The device to train on: ``preference`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``) if given, else CUDA
    when available, else CPU. Asking for CUDA where there is none is an error, not a silent fallback."""
    if preference is None or str(preference) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available here")
    return device
