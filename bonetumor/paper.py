"""Regenerate the paper: run ``notebooks/NN_*.ipynb`` in order, headless, with papermill.

Each notebook is executed into a temporary file and moved to ``reports/notebooks/`` only when it succeeded,
so a failed run never leaves a complete-looking copy. The terminal gets one line per notebook; what the
cells print goes to ``build/logs/<notebook>.log``. At the end, ``reports/provenance.json`` records what
produced the reports.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bonetumor import config, paths
from bonetumor.reporting import provenance, summary

KERNEL = "bonetumor"
LOGS = paths.ROOT / "build" / "logs"


class NotebookFailed(RuntimeError):
    """A notebook raised: names the notebook and the failing cell."""


@dataclass(frozen=True)
class NotebookResult:
    name: str
    seconds: float


def ordered_notebooks(folder: Path = paths.NOTEBOOKS) -> list[Path]:
    """``NN_*.ipynb`` files in reading order."""
    found = sorted(p for p in folder.glob("*.ipynb") if re.match(r"\d\d_", p.name))
    if not found:
        raise FileNotFoundError(f"no NN_*.ipynb notebooks in {folder}")
    return found


@contextlib.contextmanager
def _stderr_to(log):
    """Send this process's standard error, and so the kernel's (a child that inherits it), to ``log``:
    the terminal keeps one line per notebook."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run_notebook(notebook: Path, out_dir: Path, parameters: dict, timeout: int) -> float:
    """Execute one notebook with papermill into ``out_dir``; returns its wall time in seconds."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target = out_dir / notebook.name
    target.unlink(missing_ok=True)  # an old copy must not pass for this run's
    tmp = out_dir / f".{notebook.stem}.running.ipynb"
    LOGS.mkdir(parents=True, exist_ok=True)
    log_file = LOGS / f"{notebook.stem}.log"
    start = time.perf_counter()
    try:
        with open(log_file, "w", encoding="utf-8") as log, _stderr_to(log):
            papermill.execute_notebook(
                str(notebook), str(tmp), parameters=parameters, kernel_name=KERNEL, progress_bar=False,
                log_output=False, stdout_file=log, stderr_file=log, cwd=str(notebook.parent),
                execution_timeout=timeout)
    except PapermillExecutionError as exc:
        first_line = next((line for line in exc.source.splitlines() if line.strip()), "")
        raise NotebookFailed(
            f"{notebook.relative_to(paths.ROOT) if notebook.is_relative_to(paths.ROOT) else notebook}: "
            f"cell {exc.cell_index} (execution count {exc.exec_count}, starting {first_line!r}) raised "
            f"{exc.ename}: {exc.evalue}  [log: {log_file}]") from None
    except Exception as exc:
        raise NotebookFailed(f"{notebook.name}: {type(exc).__name__}: {exc}  [log: {log_file}]") from None
    finally:
        if sys.exc_info()[0] is not None:
            tmp.unlink(missing_ok=True)
    os.replace(tmp, target)
    return time.perf_counter() - start


def _clear_outputs(reports: Path) -> None:
    for sub in ("tables", "figures"):
        for path in (reports / sub).glob("*"):
            if path.is_file():
                path.unlink()
    (reports / "provenance.json").unlink(missing_ok=True)


def run_paper(profile: str | None = None, data: str | None = None, reports: Path = paths.REPORTS,
              notebooks: list[Path] | None = None, clinical_csv: str | None = None, stream=None) -> list[NotebookResult]:
    """Run every notebook in order for ``profile`` (default: ``full`` with CUDA, else ``quick``) and write
    ``<reports>/provenance.json``. Raises :class:`NotebookFailed` at the first failing notebook."""
    profile = profile or config.default_profile()
    stream = stream or sys.stdout
    settings = config.load(profile, data=data)
    notebooks = notebooks or ordered_notebooks()
    reports = Path(reports).resolve()
    out_dir = paths.reports_dir(reports) / "notebooks"
    parameters = {"profile": profile, "data": str(data or ""), "reports_dir": str(reports)}
    if clinical_csv:
        parameters["clinical_csv"] = str(Path(clinical_csv).resolve())
    state = provenance.code_state()
    if notebooks == ordered_notebooks():
        _clear_outputs(reports)  # a full run leaves only what it made: no stale figure beside new provenance
    print(f"paper: {settings.tag()}; {len(notebooks)} notebooks -> {out_dir}", file=stream, flush=True)
    results: list[NotebookResult] = []
    started = time.time()
    for index, notebook in enumerate(notebooks, 1):
        print(f"[{index}/{len(notebooks)}] {notebook.stem} ...", end=" ", file=stream, flush=True)
        try:
            seconds = run_notebook(notebook, out_dir, parameters, settings.notebook_timeout)
        except NotebookFailed:
            print("FAILED", file=stream, flush=True)
            raise
        results.append(NotebookResult(notebook.stem, round(seconds, 1)))
        print(f"ok ({seconds:.1f} s)", file=stream, flush=True)
    provenance.write(reports / "provenance.json", settings, state, results, started)
    summary.write_readme(reports)
    return results
