"""Training of the VGG-19 Mask R-CNN: :func:`train`, a short list of named steps.

In the style of torchvision's ``references/detection``: SGD with momentum (or AdamW) with a linear
warm-up, then a cosine (or multistep) decay over the *whole* run, stepped every iteration
(:mod:`bonetumor.engine.schedule`); gradient clipping; bfloat16 autocast on CUDA
(:mod:`bonetumor.engine.loop`). On CPU the run is seeded and deterministic
(``torch.use_deterministic_algorithms``, :mod:`bonetumor.engine.determinism`), and a run that is killed
and resumed ends with exactly the same weights as one that never stopped. The files of a run folder are
described in :mod:`bonetumor.engine.run_files`.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bonetumor import io
from bonetumor.config import Settings
from bonetumor.engine import distributed
from bonetumor.engine import progress as report
from bonetumor.engine import run_files
from bonetumor.data.dataset import class_balanced_sampler
from bonetumor.devices import device_for
from bonetumor.engine.determinism import deterministic_algorithms, isolated_rng, rng_state, seed_everything
from bonetumor.engine.distributed import World
from bonetumor.engine.loop import make_loader, train_one_epoch
from bonetumor.engine.resume import checkpoint_to_resume, kept_normalisation, restore
from bonetumor.engine.schedule import make_optimizer, make_scheduler
from bonetumor.engine.validation import VAL_SEED_OFFSET, validate
from bonetumor.modeling.checkpoints import WEIGHTS_FORMAT, checkpoint_state, save_checkpoint, save_safetensors
from bonetumor.modeling.vgg_maskrcnn import AUXILIARY_LOSS_TERMS, LOSS_TERMS, autocast_wanted, build_model

log = logging.getLogger(__name__)


@dataclass
class _Session:
    """What one call of :func:`train` works with: the model, its optimiser and loaders, and the state of
    the run (history, best epoch, epochs and iterations done, the current epoch and step for Ctrl-C).
    ``model`` is the model whose weights are saved; ``trained`` the module the steps run (``model`` itself,
    or ``model`` in DistributedDataParallel under torchrun)."""

    settings: Settings
    paths: dict[str, Path]
    device: torch.device
    world: World
    model: nn.Module
    trained: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader_generator: torch.Generator
    train_loader: DataLoader
    val_loader: DataLoader | None
    amp: bool
    init: str
    normalisation: dict
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    done: int = 0
    iteration: int = 0
    info: dict = field(default_factory=dict)
    epoch: int = 0
    step_in_epoch: int = 0  # optimizer steps taken in the current epoch
    epoch_first_iteration: int = 0
    on_step: Callable[[nn.Module, int, int, dict], None] | None = None

    def count_step(self, step: int, losses: dict) -> None:
        self.step_in_epoch = step
        if self.on_step is not None:
            self.on_step(self.model, self.epoch, step, losses)

    def write_record(self, status: str, **extra) -> None:
        """Update the run record; rank 0 alone writes it to run.json."""
        run_files.write_record(self.info, self.paths["run.json"], self.history, status, self.best, self.done,
                               write=self.world.is_main, **extra)

    def checkpoint(self, epoch: int, iteration: int, **partial) -> dict:
        return checkpoint_state(self.model, self.optimizer, self.scheduler, self.settings, epoch, iteration,
                                self.normalisation, self.init, self.history, self.best,
                                rng_state(self.loader_generator), **partial)


def train(settings: Settings, train_dataset: Dataset, val_dataset: Dataset | None, run_dir: str | os.PathLike,
          image_mean: Sequence[float], image_std: Sequence[float], resume: bool = False,
          device: str | torch.device | None = None, progress: bool | str | None = None,
          val_metrics_fn: Callable[[nn.Module, DataLoader], Mapping[str, float]] | None = None,
          stop_after_epoch: int | None = None,
          on_step: Callable[[nn.Module, int, int, dict], None] | None = None) -> dict:
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
    ``on_step(model, epoch, step, losses)``: called after every optimizer step (for monitoring and tests).
    Under ``torchrun`` (several processes) it trains with DistributedDataParallel, see
    :mod:`bonetumor.engine.distributed`; rank 0 alone writes the run folder.

    Returns a summary: status, epochs done, best epoch and metric, paths of the files, seconds.
    """
    paths = run_files.run_paths(run_dir)
    epochs = settings.train.epochs
    device = device_for(device)
    val_dataset = _checked_datasets(train_dataset, val_dataset)
    checkpoint = checkpoint_to_resume(paths, settings, resume)
    data = run_files.data_record(settings)
    if checkpoint is not None:
        image_mean, image_std = kept_normalisation(checkpoint, image_mean, image_std)
    with distributed.process_group(device) as world, deterministic_algorithms(device.type == "cpu") as deterministic:
        device = distributed.process_device(device, world)
        show = report.resolve_progress(progress) if world.is_main else "off"
        seed_everything(settings.seed)
        session = _start_session(settings, paths, device, world, train_dataset, val_dataset, image_mean,
                                 image_std, checkpoint)
        session.on_step = on_step
        times, resumed = {"started": run_files.now()}, []
        if checkpoint is not None:
            times, resumed, data = restore(session, checkpoint, times, data)
            del checkpoint
        session.info = run_files.run_record(
            settings=settings, normalisation=session.normalisation, init=session.init, n_train=len(train_dataset),
            n_val=len(val_dataset) if val_dataset is not None else 0,
            iterations_per_epoch=len(session.train_loader), device=device, amp=session.amp,
            deterministic=deterministic, best=session.best, done=session.done, resumed=resumed, paths=paths,
            times=times, data=data, world_size=world.size)
        last = min(epochs, stop_after_epoch) if stop_after_epoch is not None else epochs
        if session.done < last:
            _run_epochs(session, last, show, val_metrics_fn)
            paths["interrupted.pt"].unlink(missing_ok=True)  # superseded by a later complete epoch
            session.write_record("complete" if session.done >= epochs else "stopped", finished=run_files.now())
        else:
            session.write_record("complete" if session.done >= epochs else "stopped")
        return run_files.summary(session.info, paths, session.history)


