"""Absolute locations used everywhere, so code and notebooks work from any working directory.

``BONETUMOR_DATA`` / ``BONETUMOR_RUNS`` environment variables move the (large, git-ignored) data and run
folders elsewhere, e.g. onto a bigger disk.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bonetumor"
RESOURCES = PACKAGE / "resources"
PARAMS = ROOT / "params"
NOTEBOOKS = ROOT / "notebooks"
DATA = Path(os.environ.get("BONETUMOR_DATA", ROOT / "data")).resolve()
CACHE = DATA / "cache"
RUNS = Path(os.environ.get("BONETUMOR_RUNS", ROOT / "runs")).resolve()
REPORTS = ROOT / "reports"
#: Where notebooks write when they are not run by ``make paper`` (nbval, JupyterLab): never the committed
#: ``reports/`` folder, so a smoke run cannot overwrite the published results.
SCRATCH_REPORTS = ROOT / "build" / "reports"


def reports_dir(requested: str | os.PathLike | None = None) -> Path:
    """The reports folder a notebook writes to: ``requested`` if given, else the scratch folder."""
    path = Path(requested).resolve() if requested else SCRATCH_REPORTS
    for sub in ("tables", "figures", "notebooks"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def run_dir(name: str) -> Path:
    """Folder of one training run (checkpoints, history, predictions)."""
    path = RUNS / name
    path.mkdir(parents=True, exist_ok=True)
    return path
