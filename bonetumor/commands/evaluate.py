"""``bonetumor evaluate RUN [--data PATH] [--split test] [--json]``: every metric of a trained run on one
split, through :func:`bonetumor.pipeline.ensure_metrics` — the same function, file
(``RUN/metrics-<split>.json``) and threshold rule as notebook 05."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="metrics of a trained run on a split (COCO AP, Dice, "
                                               "image-level with pseudo-patient bootstrap CIs)")
    add_arguments(p)
    p.set_defaults(handler=evaluate_command)


def add_arguments(parser) -> None:
    """Arguments of ``bonetumor evaluate``."""
    parser.add_argument("run", metavar="RUN", help="run folder, or a run name under runs/")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="BTXRD-layout folder (default: the run's own data, e.g. its phantom)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate")
    parser.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="use this detection score threshold (default: chosen on the validation split)")
    parser.add_argument("--bootstrap", type=int, default=None, help="number of patient resamples (override)")
    parser.add_argument("--refine", action="store_true", help="refine predicted masks before mask metrics")
    parser.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: the run's seed)")
    parser.add_argument("--recompute", action="store_true", help="predict and score again even if saved")
    parser.add_argument("--out", metavar="JSON", default=None,
                        help="write the metrics here (default RUN/metrics-<split>.json)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")


def evaluate_command(args) -> int:
    from bonetumor import pipeline
    from bonetumor.evaluation import metrics_table
    from bonetumor.modeling.checkpoints import read_run_info, resolve_run

    run = resolve_run(args.run)
    settings = read_run_info(run).settings
    if args.data:
        data = settings.data.model_copy(update={"source": "btxrd", "path": Path(args.data).expanduser().resolve()})
        settings = settings.model_copy(update={"data": data})
    overrides = {"score_threshold": args.score_threshold, "bootstrap": args.bootstrap,
                 "refine_masks": True if args.refine else None}
    out = Path(args.out) if args.out else run / f"metrics-{args.split}.json"
    result = pipeline.ensure_metrics(settings, args.split, run=run, which=args.which, overrides=overrides,
                                     seed=args.seed, device=args.device, recompute=args.recompute, out=out)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"# {settings.tag()} — run {run.name}, split {args.split}")
        print(metrics_table(result).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"(written to {out})")
    return 0
