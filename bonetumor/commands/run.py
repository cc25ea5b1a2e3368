"""The sub-command that trains the model: ``train`` (``evaluate`` and ``predict`` have modules of their own).

Its options (:func:`add_train_options`) are also those of ``python -m bonetumor.train``, the module that
``torchrun`` starts on every process; ``bonetumor train --nproc N`` starts that torchrun itself
(:func:`torchrun_argv`).

One ``_add_<name>(subparsers)`` function and one ``<name>_command(args) -> int`` handler per sub-command;
:func:`register` calls every ``_add_*``. Heavy imports (torch, the pipeline) happen inside handlers, so
``bonetumor --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path



def register(subparsers) -> None:
    _add_train(subparsers)


# ---- shared options ----------------------------------------------------------------------------------

def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=None,
                        help="run profile: smoke, quick or full (default: full with a GPU, else quick)")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="BTXRD-layout folder (default: the profile's synthetic phantom)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set train.lr=0.005 --set model.width=0.25 (repeatable)")


def _settings(args, extra: dict | None = None):
    from bonetumor import config

    overrides = config.parse_overrides(args.overrides)
    if extra:
        overrides = config.merge_overrides(overrides, extra)
    return config.load(args.profile or config.default_profile(), overrides=overrides, data=args.data)


# ---- train -------------------------------------------------------------------------------------------

#: What ``bonetumor train`` does, for its help and ``python -m bonetumor.train``'s.
TRAIN_DESCRIPTION = ("Train the VGG-19 Mask R-CNN on the training split; checkpoints, history.csv, "
                     "model.safetensors and run.json go to --out. Under torchrun (or with --nproc) every "
                     "process trains with DistributedDataParallel; see the README's 'Training on several GPUs "
                     "or machines'.")


def _add_train(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the VGG-19 Mask R-CNN", description=TRAIN_DESCRIPTION)
    add_train_options(p)
    p.set_defaults(handler=train_command)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The options of ``bonetumor train`` (and of ``python -m bonetumor.train``)."""
    _add_settings_options(p)
    p.add_argument("--out", default=None, metavar="RUN",
                   help="run folder (default: runs/<profile>-<source>-<settings fingerprint> under BONETUMOR_RUNS)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last complete epoch (a fresh start if it has none)")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (default: the profile's)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    bars = p.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="progress bars with ETA (default when stderr is a terminal)")
    bars.add_argument("--no-progress", dest="progress", action="store_false",
                      help="one line per epoch (default when stderr is not a terminal)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes on this machine (DistributedDataParallel; N GPUs, or N CPU "
                        "shares): starts `torchrun --nproc-per-node N -m bonetumor.train` with the same options. "
                        "Several machines: run torchrun yourself (README)")


def train_command(args) -> int:
    from bonetumor import paths, pipeline
    from bonetumor.devices import device_for
    from bonetumor.engine import distributed
    from bonetumor.engine.loop import NonFiniteLossError
    from bonetumor.engine.trainer import train

    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    if args.nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # not yet under torchrun: start it
        return subprocess.call(torchrun_argv(args))
    settings = _settings(args, {"train": {"epochs": args.epochs}} if args.epochs is not None else None)
    out = Path(args.out).resolve() if args.out else paths.RUNS / settings.run_name
    with distributed.process_group(device_for(args.device)) as world:
        if world.is_main:
            print(f"training: {settings.tag()} -> {out}" + (f" ({world.size} processes)" if world.distributed
                                                            else ""), flush=True)
        with distributed.main_first(world):  # rank 0 writes the phantom and the cache, the others read them
            train_set, val_set, mean, std = pipeline.training_data(settings, progress=args.progress is not False)
        try:
            summary = train(settings, train_set, val_set, out, mean, std, resume=args.resume, device=args.device,
                            progress=args.progress, val_metrics_fn=pipeline.validation_metrics(settings))
        except NonFiniteLossError as exc:
            print(f"bonetumor: error: {exc}", file=sys.stderr)
            return 1
    if world.is_main:
        _print_summary(summary)
    return 0


def torchrun_argv(args) -> list[str]:
    """The command that runs ``args`` (parsed ``bonetumor train`` options) as ``args.nproc`` processes:
    ``python -m torch.distributed.run --standalone --nproc-per-node N -m bonetumor.train <the same options>``
    (``--standalone``: one machine, a free port found by torchrun)."""
    options = [*(["--profile", args.profile] if args.profile else []), *(["--data", args.data] if args.data else []),
               *[part for item in args.overrides for part in ("--set", item)],
               *(["--out", args.out] if args.out else []), *(["--resume"] if args.resume else []),
               *(["--epochs", str(args.epochs)] if args.epochs is not None else []),
               *(["--device", args.device] if args.device else []),
               *({True: ["--progress"], False: ["--no-progress"]}.get(args.progress, []))]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
            "-m", "bonetumor.train", *options]


def _print_summary(summary: dict) -> None:
    best = (f"best epoch {summary['best_epoch']} ({summary['best_metric']} {summary['best_value']:.4g})"
            if summary["best_epoch"] is not None else "no epoch trained")
    per_epoch = (f", {summary['seconds_per_epoch']:.1f} s/epoch" if summary["seconds_per_epoch"] else "")
    print(f"{summary['status']}: {summary['epochs_done']}/{summary['epochs']} epochs on {summary['device']}"
          f"{per_epoch}; {best}\n  weights {summary['weights']}\n  history {summary['history']}\n"
          f"  run     {summary['run_json']}", flush=True)
