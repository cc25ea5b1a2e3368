"""One training epoch (torchvision's ``references/detection`` ``train_one_epoch``), the seeded data loader
it reads, and the error that stops a run whose loss is no longer finite."""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from bonetumor.data.dataset import collate_fn, seed_worker
from bonetumor.engine.distributed import unwrap
from bonetumor.modeling.vgg_maskrcnn import LOSS_TERMS, bf16_backbone


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or gradient norm); the run stops rather than go on with
    corrupted weights. The message names the epoch, the step and every loss term."""

    def __init__(self, epoch: int, step: int, steps: int, iteration: int, terms: Mapping[str, float],
                 what: str = "loss"):
        self.epoch, self.step, self.iteration, self.terms = epoch, step, iteration, dict(terms)
        detail = ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
        super().__init__(f"non-finite {what} at epoch {epoch}, step {step}/{steps} (iteration {iteration}): "
                         f"{detail}. Lower train.lr, raise train.warmup_iters or check the data; "
                         "the last good checkpoint is last.pt")


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, device: torch.device,
                generator: torch.Generator | None = None, sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader with seeded shuffling and workers. Workers are not persistent on purpose: each epoch
    then draws their seeds from ``generator``, which the checkpoint saves, so a resumed run repeats them.
    ``sampler`` (e.g. a DistributedSampler, which shuffles itself) replaces ``shuffle``."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=num_workers, collate_fn=collate_fn, pin_memory=device.type == "cuda",
                      generator=generator, worker_init_fn=seed_worker if num_workers else None, drop_last=False)


def to_device(images, targets, device: torch.device):
    """A batch's images and targets (tensors only) moved to ``device``."""
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable, device: torch.device,
                    epoch: int, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, amp: bool = False,
                    grad_clip: float | None = None, progress=None, first_iteration: int = 0,
                    on_step: Callable[[int, dict], None] | None = None) -> dict:
    """One pass over ``loader``. Returns the epoch's means (weighted by images) of each loss term and
    their total (``loss_total``), the learning rate of the last step, the mean gradient norm (before
    clipping), the number of images and the seconds taken.

    ``amp``: bfloat16 autocast of the backbone (CUDA, see
    :func:`bonetumor.modeling.vgg_maskrcnn.bf16_backbone`); bf16 keeps float32's range, so no gradient
    scaler is needed.
    ``model`` may be wrapped in DistributedDataParallel (:mod:`bonetumor.engine.distributed`).
    ``progress``: a tqdm bar updated once per step, or ``None``. ``on_step(step, losses)``: called after
    each optimizer step with the step (1-based) and its loss terms and ``loss_total`` (this process's). A non-finite loss or gradient norm raises :class:`NonFiniteLossError`.
    """
    model.train()
    sums = dict.fromkeys(LOSS_TERMS + ("loss_total",), 0.0)
    grad_norms: list[float] = []
    n_images = 0
    steps = len(loader) if hasattr(loader, "__len__") else 0
    lr = optimizer.param_groups[0]["lr"]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    start = time.perf_counter()
    for step, (images, targets) in enumerate(loader, start=1):
        images, targets = to_device(images, targets, device)
        with bf16_backbone(unwrap(model), amp):
            loss_dict = model(images, targets)
        total = sum(loss_dict.values())
        # one device-to-host copy per step (it is also the finiteness check's synchronisation point)
        host = torch.stack([v.detach().float() for v in loss_dict.values()] + [total.detach().float()]).cpu().tolist()
        values = dict(zip([*loss_dict, "loss_total"], host))
        if not math.isfinite(values["loss_total"]):
            raise NonFiniteLossError(epoch, step, steps, first_iteration + step, values)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else math.inf))
        if not math.isfinite(norm):
            raise NonFiniteLossError(epoch, step, steps, first_iteration + step, {**values, "grad_norm": norm},
                                     what="gradient norm")
        grad_norms.append(norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        batch = len(images)
        n_images += batch
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v * batch
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{values['loss_total']:.3f}", lr=f"{lr:.2e}", refresh=False)
        if on_step is not None:
            on_step(step, values)
    if n_images == 0:
        raise ValueError("the training loader yielded no images")
    out = {k: v / n_images for k, v in sums.items()}
    out.update(lr=lr, grad_norm=float(np.mean(grad_norms)), images=n_images,
               train_seconds=time.perf_counter() - start)
    return out
