"""``bonetumor evaluate RUN [--data PATH] [--split test] [--json]``: every metric of a trained run on one
split, through :func:`bonetumor.pipeline.ensure_metrics` — the same function, file
(``RUN/metrics-<split>.json``) and threshold rule as notebook 05.

The run is scored on the data it was trained on: ``run.json`` records that folder (absolute) and its content
fingerprint, and a dataset whose fingerprint differs is refused, naming both folders and fingerprints,
unless ``--allow-other-data`` is given (its metrics then go to ``RUN/metrics-<split>-data-<fingerprint>.json``,
leaving the run's own file alone). A run recorded with a relative data path (before paths were stored
absolute) needs ``--data``: the directory it was relative to is unknown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("bonetumor")


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
    parser.add_argument("--allow-other-data", action="store_true",
                        help="evaluate even when the data's content differs from the data the run was trained on")


def evaluate_command(args) -> int:
    from bonetumor import pipeline
    from bonetumor.evaluation import metrics_table
    from bonetumor.modeling.checkpoints import read_run_info, resolve_run

    run = resolve_run(args.run)
    info = read_run_info(run)
    settings = info.settings
    if args.data:
        data = settings.data.model_copy(update={"source": "btxrd", "path": Path(args.data).expanduser().resolve()})
        settings = settings.model_copy(update={"data": data})
    elif settings.data.path is not None and not Path(settings.data.path).expanduser().is_absolute():
        raise ValueError(f"{run / 'run.json'}: the run's data path {str(settings.data.path)!r} is relative to the "
                         "directory it was trained from, which is not recorded; pass --data with the dataset folder")
    other = other_data(run, info.raw.get("data"), settings, args.allow_other_data)
    overrides = {"score_threshold": args.score_threshold, "bootstrap": args.bootstrap,
                 "refine_masks": True if args.refine else None}
    default = f"metrics-{args.split}.json" if other is None else f"metrics-{args.split}-data-{other[:12]}.json"
    out = Path(args.out) if args.out else run / default
    result = pipeline.ensure_metrics(settings, args.split, run=run, which=args.which, overrides=overrides,
                                     seed=args.seed, device=args.device, recompute=args.recompute, out=out)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"# {settings.tag()} — run {run.name}, split {args.split}")
        print(metrics_table(result).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"(written to {out})")
    return 0


def other_data(run: Path, recorded, settings, allow: bool) -> str | None:
    """``None`` when the data of ``settings`` is the data the run recorded in run.json (or the run recorded
    none, as runs trained before the fingerprint was kept), else its fingerprint when ``allow``; otherwise
    ``ValueError`` naming both folders and fingerprints."""
    from bonetumor import pipeline
    from bonetumor.data import btxrd

    if not isinstance(recorded, dict) or not recorded.get("fingerprint"):
        return None
    root = btxrd.find_root(pipeline.ensure_dataset(settings, progress=False))
    current = btxrd.fingerprint(root)
    if current == recorded["fingerprint"]:
        return None
    message = (f"run {run.name} was trained on {recorded.get('path')} (data fingerprint "
               f"{str(recorded['fingerprint'])[:12]}), but {root} has fingerprint {current[:12]}: other data")
    if not allow:
        raise ValueError(f"{message}; pass --data with the folder it was trained on, or --allow-other-data to "
                         "evaluate on this one anyway")
    log.warning("%s; evaluating on it (--allow-other-data)", message)
    return current
