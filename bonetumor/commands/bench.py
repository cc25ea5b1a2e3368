"""``bonetumor bench``: training and inference speed of this project against the stock torchvision composition
of the same network, and against the backbone alone (:mod:`bonetumor.benchmark`)."""

from __future__ import annotations

import json
import sys

from bonetumor.commands.run import _add_settings_options, _settings


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="speed against stock torchvision and the backbone bound",
                              description="Time training (forward+backward+step) and inference of (a) the stock "
                                          "torchvision composition of the profile's network, (b) this project's "
                                          "path and (c) the backbone alone, on one seeded synthetic batch, in one "
                                          "process. The ratio (b)/(a) is printed last. Timings on a shared machine "
                                          "are noisy: compare ratios, not absolute numbers.")
    _add_settings_options(p)
    p.add_argument("--fast", action="store_true",
                   help="lay the project's speed settings over the profile (model.separable_roi_align, "
                        "train.cpu_bf16; model.channels_last on CUDA)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the physical cores on CPU, torch's default on CUDA)")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per case (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per case first (default 2)")
    p.add_argument("--iters", type=int, default=2, help="steps per timed repetition (default 2)")
    p.add_argument("--infer-batch", type=int, default=8, help="the larger inference batch (default 8)")
    p.add_argument("--lesions", type=int, default=1, help="lesions per synthetic image (default 1)")
    p.add_argument("--loader", action="store_true",
                   help="also time the profile's training DataLoader alone (builds the profile's data if absent)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write DIR/benchmark.csv and DIR/benchmark.md (e.g. reports/tables)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=bench_command)


def _threads(requested: int | None, device) -> int:
    import os

    import torch

    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1, got {requested}")
        return requested
    if device.type != "cpu":
        return torch.get_num_threads()
    try:
        import psutil
        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def bench_command(args) -> int:
    import torch

    from bonetumor import benchmark
    from bonetumor.devices import device_for

    device = device_for(args.device)
    settings = _settings(args, benchmark.fast_path(device) if args.fast else None)
    torch.set_num_threads(_threads(args.threads, device))
    result = benchmark.benchmark(settings, device, repeats=args.repeats, warmup=args.warmup, iters=args.iters,
                                 infer_batch=args.infer_batch, lesions=args.lesions, seed=settings.seed)
    if args.loader:
        from bonetumor import pipeline

        train_set = pipeline.training_data(settings)[0]
        result["loader"] = benchmark.loader_rate(train_set, settings, device, repeats=args.repeats)
        step = result["results"]["project"]["train_images_per_s"]["median"]
        result["loader"]["over_train_step"] = result["loader"]["images_per_s"]["median"] / step
    if args.out:
        for path in benchmark.write_tables(result, args.out):
            print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else benchmark.format_text(result), end="" if not args.json
          else "\n")
    return 0
