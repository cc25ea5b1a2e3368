"""Training of the VGG-19 Mask R-CNN: the loop, per-epoch validation, checkpoints and history.

In the style of torchvision's ``references/detection``: SGD with momentum (or AdamW) with a linear
warm-up, then a cosine (or multistep) decay over the *whole* run, stepped every iteration; gradient
clipping; bfloat16 autocast on CUDA. On CPU the run is seeded and deterministic
(``torch.use_deterministic_algorithms``), and a run that is killed and resumed ends with exactly the same
weights as one that never stopped.

What a run folder holds (all written atomically: temporary file, then ``os.replace``):

``last.pt``
    Checkpoint after the last *complete* epoch (see :func:`checkpoint_state` for the format). Loads with
    ``torch.load(path, weights_only=True)``: only tensors, dicts, lists, numbers and strings; the settings
    are a JSON string. ``--resume`` continues from it.
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
    Settings, normalisation, initialisation (ImageNet or random), best epoch, status, device, times.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import bonetumor
from bonetumor import io
from bonetumor.config import Settings
from bonetumor.data.dataset import collate_fn, seed_worker
from bonetumor.model import LOSS_TERMS, bf16_backbone, build_model
from bonetumor.reporting.provenance import code_state

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "bonetumor-checkpoint/1"
#: The loss terms of torchvision's Mask R-CNN, in the order they are reported.
#: Detections at or above this score make up the probability map of :func:`validate`'s mask MSE
#: (torchvision's own ``box_score_thresh``).
MSE_SCORE_THRESHOLD = 0.05
#: Warm-up starts at this fraction of the learning rate (torchvision's references use 0.001).
WARMUP_START = 1e-3
#: ``multistep``: the learning rate is divided by 10 at these fractions of the run (torchvision's
#: references: epochs 16 and 22 of 26).
MULTISTEP_MILESTONES = (16 / 26, 22 / 26)
#: Settings that may differ between a run and its resumption (everything else must match).
RESUMABLE_CHANGES = {("train", "epochs"), ("train", "num_workers"), ("data", "path"), ("notebook_timeout",),
                     ("evaluate",)}
#: Score of a NaN or missing metric in the choice of the best epoch (finite, so run.json stays valid JSON).
WORST = -1e300
#: Seed offset for validation's own RNG stream, so validation never draws from the training stream.
_VAL_SEED_OFFSET = 7919


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


# ---- device, seeding ---------------------------------------------------------------------------------

def device_for(preference: str | torch.device | None = None) -> torch.device:
    """The device to train on: ``preference`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``) if given, else CUDA
    when available, else CPU. Asking for CUDA where there is none is an error, not a silent fallback."""
    if preference is None or str(preference) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available here")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CUDA included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, device: torch.device,
                generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader with seeded shuffling and workers. Workers are not persistent on purpose: each epoch
    then draws their seeds from ``generator``, which the checkpoint saves, so a resumed run repeats them."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=collate_fn, pin_memory=device.type == "cuda", generator=generator,
                      worker_init_fn=seed_worker if num_workers else None, drop_last=False)


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


# ---- optimiser and schedule --------------------------------------------------------------------------

def make_optimizer(model: nn.Module, settings: Settings) -> torch.optim.Optimizer:
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
    # TrainSettings has no schedule field yet: cosine unless one is added.
    schedule = settings.train.schedule

    def factor(iteration: int) -> float:
        return lr_factor(iteration, total, warmup, schedule)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---- one epoch ---------------------------------------------------------------------------------------

def _to_device(images, targets, device: torch.device):
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable, device: torch.device,
                    epoch: int, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, amp: bool = False,
                    grad_clip: float | None = None, progress=None, first_iteration: int = 0,
                    on_step: Callable[[int], None] | None = None) -> dict:
    """One pass over ``loader``. Returns the epoch's means (weighted by images) of each loss term and
    their total (``loss_total``), the learning rate of the last step, the mean gradient norm (before
    clipping), the number of images and the seconds taken.

    ``amp``: bfloat16 autocast of the backbone (CUDA, see :func:`bonetumor.model.bf16_backbone`); bf16
    keeps float32's range, so no gradient scaler is needed.
    ``progress``: a tqdm bar updated once per step, or ``None``. ``on_step(step)``: called after each
    step (1-based). A non-finite loss or gradient norm raises :class:`NonFiniteLossError`.
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
        images, targets = _to_device(images, targets, device)
        with bf16_backbone(model, amp):
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
            on_step(step)
    if n_images == 0:
        raise ValueError("the training loader yielded no images")
    out = {k: v / n_images for k, v in sums.items()}
    out.update(lr=lr, grad_norm=float(np.mean(grad_norms)), images=n_images,
               train_seconds=time.perf_counter() - start)
    return out


# ---- validation --------------------------------------------------------------------------------------

def _as_tensor(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))


def _mask_squared_error(prob_map, gt_mask) -> tuple[float, int]:
    prob = _as_tensor(prob_map).detach().to("cpu", torch.float64)
    gt = _as_tensor(gt_mask).detach().to("cpu")
    if gt.ndim == 3:  # one mask per lesion: their union
        gt = gt.any(0) if gt.shape[0] else torch.zeros(gt.shape[1:], dtype=torch.bool)
    gt = gt.to(torch.float64)
    if gt.ndim == 3 and gt.shape[0] == 1:
        gt = gt[0]
    if prob.ndim == 3 and prob.shape[0] == 1:
        prob = prob[0]
    if prob.shape != gt.shape:
        raise ValueError(f"probability map {tuple(prob.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    return float(((prob - gt.clamp(0, 1)) ** 2).sum()), prob.numel()


def mask_mse(prob_map, gt_mask) -> float:
    """Pixel mean squared error ``mean((P − G)²)`` between a lesion-probability map ``P`` ([H, W], values
    in [0, 1]) and the ground truth ``G`` ([H, W], or [N, H, W] per-lesion masks whose union is taken;
    N = 0 for a normal image). Tensors or arrays. The paper's Figure 6 "MSE performance", made measurable;
    see :func:`probability_map` for ``P`` from a detection output."""
    total, count = _mask_squared_error(prob_map, gt_mask)
    return total / count


def probability_map(output: Mapping[str, torch.Tensor], shape: Sequence[int],
                    score_threshold: float = MSE_SCORE_THRESHOLD) -> torch.Tensor:
    """``P(x)`` = max over detections with score ≥ ``score_threshold`` of their pasted mask probability at
    pixel x; 0 where there is none. ``output`` is one element of Mask R-CNN's eval-mode output."""
    masks, scores = output.get("masks"), output.get("scores")
    if masks is None or scores is None or len(scores) == 0:
        return torch.zeros(tuple(shape), dtype=torch.float32)
    keep = scores >= score_threshold
    if not bool(keep.any()):
        return torch.zeros(tuple(shape), dtype=torch.float32)
    return masks[keep][:, 0].float().amax(0).cpu()


def _batchnorm_eval(model: nn.Module) -> list[nn.Module]:
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in bns:
        m.eval()
    return bns


@torch.no_grad()
def validate(model: nn.Module, loader: Iterable, device: torch.device, mask_threshold: float = 0.5,
             amp: bool = False, seed: int = 0) -> dict:
    """Validation losses and mask quality on ``loader``'s images.

    * ``val_<term>`` and ``val_loss_total``: Mask R-CNN's losses, computed in train mode (the only mode in
      which torchvision returns them) under ``no_grad``, with any BatchNorm layers kept in eval mode so the
      validation images never touch their running statistics. Proposal sampling is random, so it runs in
      its own RNG streams (:func:`isolated_rng`, seeded by ``seed``): the numbers are comparable between epochs, and validating
      draws nothing from the training stream (the weights do not depend on whether validation ran).
    * ``val_mask_mse``: mean over all pixels of all images of ``(P − G)²`` (:func:`mask_mse`, pooled:
      large images weigh more), ``P`` from :func:`probability_map`, ``G`` the union of the lesion masks.
    * ``val_mask_dice``: pooled Dice of ``P ≥ mask_threshold`` against ``G`` over all pixels (NaN when
      neither has any pixel).
    """
    was_training = model.training
    sums = dict.fromkeys(LOSS_TERMS + ("loss_total",), 0.0)
    se_sum, n_pixels, inter, pred_px, gt_px, n_images = 0.0, 0, 0.0, 0.0, 0.0, 0
    start = time.perf_counter()
    try:
        with isolated_rng(seed + _VAL_SEED_OFFSET, device):
            for images, targets in loader:
                images, targets = _to_device(images, targets, device)
                model.train()
                _batchnorm_eval(model)
                with bf16_backbone(model, amp):
                    loss_dict = model(images, targets)
                batch = len(images)
                n_images += batch
                for k, v in loss_dict.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * batch
                sums["loss_total"] += float(sum(loss_dict.values())) * batch
                model.eval()
                with bf16_backbone(model, amp):
                    outputs = model(images)
                for image, target, output in zip(images, targets, outputs):
                    shape = image.shape[-2:]
                    prob = probability_map(output, shape)
                    gt = target["masks"].cpu()
                    gt = gt.any(0) if gt.shape[0] else torch.zeros(tuple(shape), dtype=torch.bool)
                    se, count = _mask_squared_error(prob, gt)
                    se_sum += se
                    n_pixels += count
                    pred = prob >= mask_threshold
                    inter += float((pred & gt).sum())
                    pred_px += float(pred.sum())
                    gt_px += float(gt.sum())
    finally:
        model.train(was_training)
    if n_images == 0:
        return {}
    out = {f"val_{k}": v / n_images for k, v in sums.items()}
    out["val_mask_mse"] = se_sum / n_pixels
    out["val_mask_dice"] = 2 * inter / (pred_px + gt_px) if pred_px + gt_px else float("nan")
    out["val_seconds"] = time.perf_counter() - start
    return out


# ---- checkpoints -------------------------------------------------------------------------------------

def _settings_json(settings: Settings) -> str:
    return json.dumps(settings.model_dump(mode="json"), sort_keys=True)


def checkpoint_state(model: nn.Module, optimizer, scheduler, settings: Settings, epoch: int, iteration: int,
                     normalisation: Mapping, init: str, history: list[dict], best: Mapping | None,
                     loader_generator: torch.Generator | None, partial: bool = False,
                     step_in_epoch: int = 0) -> dict:
    """The checkpoint dict. Keys: ``format``, ``epoch`` (complete epochs), ``iteration`` (optimizer
    steps so far), ``partial`` and ``step_in_epoch`` (Ctrl-C mid-epoch), ``model``, ``optimizer``,
    ``scheduler`` (state dicts), ``rng`` (torch, cuda, numpy, python, loader — see :func:`rng_state`),
    ``settings`` (JSON string), ``normalisation`` ({mean, std}), ``init``, ``history`` (JSON string of the
    rows so far), ``best`` ({epoch, metric, mode, value} or None), ``versions``, ``saved`` (UTC time)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "iteration": int(iteration),
        "partial": bool(partial),
        "step_in_epoch": int(step_in_epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(loader_generator),
        "settings": _settings_json(settings),
        "normalisation": {"mean": [float(v) for v in normalisation["mean"]],
                          "std": [float(v) for v in normalisation["std"]]},
        "init": init,
        "history": json.dumps(history),
        "best": dict(best) if best else None,
        "versions": {"bonetumor": bonetumor.__version__, "torch": str(torch.__version__)},
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_checkpoint(state: Mapping, path: str | os.PathLike) -> Path:
    with io.atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by :func:`train`, loaded with ``weights_only=True`` (no arbitrary unpickling);
    ``settings`` and ``history`` come back parsed (dict, list of rows)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a bonetumor checkpoint ({CHECKPOINT_FORMAT})")
    state["settings"] = json.loads(state["settings"])
    state["history"] = json.loads(state["history"])
    return state


def _save_safetensors(model: nn.Module, path: Path, metadata: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with io.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: v if isinstance(v, str) else json.dumps(v)
                                               for k, v in metadata.items()})


def load_model(run_dir: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"):
    """Rebuild a trained model from ``run_dir``: architecture and normalisation from ``run.json``,
    weights from ``model.safetensors`` (``which="best"``, falling back to ``best.pt``), ``last.pt``
    (``"last"``), ``interrupted.pt`` (``"interrupted"``) or a given ``.pt`` / ``.safetensors`` path. Never
    unpickles arbitrary objects. Returns ``(model in eval mode on device, run_info)``, where ``run_info`` is
    run.json's content plus ``weights`` (the file read) and ``settings_object`` (typed :class:`Settings`)."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no trained run (no run.json); train one with `bonetumor train`")
    info = json.loads(info_path.read_text())
    settings = Settings.model_validate(info["settings"])
    candidates = {"best": [run_dir / "model.safetensors", run_dir / "best.pt"],
                  "last": [run_dir / "last.pt"], "interrupted": [run_dir / "interrupted.pt"]}
    files = candidates.get(which, [Path(which)])
    weights = next((f for f in files if f.is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"no {which!r} weights in {run_dir} (looked for {', '.join(f.name for f in files)})")
    # pretrained=False: the weights are replaced below, so never download ImageNet's just to discard them.
    model = build_model(settings.model.model_copy(update={"pretrained": False}), image_size=settings.data.image_size,
                        image_mean=info["normalisation"]["mean"], image_std=info["normalisation"]["std"])
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = load_checkpoint(weights)["model"]
    model.load_state_dict(state)
    model.init = info.get("init", model.init)
    model.to(device_for(device) if not isinstance(device, torch.device) else device).eval()
    return model, {**info, "weights": str(weights), "settings_object": settings}


# ---- the run -----------------------------------------------------------------------------------------

def _resolve_progress(progress) -> str:
    if progress is None:
        return "bar" if sys.stderr.isatty() else "line"
    if progress is True:
        return "bar"
    if progress is False:
        return "line"
    if progress not in ("bar", "line", "off"):
        raise ValueError(f"progress must be None, True, False, 'bar', 'line' or 'off', not {progress!r}")
    return progress


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _epoch_line(row: Mapping, epochs: int, eta: float | None) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}",
             f"loss {row['loss_total']:.4f} (cls {row['loss_classifier']:.3f} box {row['loss_box_reg']:.3f} "
             f"mask {row['loss_mask']:.3f} obj {row['loss_objectness']:.3f} rpn {row['loss_rpn_box_reg']:.3f})",
             f"lr {row['lr']:.2e}"]
    if "val_loss_total" in row:
        parts.append(f"val loss {row['val_loss_total']:.4f} mse {row['val_mask_mse']:.4f}")
    if "val_ap50" in row:
        parts.append(f"AP50 {row['val_ap50']:.3f}")
    parts.append(f"{row['seconds']:.1f}s {row['images_per_s']:.1f} img/s")
    if eta is not None:
        parts.append(f"eta {_duration(eta)}")
    return "  ".join(parts)


def _best_score(row: Mapping) -> tuple[str, str, list[float]]:
    """``(metric, mode, score)`` of an epoch's history row; the best epoch has the largest ``score``
    (compared as a list; an earlier epoch wins a tie). Highest ``val_ap50``, ties — e.g. AP50 still 0 in
    the first epochs — broken by the lower ``val_loss_total``; without AP50 the lowest ``val_loss_total``;
    without validation the last epoch. NaN counts as worst."""
    def finite(v: float, sign: float) -> float:
        v = float(v)
        return sign * v if math.isfinite(v) else WORST

    loss = finite(row["val_loss_total"], -1) if "val_loss_total" in row else WORST
    if "val_ap50" in row:
        return "val_ap50", "max", [finite(row["val_ap50"], 1), loss]
    if "val_loss_total" in row:
        return "val_loss_total", "min", [loss]
    return "epoch", "max", [float(row["epoch"])]


def _settings_differences(old: Mapping, new: Mapping, prefix: tuple = ()) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        here = prefix + (key,)
        if here in RESUMABLE_CHANGES:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _settings_differences(a, b, here)
        elif a != b:
            out.append(f"{'.'.join(here)}: {a!r} in the checkpoint, {b!r} now")
    return out


def _device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    return info


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def train(settings: Settings, train_dataset: Dataset, val_dataset: Dataset | None, run_dir: str | os.PathLike,
          image_mean: Sequence[float], image_std: Sequence[float], resume: bool = False,
          device: str | torch.device | None = None, progress: bool | str | None = None,
          val_metrics_fn: Callable[[nn.Module, DataLoader], Mapping[str, float]] | None = None,
          stop_after_epoch: int | None = None) -> dict:
    """Train the Mask R-CNN of ``settings`` for ``settings.train.epochs`` epochs into ``run_dir``.

    ``image_mean``/``image_std``: grey-level statistics of the training images (1 or 3 values), stored in
    the checkpoints and run.json. ``resume``: continue from ``run_dir/last.pt`` — a fresh start when there
    is none, nothing to do when the run is complete (so ``resume=True`` is safe to repeat); the settings
    must match the checkpoint's except ``train.epochs`` (a longer run re-plans the schedule for the new
    length), ``train.num_workers``, ``data.path`` and ``evaluate``, and the checkpoint's normalisation
    is kept. Without ``resume``, a folder that already holds a
    run is an error. ``device``: see :func:`device_for`. ``progress``: tqdm bars with ETA (True), one line
    per epoch (False), ``"off"``, or by ``sys.stderr.isatty()`` (None). ``val_metrics_fn(model, loader)``:
    extra validation metrics merged into the history row (keys get a ``val_`` prefix); a ``val_ap50``
    (or ``ap50``) among them picks the best epoch. ``stop_after_epoch``: stop after that epoch as if
    killed there (the schedule still spans all epochs) — for tests and for training in slices.

    Returns a summary: status, epochs done, best epoch and metric, paths of the files, seconds.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: run_dir / name for name in
             ("last.pt", "best.pt", "interrupted.pt", "model.safetensors", "history.csv", "run.json")}
    epochs = settings.train.epochs
    device = device_for(device)
    show = _resolve_progress(progress)
    if len(train_dataset) == 0:
        raise ValueError("the training set is empty")
    if val_dataset is not None and len(val_dataset) == 0:
        val_dataset = None

    checkpoint = None
    if paths["last.pt"].is_file():
        if not resume:
            raise ValueError(f"{run_dir} already holds a run (last.pt): pass resume=True (--resume) to continue it, "
                             "or choose another folder")
        checkpoint = load_checkpoint(paths["last.pt"])
        diffs = _settings_differences(checkpoint["settings"], settings.model_dump(mode="json"))
        if diffs:
            raise ValueError(f"cannot resume {run_dir}: settings differ from the checkpoint's: " + "; ".join(diffs))
        saved_norm = checkpoint["normalisation"]
        if not np.allclose(np.resize(np.asarray(image_mean, float), 3), saved_norm["mean"], atol=1e-6) or \
                not np.allclose(np.resize(np.asarray(image_std, float), 3), saved_norm["std"], atol=1e-6):
            log.warning("resume: keeping the checkpoint's normalisation %s, not the one given", saved_norm)
        image_mean, image_std = saved_norm["mean"], saved_norm["std"]
    elif resume:
        log.info("resume: %s holds no checkpoint yet, starting afresh", run_dir)

    # Deterministic algorithms on CPU (checked to work with every Mask R-CNN op there). Not on CUDA:
    # torchvision's RoIAlign backward then falls back to a slow Python implementation and cuBLAS needs
    # CUBLAS_WORKSPACE_CONFIG; GPU runs are seeded but not bitwise reproducible.
    deterministic = device.type == "cpu"
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    # cudnn.benchmark stays False: Mask R-CNN's RoI heads see a different number of proposals every step,
    # so cuDNN re-tunes its kernels at nearly every iteration — measured 7× slower training with it on.
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)
    try:
        seed_everything(settings.seed)
        model = build_model(settings.model if checkpoint is None else
                            settings.model.model_copy(update={"pretrained": False}),
                            image_size=settings.data.image_size, image_mean=image_mean, image_std=image_std)
        init = model.init if checkpoint is None else checkpoint["init"]
        normalisation = {"mean": list(model.normalisation["mean"]), "std": list(model.normalisation["std"])}
        model.to(device)
        amp = bool(settings.train.amp and device.type == "cuda" and torch.cuda.is_bf16_supported())

        loader_generator = torch.Generator().manual_seed(settings.seed)
        train_loader = make_loader(train_dataset, settings.train.batch_size, True, settings.train.num_workers,
                                   device, loader_generator)
        val_loader = (make_loader(val_dataset, settings.train.batch_size, False, settings.train.num_workers, device,
                                  torch.Generator().manual_seed(settings.seed + _VAL_SEED_OFFSET))
                      if val_dataset is not None else None)
        optimizer = make_optimizer(model, settings)
        scheduler = make_scheduler(optimizer, settings, len(train_loader))

        history: list[dict] = []
        best: dict | None = None
        done, iteration = 0, 0
        resumed: list[dict] = []
        times = {"started": _now()}
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            set_rng_state(checkpoint["rng"], loader_generator)
            history, best = checkpoint["history"], checkpoint["best"]
            done, iteration = checkpoint["epoch"], checkpoint["iteration"]
            if paths["run.json"].is_file():
                old = json.loads(paths["run.json"].read_text())
                times = {**old.get("times", {}), **times}
                times["started"] = old.get("times", {}).get("started", times["started"])
                resumed = old.get("resumed", [])
            if done < epochs:
                resumed.append({"from_epoch": done, "epochs": epochs, "at": _now()})
            del checkpoint

        info = {
            "format": "bonetumor-run/1",
            "status": "running",
            "tag": settings.tag(),
            "settings": settings.model_dump(mode="json"),
            "normalisation": normalisation,
            "init": init,
            "n_train": len(train_dataset),
            "n_val": len(val_dataset) if val_dataset is not None else 0,
            "iterations_per_epoch": len(train_loader),
            "device": _device_info(device),
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

        def write_info(status: str, **extra) -> None:
            seconds = [float(r["seconds"]) for r in history]
            info.update(status=status, best=best, epochs_done=done, **extra)
            info["times"].update(updated=_now(), train_seconds=sum(seconds),
                                 seconds_per_epoch=float(np.mean(seconds)) if seconds else None)
            io.write_json(paths["run.json"], info)

        last = min(epochs, stop_after_epoch) if stop_after_epoch is not None else epochs
        if done >= last:
            write_info("complete" if done >= epochs else "stopped")
            return _summary(info, paths, history)

        bar = None
        if show == "bar":
            from tqdm.auto import tqdm

            bar = tqdm(total=(last - done) * len(train_loader), unit="it", dynamic_ncols=True, leave=True)
        write_info("running")
        epoch = done + 1
        step_in_epoch = 0  # optimizer steps taken in the current epoch
        epoch_first_iteration = iteration

        def count_step(step: int) -> None:
            nonlocal step_in_epoch
            step_in_epoch = step

        try:
            for epoch in range(done + 1, last + 1):
                step_in_epoch = 0
                epoch_first_iteration = iteration
                if bar is not None:
                    bar.set_description(f"epoch {epoch}/{epochs}")
                epoch_start = time.perf_counter()
                stats = train_one_epoch(model, optimizer, train_loader, device, epoch, scheduler, amp=amp,
                                        grad_clip=settings.train.grad_clip, progress=bar,
                                        first_iteration=iteration, on_step=count_step)
                iteration += len(train_loader)
                row = {"epoch": epoch, **{k: stats[k] for k in LOSS_TERMS + ("loss_total",)},
                       "lr": stats["lr"], "grad_norm": stats["grad_norm"]}
                val_seconds = 0.0
                if val_loader is not None:
                    val = validate(model, val_loader, device, settings.evaluate.mask_threshold, amp=amp,
                                   seed=settings.seed + epoch)
                    val_seconds = val.pop("val_seconds", 0.0)
                    row.update(val)
                    if val_metrics_fn is not None:
                        t0 = time.perf_counter()
                        with isolated_rng(settings.seed + epoch, device):
                            extra = val_metrics_fn(model, val_loader)
                        model.train()
                        for k, v in (extra or {}).items():
                            key = k if k.startswith("val_") else f"val_{k}"
                            row["val_ap50" if key.lower() == "val_ap50" else key] = float(v)
                        val_seconds += time.perf_counter() - t0
                row.update(seconds=time.perf_counter() - epoch_start, train_seconds=stats["train_seconds"],
                           val_seconds=val_seconds,
                           images_per_s=stats["images"] / stats["train_seconds"] if stats["train_seconds"] else float("nan"))
                history.append(row)
                done = epoch
                metric, mode, score = _best_score(row)
                is_best = best is None or score > best["score"]
                if is_best:
                    best = {"epoch": epoch, "metric": metric, "mode": mode, "value": float(row[metric]),
                            "score": score}

                state = checkpoint_state(model, optimizer, scheduler, settings, epoch, iteration, normalisation,
                                         init, history, best, loader_generator)
                save_checkpoint(state, paths["last.pt"])
                if is_best:
                    with io.atomic_path(paths["best.pt"]) as tmp:
                        shutil.copyfile(paths["last.pt"], tmp)
                    _save_safetensors(model, paths["model.safetensors"],
                                      {"settings": state["settings"], "normalisation": normalisation,
                                       "epoch": str(epoch), "init": init, "format": "bonetumor-weights/1"})
                del state
                _write_history(history, paths["history.csv"])
                write_info("running")
                eta = float(np.mean([r["seconds"] for r in history[-3:]])) * (last - epoch)
                if bar is not None:
                    bar.write(_epoch_line(row, epochs, eta))
                elif show == "line":
                    print(_epoch_line(row, epochs, eta), flush=True)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            state = checkpoint_state(model, optimizer, scheduler, settings, done, epoch_first_iteration + step_in_epoch,
                                     normalisation, init, history, best, loader_generator, partial=True,
                                     step_in_epoch=step_in_epoch)
            save_checkpoint(state, paths["interrupted.pt"])
            write_info("interrupted", interrupted={"epoch": epoch, "step": step_in_epoch, "at": _now()})
            print(f"interrupted in epoch {epoch} (step {step_in_epoch}): state saved to {paths['interrupted.pt']}; "
                  f"--resume restarts epoch {done + 1} from last.pt", file=sys.stderr, flush=True)
            raise
        except Exception as exc:
            write_info("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        if bar is not None:
            bar.close()
        paths["interrupted.pt"].unlink(missing_ok=True)  # superseded by a later complete epoch
        write_info("complete" if done >= epochs else "stopped", finished=_now())
        return _summary(info, paths, history)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.backends.cudnn.benchmark = previous_benchmark


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return None


def _write_history(history: list[dict], path: Path) -> None:
    import pandas as pd

    with io.atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def _summary(info: Mapping, paths: Mapping[str, Path], history: list[dict]) -> dict:
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
