"""The optimiser and the learning-rate schedule, in the style of torchvision's ``references/detection``:
SGD with momentum (or AdamW), a linear warm-up, then a cosine (or multistep) decay over the *whole* run,
stepped every iteration."""

from __future__ import annotations

import math

import torch
from torch import nn

from bonetumor.config import Settings

#: Warm-up starts at this fraction of the learning rate (torchvision's references use 0.001).
WARMUP_START = 1e-3
#: ``multistep``: the learning rate is divided by 10 at these fractions of the run (torchvision's
#: references: epochs 16 and 22 of 26).
MULTISTEP_MILESTONES = (16 / 26, 22 / 26)


def make_optimizer(model: nn.Module, settings: Settings) -> torch.optim.Optimizer:
    """SGD with momentum, or AdamW (``settings.train.optimizer``), over the trainable parameters."""
    t = settings.train
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def lr_factor(iteration: int, total: int, warmup: int, schedule: str = "cosine") -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based) of a ``total``-iteration run:
    linear warm-up from :data:`WARMUP_START` to 1 over ``warmup`` iterations, then ``cosine`` decay to 0 at
    the end of the run, or ``multistep`` (÷10 at :data:`MULTISTEP_MILESTONES` of the run)."""
    warmup = min(warmup, max(total - 1, 0))
    if iteration < warmup:
        alpha = iteration / warmup
        return WARMUP_START * (1 - alpha) + alpha
    if schedule == "multistep":
        return 0.1 ** sum(iteration >= round(m * total) for m in MULTISTEP_MILESTONES)
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r} (cosine or multistep)")
    progress = (iteration - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_scheduler(optimizer: torch.optim.Optimizer, settings: Settings,
                   iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration schedule whose length is the configured run (``settings.train.epochs``), not the
    part of it one call trains — so stopping and resuming does not change it. The factor is a plain
    function of the iteration (a closure: its state dict holds only ``last_epoch``), rebuilt from the
    settings on resume."""
    total = settings.train.epochs * iters_per_epoch
    warmup = settings.train.warmup_iters
    schedule = settings.train.schedule

    def factor(iteration: int) -> float:
        return lr_factor(iteration, total, warmup, schedule)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