# ---- before the first epoch --------------------------------------------------------------------------

def _checked_datasets(train_dataset: Dataset, val_dataset: Dataset | None) -> Dataset | None:
    """Refuse an empty training set; an empty validation set counts as none."""
    if len(train_dataset) == 0:
        raise ValueError("the training set is empty")
    if val_dataset is not None and len(val_dataset) == 0:
        return None
    return val_dataset


def _start_session(settings: Settings, paths: dict[str, Path], device: torch.device, world: World,
                   train_dataset: Dataset, val_dataset: Dataset | None, image_mean, image_std,
                   checkpoint: Mapping | None) -> _Session:
    """Build the model (ImageNet weights only for a fresh run: a resumed one loads the checkpoint's), the
    seeded loaders, optimiser and schedule; under DDP (:mod:`bonetumor.engine.distributed`) the model in
    its wrapper, this process's share of the data, the learning rate scaled, validation on rank 0 only."""
    model = build_model(settings.model if checkpoint is None else
                        settings.model.model_copy(update={"pretrained": False}),
                        image_size=settings.data.image_size, image_mean=image_mean, image_std=image_std)
    # crops are trained at the scale of the whole images they come from (never resized to image_size)
    model.transform.resize_in_training = settings.train.crop_size is None
    init = model.init if checkpoint is None else checkpoint["init"]
    normalisation = {"mean": list(model.normalisation["mean"]), "std": list(model.normalisation["std"])}
    model.to(device)
    trained = distributed.wrap_model(model, world, device, settings.model.backbone)
    model = distributed.unwrap(trained)
    amp = autocast_wanted(settings, device)
    loader_generator = torch.Generator().manual_seed(settings.seed)
    if settings.train.balanced_sampling:
        if world.distributed:
            raise ValueError("train.balanced_sampling works in one process only; train without --nproc/torchrun "
                             "or set train.balanced_sampling=false")
        sampler = class_balanced_sampler(train_dataset.records, loader_generator)
    else:
        sampler = distributed.training_sampler(train_dataset, world, settings.seed)
    train_loader = make_loader(train_dataset, settings.train.batch_size, True, settings.train.num_workers,
                               device, loader_generator, sampler)
    val_loader = (make_loader(val_dataset, settings.train.batch_size, False, settings.train.num_workers, device,
                              torch.Generator().manual_seed(settings.seed + VAL_SEED_OFFSET))
                  if val_dataset is not None and world.is_main else None)
    optimizer = make_optimizer(model, distributed.scaled_settings(settings, world))
    scheduler = make_scheduler(optimizer, settings, len(train_loader))
    return _Session(settings, paths, device, world, model, trained, optimizer, scheduler, loader_generator,
                    train_loader, val_loader, amp, init, normalisation)


