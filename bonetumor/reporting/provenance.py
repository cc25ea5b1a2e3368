"""``reports/provenance.json``: what produced the reports — code state, software, device, profile, data
and its content fingerprint, seeds, and the wall time of each notebook."""

from __future__ import annotations

import datetime as dt
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from bonetumor import paths
from bonetumor.config import Settings
from bonetumor.engine.validation import stall_warning
from bonetumor.modeling.checkpoints import read_run_json
from bonetumor.io import write_json

PACKAGES = ("bonetumor", "torch", "torchvision", "numpy", "pandas", "scikit-learn", "scikit-image", "scipy",
            "pycocotools", "matplotlib", "seaborn", "pillow", "papermill", "nbval", "jupyterlab", "pydantic")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device() -> dict:
    import torch

    info = {"cpu": _cpu_model(), "cpu_count": __import__("os").cpu_count(),
            "cpu_instruction_sets": cpu_instruction_sets(), "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_instruction_sets() -> dict[str, object]:
    """The vector instruction sets torch's and NumPy's kernels dispatch to on this CPU. Two hosts that differ
    here compute different last bits (NumPy's AVX-512 maths already change a few of the phantom's pixels
    and polygons), so reports are byte-identical only between hosts that agree here; the CPU's model
    name does not tell them apart."""
    import torch

    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        numpy_simd = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
    except ImportError:  # private to NumPy: left unrecorded rather than guessed
        numpy_simd = None
    return {"torch": torch.backends.cpu.get_cpu_capability(), "numpy": numpy_simd}


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def data_description(settings: Settings) -> dict:
    """Data source, folder and content fingerprint (``None`` when the folder does not exist)."""
    root = settings.data_path
    entry = {"source": settings.data.source, "synthetic": settings.data.source == "phantom",
             "path": str(root.relative_to(paths.ROOT)) if root.is_relative_to(paths.ROOT) else str(root),
             "fingerprint": None}
    if root.exists():
        from bonetumor.data.btxrd import fingerprint

        entry["fingerprint"] = fingerprint(root)
    return entry


def training_description(settings: Settings) -> dict | None:
    """What the run that the reports read was trained with and how long it took — from its ``run.json``,
    since a re-run of the notebooks reuses a finished training instead of repeating it."""
    info_file = paths.RUNS / settings.run_name / "run.json"
    if not info_file.is_file():
        return None
    info = read_run_json(info_file)
    times = info.get("times", {})
    history = info_file.with_name("history.csv")
    warning = stall_warning(pd.read_csv(history)) if history.is_file() else None
    return {"run": settings.run_name, "warning": warning, "code": info.get("code"), "status": info.get("status"), "init": info.get("init"),
            "epochs_done": info.get("epochs_done"), "best": info.get("best"), "device": info.get("device"),
            "train_seconds": times.get("train_seconds"), "seconds_per_epoch": times.get("seconds_per_epoch"),
            "n_train": info.get("n_train"), "n_val": info.get("n_val")}


def write(target: Path, settings: Settings, state: dict, results, started: float) -> Path:
    """Write the provenance record atomically."""
    record = {
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code": state,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device(),
        "profile": settings.profile,
        "description": settings.tag(),
        "settings": settings.model_dump(mode="json"),
        "data": data_description(settings),
        "seeds": {"seed": settings.seed},
        "notebooks": [{"name": r.name, "seconds": r.seconds} for r in results],
        "training": training_description(settings),
        "total_seconds": round(time.time() - started, 1),
    }
    return write_json(target, record)
