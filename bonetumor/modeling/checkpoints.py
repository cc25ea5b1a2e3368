"""Checkpoints and trained runs on disk: the checkpoint format, saving and loading it, the weights-only
``model.safetensors``, the validated ``run.json`` reader, finding a run folder, and rebuilding a trained
model (:func:`load_model`) — everything inference needs, without the training code.

A checkpoint (``last.pt``, ``best.pt``, ``interrupted.pt``) loads with ``torch.load(path,
weights_only=True)``: only tensors, dicts, lists, numbers and strings; the settings are a JSON string.
See :func:`checkpoint_state` for its keys and ``bonetumor.engine.run_files`` for the whole run folder.

A run file that cannot be used — truncated, not of its format, holding objects a weights-only load refuses,
``run.json`` without settings — raises :class:`RunFileError` (a ``ValueError``): one line naming the file,
what is wrong with it and how to recover (resume from the other checkpoint, rebuild ``run.json``, retrain).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch
from pydantic import ValidationError
from torch import nn

import bonetumor
from bonetumor import io
from bonetumor.config import Settings
from bonetumor.devices import device_for
from bonetumor.modeling.vgg_maskrcnn import build_model

CHECKPOINT_FORMAT = "bonetumor-checkpoint/1"
#: The ``format`` field of ``run.json``.
RUN_FORMAT = "bonetumor-run/1"
#: The ``format`` field of ``model.safetensors``' metadata.
WEIGHTS_FORMAT = "bonetumor-weights/1"


class RunFileError(ValueError):
    """A file of a run folder cannot be used: the message (one line) names it, says what is wrong with it
    and how to recover."""


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def recovery(path: Path) -> str:
    """How to recover from a damaged file of a run folder, by its name."""
    name = Path(path).name
    run = Path(path).parent
    if name == "last.pt":
        return (f"resume from the other checkpoint: copy {run / 'best.pt'} over it and run `bonetumor train "
                "--resume` (training continues from the best epoch), or retrain")
    if name == "best.pt":
        return "use the other checkpoint (--which last), or retrain"
    if name == "interrupted.pt":
        return "delete it: `bonetumor train --resume` restarts the interrupted epoch from last.pt"
    if name == "model.safetensors":
        return "delete it to load best.pt instead, or use the other checkpoint (--which last), or retrain"
    if name == "run.json":
        return ("rebuild it with `bonetumor train --resume --out RUN` and the run's settings (last.pt holds "
                "them), or retrain")
    return "retrain, or point at another file"


# ---- checkpoints -------------------------------------------------------------------------------------

def _settings_json(settings: Settings) -> str:
    return json.dumps(settings.model_dump(mode="json"), sort_keys=True)


def checkpoint_state(model: nn.Module, optimizer, scheduler, settings: Settings, epoch: int, iteration: int,
                     normalisation: Mapping, init: str, history: list[dict], best: Mapping | None,
                     rng: Mapping, partial: bool = False, step_in_epoch: int = 0) -> dict:
    """The checkpoint dict. Keys: ``format``, ``epoch`` (complete epochs), ``iteration`` (optimizer
    steps so far), ``partial`` and ``step_in_epoch`` (Ctrl-C mid-epoch), ``model``, ``optimizer``,
    ``scheduler`` (state dicts), ``rng`` (torch, cuda, numpy, python, loader — the dict of
    :func:`bonetumor.engine.determinism.rng_state`), ``settings`` (JSON string), ``normalisation``
    ({mean, std}), ``init``, ``history`` (JSON string of the rows so far), ``best`` ({epoch, metric, mode,
    value} or None), ``versions``, ``saved`` (UTC time)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "iteration": int(iteration),
        "partial": bool(partial),
        "step_in_epoch": int(step_in_epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "settings": _settings_json(settings),
        "normalisation": {"mean": [float(v) for v in normalisation["mean"]],
                          "std": [float(v) for v in normalisation["std"]]},
        "init": init,
        "history": json.dumps(history),
        "best": dict(best) if best else None,
        "versions": {"bonetumor": bonetumor.__version__, "torch": str(torch.__version__)},
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_checkpoint(state: Mapping, path: str | os.PathLike) -> Path:
    """Write a checkpoint atomically: on any failure (a full disk) the previous file stays as it was."""
    try:
        with io.atomic_path(path) as tmp:
            torch.save(dict(state), tmp)
    except RuntimeError as exc:  # torch's writer reports a failed write (a full disk) as a RuntimeError
        raise _write_error(path, exc) from exc
    return Path(path)


def _write_error(path, exc: BaseException) -> OSError:
    return OSError(f"{path}: cannot write it ({type(exc).__name__}: {_first_line(exc)}); is the disk full? The "
                   "previous version of the file, if any, is intact: free some space, then resume "
                   "(`bonetumor train --resume`)")


#: Keys every checkpoint holds (:func:`checkpoint_state`).
CHECKPOINT_KEYS = ("format", "epoch", "iteration", "model", "optimizer", "scheduler", "rng", "settings",
                   "normalisation", "init", "history", "best")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by training, loaded with ``weights_only=True`` (no arbitrary unpickling);
    ``settings`` and ``history`` come back parsed (dict, list of rows). :class:`RunFileError` when the file
    is damaged, holds objects a weights-only load refuses, or is not a complete bonetumor checkpoint."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise RunFileError(f"{path}: refused: it holds Python objects other than tensors and plain data, "
                               "which only an unsafe load would run (not a checkpoint written by bonetumor, or "
                               f"tampered with); nothing was executed; {recovery(path)}") from None
        raise RunFileError(f"{path}: damaged or not a checkpoint ({_first_line(exc)}); {recovery(path)}") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... for a damaged file
        raise RunFileError(f"{path}: damaged or not a checkpoint ({type(exc).__name__}: {_first_line(exc)}); "
                           f"{recovery(path)}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunFileError(f"{path}: not a bonetumor checkpoint ({CHECKPOINT_FORMAT}); {recovery(path)}")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise RunFileError(f"{path}: incomplete checkpoint (no {', '.join(missing)}); {recovery(path)}")
    try:
        state["settings"] = json.loads(state["settings"])
        state["history"] = json.loads(state["history"])
    except (TypeError, ValueError, RecursionError) as exc:
        raise RunFileError(f"{path}: its settings or history are not valid JSON ({_first_line(exc)}); "
                           f"{recovery(path)}") from None
    return state


def save_safetensors(model: nn.Module, path: Path, metadata: Mapping[str, Any]) -> None:
    """The model's weights only, with ``metadata`` (strings as they are, anything else as JSON)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        with io.atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={k: v if isinstance(v, str) else json.dumps(v)
                                                   for k, v in metadata.items()})
    except OSError:
        raise
    except Exception as exc:  # safetensors reports a failed write (a full disk) as a SafetensorError
        raise _write_error(path, exc) from exc


# ---- run folders -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunInfo:
    """A run's ``run.json``, checked: ``settings`` typed, ``normalisation`` ({mean, std} of 1 or 3 values, or
    ``None`` when absent), ``init``/``status`` as written, and ``raw``, the file's whole content."""

    run_dir: Path
    settings: Settings
    normalisation: dict | None
    init: str | None
    status: str | None
    raw: dict