# ---- the epochs --------------------------------------------------------------------------------------

def _run_epochs(session: _Session, last: int, show: str, val_metrics_fn) -> None:
    """Epochs ``done + 1`` to ``last``: train, validate, keep the best, checkpoint, report. Ctrl-C saves
    ``interrupted.pt`` and re-raises; any other error is recorded in run.json and re-raised."""
    bar = report.progress_bar(show, (last - session.done) * len(session.train_loader))
    session.write_record("running")
    session.epoch = session.done + 1
    session.step_in_epoch = 0
    session.epoch_first_iteration = session.iteration
    try:
        for epoch in range(session.done + 1, last + 1):
            row = _train_and_validate(session, epoch, bar, val_metrics_fn)
            is_best = _record_epoch(session, epoch, row)
            if session.world.is_main:
                _save_epoch(session, epoch, is_best)
            distributed.barrier(session.world)  # every process leaves the epoch with its files on disk
            _report_epoch(session, row, last, bar, show)
    except KeyboardInterrupt:
        if session.world.is_main:
            _save_interrupted(session, bar)
        raise
    except Exception as exc:
        try:
            session.write_record("failed", error=f"{type(exc).__name__}: {exc}")
        except OSError as record_error:  # e.g. the disk that failed the epoch's files is still full
            log.warning("could not record the failure in %s: %s", session.paths["run.json"], record_error)
        raise
    if bar is not None:
        bar.close()


def _train_and_validate(session: _Session, epoch: int, bar, val_metrics_fn) -> dict:
    """One epoch of training, then validation: the epoch's history row."""
    session.epoch, session.step_in_epoch, session.epoch_first_iteration = epoch, 0, session.iteration
    if bar is not None:
        bar.set_description(f"epoch {epoch}/{session.settings.train.epochs}")
    epoch_start = time.perf_counter()
    distributed.seed_epoch(session.train_loader, session.settings.seed, epoch, session.world,
                           session.loader_generator)
    stats = train_one_epoch(session.trained, session.optimizer, session.train_loader, session.device, epoch,
                            session.scheduler, amp=session.amp, grad_clip=session.settings.train.grad_clip,
                            progress=bar, first_iteration=session.iteration, on_step=session.count_step)
    terms = LOSS_TERMS + tuple(t for t in AUXILIARY_LOSS_TERMS if t in stats) + ("loss_total",)
    stats = distributed.mean_over_processes(stats, terms, session.world, session.device)
    session.iteration += len(session.train_loader)
    row = {"epoch": epoch, **{k: stats[k] for k in terms},
           "lr": stats["lr"], "grad_norm": stats["grad_norm"]}
    val_seconds = _validate_into(session, epoch, row, val_metrics_fn) if session.val_loader is not None else 0.0
    row.update(seconds=time.perf_counter() - epoch_start, train_seconds=stats["train_seconds"],
               val_seconds=val_seconds,
               images_per_s=stats["images"] / stats["train_seconds"] if stats["train_seconds"] else float("nan"))
    return row


