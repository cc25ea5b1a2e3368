"""DistributedDataParallel training (:mod:`bonetumor.engine.distributed`) on CPU: two processes with the gloo
backend, started by ``torch.multiprocessing.spawn``, train the smoke profile's model on a few phantom images.

* the two processes' weights are identical after every optimiser step;
* the loss curve of 2 processes × batch 1 follows a single process with batch 2 (the same images at each
  step, the same learning rate by the linear scaling rule) within :data:`LOSS_TOLERANCE`;
* rank 0 writes the run folder (run.json records the world size), and a DDP run stopped after one epoch
  and resumed ends with exactly the weights of one that never stopped; a resume with another number of
  processes is refused;
* ``bonetumor train --nproc 2`` starts torchrun with the same options (end to end: marked slow).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler, Subset

from bonetumor import cli, config, pipeline
from bonetumor.commands import run as run_command
from bonetumor.engine import distributed
from bonetumor.engine.trainer import train
from bonetumor.modeling.checkpoints import load_checkpoint

WORLD = 2
#: Steps of the first epoch whose losses are compared with the single-process run.
COMPARED_STEPS = 3
#: Largest relative difference allowed, at each compared step, between the DDP loss (the mean of the two
#: processes' losses) and the loss of one process reading the same two images with the same starting weights
#: and learning rate. Augmentation is off and every image has a lesion; what is left differs by design:
#:
#: * ``vgg19``: RPN/RoI sampling draws other random numbers in each process than in the single one.
#:   Measured on this phantom: 0.3 %, 0.001 %, 1.2 % at steps 1–3; allowed 3 %.
#: * ``vgg19_bn`` (the smoke profile's): BatchNorm as well. On CPU each process normalises its batch of one
#:   image with that image's statistics (SyncBatchNorm needs CUDA), the single process its batch of two, so
#:   the forward pass itself differs: measured 11 % at step 1 (before any update), 0.02 % and 0.9 % at
#:   steps 2–3; allowed 20 %. SyncBatchNorm on CUDA would remove this part (not exercised here).
#:
#: With lesion-free images in a batch the curves differ further, by definition rather than error: Mask
#: R-CNN averages its box and mask terms over the RoIs of the whole batch, DDP per process (measured 15 % at a
#: step that paired a normal image with a lesion); and augmentation drawn per process adds 4–6 %.
LOSS_TOLERANCE = {"vgg19": 0.03, "vgg19_bn": 0.20}


def _settings(root, batch_size: int, lr: float, backbone: str = "vgg19_bn", epochs: int = 2) -> config.Settings:
    """The smoke profile's model on a 16-image, 96-px phantom in ``root``, no workers, no augmentation."""
    settings = config.load("smoke", overrides={
        "data": {"phantom_images": 16, "phantom_size": 96, "image_size": 96, "path": str(root)},
        "model": {"backbone": backbone},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "num_workers": 0, "augment": False}})
    return settings.model_copy(update={"data": settings.data.model_copy(update={"source": "phantom"})})