def resolve_run(run: str | os.PathLike) -> Path:
    """A run folder given as a path, or as a name under ``bonetumor.paths.RUNS``."""
    from bonetumor import paths

    path = Path(run).expanduser()
    if path.is_dir():
        return path.resolve()
    if (paths.RUNS / str(run)).is_dir():
        return paths.RUNS / str(run)
    raise FileNotFoundError(f"no run {run!r}: neither {path} nor {paths.RUNS / str(run)} is a folder")


def read_run_info(run_dir: str | os.PathLike) -> RunInfo:
    """Read and check ``run_dir/run.json``. Raises :class:`FileNotFoundError` when there is none and
    :class:`ValueError` naming the file and the problem when it is not JSON, not a run record of this
    format, has no valid ``settings``, or a malformed ``normalisation``."""
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no trained run (no run.json); train one with `bonetumor train`")
    raw = read_run_json(path)
    if raw.get("format", RUN_FORMAT) != RUN_FORMAT:
        raise RunFileError(f"{path}: format {_short(raw['format'])} is not {RUN_FORMAT!r}; {recovery(path)}")
    if "settings" not in raw:
        raise RunFileError(f"{path}: no 'settings' (is it a run written by `bonetumor train`?); {recovery(path)}")
    try:
        settings = Settings.model_validate(raw["settings"])
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()[:3])
        raise RunFileError(f"{path}: invalid settings ({errors}); {recovery(path)}") from None
    return RunInfo(run_dir, settings, _checked_normalisation(raw.get("normalisation"), path), raw.get("init"),
                   raw.get("status"), raw)