def _validate_into(session: _Session, epoch: int, row: dict, val_metrics_fn) -> float:
    """Validation losses and mask quality, then ``val_metrics_fn``'s metrics (in their own RNG stream),
    added to ``row``; returns the seconds taken."""
    settings = session.settings
    val = validate(session.model, session.val_loader, session.device, settings.evaluate.mask_threshold,
                   amp=session.amp, seed=settings.seed + epoch)
    val_seconds = val.pop("val_seconds", 0.0)
    row.update(val)
    if val_metrics_fn is not None:
        t0 = time.perf_counter()
        with isolated_rng(settings.seed + epoch, session.device):
            extra = val_metrics_fn(session.model, session.val_loader)
        session.model.train()
        for k, v in (extra or {}).items():
            key = k if k.startswith("val_") else f"val_{k}"
            row["val_ap50" if key.lower() == "val_ap50" else key] = float(v)
        val_seconds += time.perf_counter() - t0
    return val_seconds


def _record_epoch(session: _Session, epoch: int, row: dict) -> bool:
    """Append the row to the history, count the epoch done; whether it is the best so far."""
    session.history.append(row)
    session.done = epoch
    metric, mode, score = run_files.best_score(row)
    is_best = session.best is None or score > session.best["score"]
    if is_best:
        session.best = {"epoch": epoch, "metric": metric, "mode": mode, "value": float(row[metric]), "score": score}
    return is_best


def _save_epoch(session: _Session, epoch: int, is_best: bool) -> None:
    """At a best epoch ``best.pt`` and ``model.safetensors``; ``history.csv``; then ``last.pt`` (at a best
    epoch a byte copy of ``best.pt``); then run.json. ``last.pt``, where a resume starts, comes after the
    files of its epoch: a failure before it (a full disk) leaves the previous epoch's ``last.pt``, and the
    resumed run writes this epoch's files again, so a run never looks complete without its best weights."""
    paths = session.paths
    state = session.checkpoint(epoch, session.iteration)
    if is_best:
        save_checkpoint(state, paths["best.pt"])
        save_safetensors(session.model, paths["model.safetensors"],
                         {"settings": state["settings"], "normalisation": session.normalisation,
                          "epoch": str(epoch), "init": session.init, "format": WEIGHTS_FORMAT})
    run_files.write_history(session.history, paths["history.csv"])
    if is_best:
        with io.atomic_path(paths["last.pt"]) as tmp:
            shutil.copyfile(paths["best.pt"], tmp)
    else:
        save_checkpoint(state, paths["last.pt"])
    del state
    session.write_record("running")


def _report_epoch(session: _Session, row: Mapping, last: int, bar, show: str) -> None:
    """The epoch's line under the progress bar, or printed (``show == "line"``), with the time left."""
    eta = float(np.mean([r["seconds"] for r in session.history[-3:]])) * (last - row["epoch"])
    if bar is not None:
        bar.write(report.epoch_line(row, session.settings.train.epochs, eta))
    elif show == "line":
        print(report.epoch_line(row, session.settings.train.epochs, eta), flush=True)


def _save_interrupted(session: _Session, bar) -> None:
    """Ctrl-C: the mid-epoch state to ``interrupted.pt`` (``last.pt`` untouched), run.json, a message."""
    if bar is not None:
        bar.close()
    step = session.step_in_epoch
    state = session.checkpoint(session.done, session.epoch_first_iteration + step, partial=True, step_in_epoch=step)
    save_checkpoint(state, session.paths["interrupted.pt"])
    session.write_record("interrupted", interrupted={"epoch": session.epoch, "step": step, "at": run_files.now()})
    print(f"interrupted in epoch {session.epoch} (step {step}): state saved to {session.paths['interrupted.pt']}; "
          f"--resume restarts epoch {session.done + 1} from last.pt", file=sys.stderr, flush=True)