def _digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in order."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, settings, data, run_dir, log_dir, resume: bool, stop_after_epoch) -> None:
    """One process of the world: torchrun's environment by hand, then :func:`train`; each step's losses and
    weight digest go to ``log_dir/rank<r>.json``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    steps = []

    def record(model, epoch, step, losses):
        steps.append({"epoch": epoch, "step": step, "loss": losses["loss_total"], "digest": _digest(model)})

    train_set, val_set, mean, std = data
    train(settings, train_set, val_set, run_dir, mean, std, resume=resume, device="cpu", progress="off",
          on_step=record, stop_after_epoch=stop_after_epoch)
    (log_dir / f"rank{rank}.json").write_text(json.dumps(steps))


def _spawn(settings, data, run_dir, log_dir, resume: bool = False, stop_after_epoch=None) -> list[list[dict]]:
    """Train with two processes; each rank's step records."""
    log_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(_free_port(), settings, data, run_dir, log_dir, resume, stop_after_epoch),
             nprocs=WORLD, join=True)
    return [json.loads((log_dir / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """The DDP settings and ``(train set, val set, mean, std)`` of the phantom (generated once): its training
    images that have a lesion, so that every image of a batch weighs the same in each loss term."""
    root = tmp_path_factory.mktemp("ddp") / "BTXRD"
    settings = _settings(root, batch_size=1, lr=0.001)
    train_set, val_set, mean, std = pipeline.training_data(settings, pipeline.prepare(settings, progress=False))
    lesions = Subset(train_set, [i for i in range(len(train_set)) if len(train_set[i][1]["boxes"])])
    assert len(lesions) >= WORLD * COMPARED_STEPS
    return settings, (lesions, val_set, mean, std)


@pytest.fixture(scope="module")
def ddp_run(phantom, tmp_path_factory):
    """Two processes × batch 1 of the smoke profile's model (``vgg19_bn``), two epochs, never interrupted."""
    settings, data = phantom
    root = tmp_path_factory.mktemp("ddp-run")
    return root / "run", _spawn(settings, data, root / "run", root / "log")


def test_the_processes_weights_are_identical_after_every_step(ddp_run, phantom):
    run_dir, (rank0, rank1) = ddp_run
    n_train = len(phantom[1][0])
    assert len(rank0) == len(rank1) == 2 * -(-n_train // WORLD)  # two epochs of ceil(n / 2) steps each
    assert [s["digest"] for s in rank0] == [s["digest"] for s in rank1]
    assert len({s["digest"] for s in rank0}) == len(rank0)  # and they change at every step
    assert [s["loss"] for s in rank0] != [s["loss"] for s in rank1]  # each saw its own images


def test_rank_0_writes_the_run_folder_with_the_world_size(ddp_run, phantom):
    run_dir, _ = ddp_run
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["world_size"] == WORLD
    assert record["global_batch_size"] == WORLD * 1 and record["lr_applied"] == pytest.approx(WORLD * 0.001)
    assert record["iterations_per_epoch"] == -(-len(phantom[1][0]) // WORLD)
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert checkpoint["epoch"] == 2 and "val_loss_total" in checkpoint["history"][-1]
    assert not any(k.startswith("module.") for k in checkpoint["model"])  # the model's own names, not DDP's


def _one_process_losses(settings, data, run_dir, monkeypatch) -> list[float]:
    """The first epoch's step losses of one process that reads the DDP run's permutation (a
    DistributedSampler of one replica at epoch 1), so that its step k holds exactly the images that the two
    processes read at their step k."""
    def same_order(dataset, world, seed):
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
        sampler.set_epoch(1)
        return sampler

    monkeypatch.setattr(distributed, "training_sampler", same_order)
    losses = []
    train(settings, data[0], None, run_dir, data[2], data[3], device="cpu", progress="off", stop_after_epoch=1,
          on_step=lambda model, epoch, step, terms: losses.append(terms["loss_total"]))
    return losses


@pytest.mark.parametrize("backbone", ["vgg19_bn", "vgg19"])
def test_the_loss_curve_follows_one_process_with_the_global_batch(backbone, ddp_run, phantom, tmp_path,
                                                                  monkeypatch):
    settings, data = phantom
    root = settings.data.path
    if backbone == "vgg19_bn":
        _, (rank0, rank1) = ddp_run
    else:
        rank0, rank1 = _spawn(_settings(root, 1, 0.001, backbone, epochs=1), data, tmp_path / "ddp", tmp_path / "log")
    # the linear rule: 2 processes × batch 1 at lr 0.001 train at 0.002, as one process with batch 2 does
    single = _one_process_losses(_settings(root, 2, 0.002, backbone), data, tmp_path / "single", monkeypatch)
    ddp = [(a["loss"] + b["loss"]) / 2 for a, b in zip(rank0, rank1)][:COMPARED_STEPS]
    relative = [abs(d - s) / s for d, s in zip(ddp, single[:COMPARED_STEPS])]
    assert len(relative) == COMPARED_STEPS
    assert max(relative) <= LOSS_TOLERANCE[backbone], f"DDP {ddp}, one process {single}: relative {relative}"


@pytest.mark.slow  # two more worlds of two processes (about 30 s on 2 cores)
def test_a_stopped_and_resumed_ddp_run_ends_with_the_same_weights(ddp_run, phantom, tmp_path):
    run_dir, (rank0, _) = ddp_run
    settings, data = phantom
    first = _spawn(settings, data, tmp_path / "run", tmp_path / "log1", stop_after_epoch=1)
    second = _spawn(settings, data, tmp_path / "run", tmp_path / "log2", resume=True)
    assert [s["digest"] for s in first[0] + second[0]] == [s["digest"] for s in rank0]
    assert [s["digest"] for s in second[0]] == [s["digest"] for s in second[1]]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "complete" and record["resumed"][0]["from_epoch"] == 1


def test_a_resume_with_another_number_of_processes_is_refused(ddp_run, phantom, tmp_path):
    run_dir, _ = ddp_run
    settings, data = phantom
    more = settings.model_copy(update={"train": settings.train.model_copy(update={"epochs": 3})})
    with pytest.raises(ValueError, match="2 process"):
        train(more, data[0], data[1], run_dir, data[2], data[3], resume=True, device="cpu", progress="off")


def test_a_world_of_one_makes_no_process_group_and_changes_nothing(phantom):
    settings, _ = phantom
    world = distributed.current_world()
    assert world == distributed.World() and not world.distributed and world.is_main
    with distributed.process_group(torch.device("cpu")) as inside:
        assert inside == world and not torch.distributed.is_initialized()
    assert distributed.scaled_settings(settings, world) is settings
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, world, torch.device("cpu"), "vgg19_bn") is model
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"


def test_train_nproc_starts_torchrun_with_the_same_options():
    args = cli.build_parser().parse_args(
        ["train", "--profile", "smoke", "--set", "model.anchor_sizes=[16, 32]", "--set", "train.lr=0.01",
         "--out", "runs/x", "--resume", "--epochs", "2", "--device", "cpu", "--no-progress", "--nproc", "2"])
    argv = run_command.torchrun_argv(args)
    assert argv[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    assert argv[6:] == ["bonetumor.train", "--profile", "smoke", "--set", "model.anchor_sizes=[16, 32]",
                        "--set", "train.lr=0.01", "--out", "runs/x", "--resume", "--epochs", "2", "--device",
                        "cpu", "--no-progress"]
    # the module torchrun runs parses exactly these options
    from bonetumor import train as entry

    assert entry.main(["--epochs", "0"]) == 2


@pytest.mark.slow  # two fresh interpreters import torch and train (about 40 s on 2 cores)
def test_bonetumor_train_nproc_2_end_to_end(tmp_path):
    env = {**os.environ, "BONETUMOR_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "bonetumor.cli", "train", "--profile", "smoke", "--nproc", "2", "--device", "cpu",
         "--epochs", "1", "--out", str(out), "--no-progress", "--set", "data.phantom_images=8",
         "--set", "data.phantom_size=96", "--set", "data.image_size=96"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("complete: 1/1 epochs") == 1  # rank 0 alone prints
    record = json.loads((out / "run.json").read_text())
    assert record["world_size"] == 2 and record["status"] == "complete"