def read_run_json(path: str | os.PathLike) -> dict:
    """The content of a ``run.json`` (a JSON object), unchecked beyond that; :class:`RunFileError` naming
    the file when it is not UTF-8 JSON holding an object."""
    path = Path(path)
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RunFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); {recovery(path)}") from None
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                           f"{recovery(path)}") from None
    except RecursionError:
        raise RunFileError(f"{path}: JSON nested too deeply to parse; {recovery(path)}") from None
    if not isinstance(raw, dict):
        raise RunFileError(f"{path}: expected a JSON object, found {type(raw).__name__}; {recovery(path)}")
    return raw


def _short(value) -> str:
    import reprlib

    return reprlib.repr(value)


def _checked_normalisation(value, path: Path) -> dict | None:
    if value is None:
        return None
    ok = isinstance(value, Mapping) and all(
        isinstance(value.get(k), list) and len(value[k]) in (1, 3) and all(isinstance(v, (int, float)) for v in value[k])
        for k in ("mean", "std"))
    if not ok:
        raise RunFileError(f"{path}: 'normalisation' must be {{mean: [1 or 3 numbers], std: [1 or 3 numbers]}}, "
                           f"got {_short(value)}; {recovery(path)}")
    return {"mean": list(value["mean"]), "std": list(value["std"])}


def _weights_file(run_dir: Path, which: str) -> Path:
    candidates = {"best": [run_dir / "model.safetensors", run_dir / "best.pt"],
                  "last": [run_dir / "last.pt"], "interrupted": [run_dir / "interrupted.pt"]}
    files = candidates.get(which, [Path(which)])
    weights = next((f for f in files if f.is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"no {which!r} weights in {run_dir} (looked for {', '.join(f.name for f in files)})")
    return weights


def load_model(run_dir: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"):
    """Rebuild a trained model from ``run_dir``: architecture and normalisation from ``run.json``
    (:func:`read_run_info`), weights from ``model.safetensors`` (``which="best"``, falling back to
    ``best.pt``), ``last.pt`` (``"last"``), ``interrupted.pt`` (``"interrupted"``) or a given ``.pt`` /
    ``.safetensors`` path. Never unpickles arbitrary objects. Returns ``(model in eval mode on device,
    run_info)``, where ``run_info`` is run.json's content plus ``weights`` (the file read) and
    ``settings_object`` (typed :class:`Settings`)."""
    run_dir = Path(run_dir)
    run = read_run_info(run_dir)
    if run.normalisation is None:
        raise RunFileError(f"{run_dir / 'run.json'}: no 'normalisation', so the model's input scaling is unknown; "
                           f"{recovery(run_dir / 'run.json')}")
    settings = run.settings
    weights = _weights_file(run_dir, which)
    # pretrained=False: the weights are replaced below, so never download ImageNet's just to discard them.
    model = build_model(settings.model.model_copy(update={"pretrained": False}), image_size=settings.data.image_size,
                        image_mean=run.normalisation["mean"], image_std=run.normalisation["std"])
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors' SafetensorError, OSError, ...
            raise RunFileError(f"{weights}: damaged or not a safetensors file ({_first_line(exc)}); "
                               f"{recovery(weights)}") from None
    else:
        state = load_checkpoint(weights)["model"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 200 else detail[:199] + "…"
        raise RunFileError(f"{weights}: its weights do not fit the model of {run_dir / 'run.json'} "
                           f"({detail}); {recovery(weights)}") from None
    model.init = run.raw.get("init", model.init)
    model.to(device_for(device) if not isinstance(device, torch.device) else device).eval()
    return model, {**run.raw, "weights": str(weights), "settings_object": settings}
