"""Training on several processes with PyTorch's own DistributedDataParallel (DDP), started by ``torchrun``.

``torchrun`` starts one process per GPU (or per CPU share) and tells each one its place through environment
variables: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``. :func:`process_group`
reads them. A world of one process — plain ``bonetumor train``, or ``torchrun --nproc-per-node 1`` — creates
no process group and changes nothing: single-process training stays byte-for-byte what it was.

The rules under DDP (also in the README, "Training on several GPUs or machines"):

* **Backend**: ``nccl`` on CUDA, one GPU per process (``cuda:LOCAL_RANK``); ``gloo`` on CPU.
* **Data**: each process reads its own share of the training set through a
  :class:`~torch.utils.data.DistributedSampler` seeded with ``settings.seed`` and reshuffled every epoch
  (``set_epoch``), so the order is the same run to run and on resume. Step *k* of the world together sees
  the same images as step *k* of one process reading the same permutation with a batch ``world_size``
  times larger.
* **Learning rate — the linear scaling rule** (Goyal et al., 2017, "Accurate, large minibatch SGD"):
  ``settings.train.lr`` is the rate for one process's batch of ``settings.train.batch_size`` images; the
  global batch is ``world_size × batch_size``, so the optimiser runs at
  ``lr × world_size`` (:func:`scaled_settings`). ``warmup_iters`` still counts optimiser steps; an epoch
  has ``world_size`` times fewer of them.
* **BatchNorm** (``vgg19_bn``): SyncBatchNorm on CUDA (``convert_sync_batchnorm``), so every layer
  normalises with the statistics of the global batch. On CPU torch refuses SyncBatchNorm ("SyncBatchNorm
  expected input tensor to be on GPU"; checked with torch 2.x), so BatchNorm stays per process: each
  normalises with the statistics of its own batch, and DDP's buffer synchronisation (``broadcast_buffers``,
  on by default) copies rank 0's running statistics to every process before each forward pass. ``vgg19``
  has no BatchNorm.
* **Randomness**: the model is built from ``seed`` in every process (and DDP broadcasts rank 0's weights
  anyway); then, at each epoch, every process reseeds its generators from the seed, the epoch and its rank
  (:func:`seed_epoch`): augmentation and RPN/RoI sampling differ between processes, as they would for
  other images, and a run resumed at any epoch repeats them.
* **Files**: rank 0 alone validates and writes checkpoints, ``history.csv`` and ``run.json``; the other
  processes wait for it at a barrier at the end of every epoch. The history's training losses are means
  over all processes' images. A resume loads ``last.pt`` in every process (to the CPU, then onto its
  device); it must use the same number of processes as the run it continues.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bonetumor.config import Settings
from bonetumor.engine.determinism import seed_everything

#: How long a process waits at a collective (e.g. for rank 0's validation and checkpoint) before failing.
TIMEOUT = timedelta(minutes=60)
#: Separates the per-epoch seeds of :func:`seed_epoch` (a prime larger than any world).
_EPOCH_STRIDE = 1_000_003


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` processes and its rank on its machine."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates, writes the run folder and prints."""
        return self.rank == 0


def current_world() -> World:
    """The world of this process: from the process group when there is one, else from torchrun's
    environment variables, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size())
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                 int(os.environ.get("WORLD_SIZE", 1)))


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA, ``gloo`` for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def process_device(device: torch.device, world: World) -> torch.device:
    """The device of this process: under DDP on CUDA, ``cuda:LOCAL_RANK`` (one GPU per process, whatever
    index was asked for); otherwise ``device`` itself."""
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join torchrun's process group for the block, and leave it after. A world of one, or a group that
    already exists (made by a caller), is used as it is and left standing."""
    world = current_world()
    if not world.distributed or dist.is_initialized():
        yield world
        return
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend_for(device), timeout=TIMEOUT)
    try:
        yield current_world()
    finally:
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every process (nothing to wait for in a world of one)."""
    if world.distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. writing a dataset or cache); the others run it once it is done,
    so they read what rank 0 wrote instead of racing to write it."""
    if not world.is_main:
        barrier(world)
    yield
    if world.is_main:
        barrier(world)


def scaled_settings(settings: Settings, world: World) -> Settings:
    """``settings`` with the learning rate scaled by the linear rule: ``train.lr × world_size`` (the global
    batch, ``world_size × batch_size``, over one process's batch). A world of one gets ``settings`` itself."""
    if not world.distributed:
        return settings
    return settings.model_copy(update={"train": settings.train.model_copy(
        update={"lr": settings.train.lr * world.size})})


def training_sampler(dataset: Dataset, world: World, seed: int) -> DistributedSampler | None:
    """This process's share of the training set, reshuffled each epoch from ``seed`` (None in a world of
    one: the loader shuffles with its own seeded generator, as it always has)."""
    if not world.distributed:
        return None
    return DistributedSampler(dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed,
                              drop_last=False)


def seed_epoch(loader: DataLoader, seed: int, epoch: int, world: World,
               loader_generator: torch.Generator) -> None:
    """Under DDP, at the start of an epoch: reshuffle the sampler for ``epoch`` and reseed this process's
    generators from ``(seed, epoch, rank)``, so a run resumed at any epoch repeats every process's random
    numbers (only rank 0's generators are in the checkpoint). Nothing in a world of one."""
    if not world.distributed:
        return
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    epoch_seed = (seed + _EPOCH_STRIDE * epoch) * world.size + world.rank
    seed_everything(epoch_seed)
    loader_generator.manual_seed(epoch_seed)


def wrap_model(model: nn.Module, world: World, device: torch.device, backbone: str) -> nn.Module:
    """The module that trains: ``model`` itself in a world of one; else ``model`` in
    DistributedDataParallel, with SyncBatchNorm for ``vgg19_bn`` on CUDA (CPU: plain BatchNorm, see the
    module's docstring). :func:`unwrap` gives back the model whose weights are saved."""
    if not world.distributed:
        return model
    if backbone == "vgg19_bn" and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # DDP's default buffer synchronisation stays on: rank 0's BatchNorm running statistics before every forward
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (``model`` itself when it has none)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def mean_over_processes(stats: Mapping[str, float], keys: tuple[str, ...], world: World,
                        device: torch.device) -> dict:
    """An epoch's statistics for the whole world: each of ``keys`` (a mean over this process's images)
    becomes the mean over every process's images, ``images`` their sum, ``train_seconds`` the slowest
    process's. ``device``: where the collective's tensors live (CUDA for nccl). ``stats`` as it is in a world
    of one."""
    if not world.distributed:
        return dict(stats)
    n = float(stats["images"])
    values = torch.tensor([stats[k] * n for k in keys] + [n], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    seconds = torch.tensor([float(stats["train_seconds"])], dtype=torch.float64, device=device)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    total = values[-1].item()
    out = dict(stats)
    out.update({k: values[i].item() / total for i, k in enumerate(keys)})
    out.update(images=int(total), train_seconds=seconds.item())
    return out
