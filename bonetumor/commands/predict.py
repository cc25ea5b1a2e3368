"""``bonetumor predict RUN IMAGE... --out DIR``: detect tumours in one's own radiographs
(:func:`bonetumor.predict.predict_images`), at the score threshold chosen on the run's validation split."""

from __future__ import annotations

from pathlib import Path


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


def predict_command(args) -> int:
    """0 when every image was processed, 1 when any failed."""
    from bonetumor import pipeline
    from bonetumor.devices import device_for
    from bonetumor.modeling.checkpoints import load_model, read_run_info, resolve_run
    from bonetumor.predict import predict_images

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder; name a folder for the overlays and detections.csv")
    device = device_for(args.device)
    run = resolve_run(args.run)
    settings = read_run_info(run).settings
    threshold = pipeline.score_threshold_for(run, settings, args.which, args.score_threshold)
    model, _ = load_model(run, which=args.which, device=device)
    df = predict_images(model, args.images, args.out, settings.data.image_size, score_threshold=threshold,
                        mask_threshold=settings.evaluate.mask_threshold, device=device)
    ok = df[~df["status"].str.startswith("error")]
    print(f"{ok['file'].nunique()} image(s) processed, {int((ok['status'] == 'ok').sum())} detection(s) at score ≥ "
          f"{threshold:g}; written to {Path(args.out) / 'detections.csv'}")
    return 1 if df.attrs.get("errors") else 0
