"""``bonetumor predict RUN IMAGE... --out DIR``: detect tumours in one's own radiographs
(:func:`bonetumor.predict.predict_images`), at the score threshold chosen on the run's validation split;
batched, with a progress bar, streamed to ``detections.csv`` and resumable (``--resume``)."""

from __future__ import annotations

import os
from pathlib import Path

#: Images per forward pass unless ``--batch-size`` says otherwise.
DEFAULT_BATCH_SIZE = 8


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="detect tumours in your own radiographs: overlay PNGs + detections.csv")
    add_arguments(p)
    p.set_defaults(handler=predict_command)


def probability(text: str) -> float:
    """An argparse type: a finite number in [0, 1] (``nan`` or ``2`` are refused with a clear message)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def count(minimum: int):
    """An argparse type: a whole number ≥ ``minimum``."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text!r}")
        return value

    return parse


def default_workers(device) -> int:
    """DataLoader processes reading images: none on a CPU (the model needs the cores more than the reader),
    up to 4 beside a GPU."""
    return 0 if str(device).startswith("cpu") else max(0, min(4, (os.cpu_count() or 1) - 1))


def add_arguments(parser) -> None:
    """Arguments of ``bonetumor predict``."""
    parser.add_argument("run", metavar="RUN", help="run folder, or a run name under runs/")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="PNG/JPEG radiographs, or folders of them")
    parser.add_argument("--out", metavar="DIR", required=True, help="folder for overlays and detections.csv")
    parser.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint")
    parser.add_argument("--score-threshold", type=probability, default=None,
                        help="report detections at or above this score (default: the threshold chosen on the "
                             "validation split, RUN/score_threshold.json, else the run's settings)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--batch-size", type=count(1), default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"images per forward pass (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--workers", type=count(0), default=None, metavar="N",
                        help="processes reading images (default: 0 on a CPU, up to 4 beside a GPU)")
    parser.add_argument("--no-overlays", dest="overlays", action="store_false",
                        help="write detections.csv only, no overlay PNGs (drawing them costs more than "
                             "inference on a CPU)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped run into the same --out: keep detections.csv's rows, predict "
                             "only the images it lacks (and retry those it recorded as errors)")


def predict_command(args) -> int:
    """0 when every image was processed, 1 when any failed."""
    from bonetumor import pipeline
    from bonetumor.devices import device_for
    from bonetumor.modeling.checkpoints import load_model, read_run_info, resolve_run
    from bonetumor.predict import predict_images
    from bonetumor.predict.images import preprocess_as_cached

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder; name a folder for the overlays and detections.csv")
    device = device_for(args.device)
    run = resolve_run(args.run)
    settings = read_run_info(run).settings
    threshold = pipeline.score_threshold_for(run, settings, args.which, args.score_threshold)
    model, _ = load_model(run, which=args.which, device=device)
    workers = default_workers(device) if args.workers is None else args.workers
    df = predict_images(model, args.images, args.out, settings.data.image_size, score_threshold=threshold,
                        mask_threshold=settings.evaluate.mask_threshold, device=device, progress=True,
                        preprocess=preprocess_as_cached if settings.data.preprocess else False,
                        batch_size=args.batch_size, workers=workers, overlays=args.overlays, resume=args.resume)
    ok = df[~df["status"].str.startswith("error")]
    print(f"{ok['file'].nunique()} image(s) processed, {int((ok['status'] == 'ok').sum())} detection(s) at score ≥ "
          f"{threshold:g}; written to {Path(args.out) / 'detections.csv'}")
    return 1 if df.attrs.get("errors") else 0
