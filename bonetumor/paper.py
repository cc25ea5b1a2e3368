"""Regenerate the paper: run ``notebooks/NN_*.ipynb`` in order, headless, with papermill.

Each notebook is executed into a temporary file and moved to ``reports/notebooks/`` only when it succeeded,
so a failed run never leaves a complete-looking copy. The terminal gets one line per notebook; what the
cells print goes to ``build/logs/<notebook>.log``. At the end, ``reports/provenance.json`` records what
produced the reports.

The executed copies are published (committed, read on GitHub), so they are written deterministically
(:func:`publishable`): no papermill or nbclient timestamps and durations, no absolute paths of this machine
(``<repo>``, ``<tmp>``, ``~`` instead), no widget state (a static viewer cannot show it), progress-bar
redraws collapsed to their final line; figures (``image/png``) are kept — except on real BTXRD data, whose
licence (CC BY-NC-ND) forbids publishing derivatives of its radiographs: there every picture is withheld
from the published copy (:data:`IMAGE_WITHHELD`). Identical cell outputs give a byte-identical file. The kernels run with ``BONETUMOR_PROGRESS=final`` (see :mod:`bonetumor.progress`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bonetumor import config, paths
from bonetumor.io import write_text
from bonetumor.reporting import provenance, summary
from bonetumor.versioning import code_state

KERNEL = "bonetumor"
LOGS = paths.ROOT / "build" / "logs"
#: Environment of the kernels ``make paper`` starts: progress bars write their final line only.
KERNEL_ENVIRONMENT = {"BONETUMOR_PROGRESS": "final"}
#: Metadata that records when, how long or on which machine a run happened: not in the published copies.
RUN_NOTEBOOK_METADATA = ("papermill", "widgets")
RUN_CELL_METADATA = ("execution", "papermill", "ExecuteTime", "collapsed", "scrolled")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
INJECTED_CELL_ID = "injected-parameters"
_OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")  # a line's text before a carriage return is redrawn


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
def _environment(values: dict[str, str]):
    """Set environment variables for what starts inside (the kernel inherits them), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def path_replacements(*, reports: Path | None = None, root: Path = paths.ROOT) -> list[tuple[re.Pattern, str]]:
    """How the published copies name this machine's absolute paths, most specific first: the repository
    ``<repo>``, a reports folder outside it ``<reports>``, a temporary folder ``<tmp>``, the home folder
    ``~``. A path is replaced only as a whole (``/home/me/bonetumor`` never inside ``/home/me/bonetumor2``)."""
    places = [(Path(root).resolve(), "<repo>"), (Path(tempfile.gettempdir()).resolve(), "<tmp>"),
              (Path.home().resolve(), "~")]
    if reports is not None and not Path(reports).resolve().is_relative_to(Path(root).resolve()):
        places.append((Path(reports).resolve(), "<reports>"))
    tmp = Path(tempfile.gettempdir()).resolve()
    replacements = []
    for place, label in sorted(places, key=lambda item: len(str(item[0])), reverse=True):
        if str(place) == "/":
            continue
        pattern = re.escape(str(place)) + (r"(?:/[^/\s'\"]*)?" if place == tmp else "") + r"(?![\w.-])"
        replacements.append((re.compile(pattern), label))
    return replacements


def _scrub_text(text: str, replacements) -> str:
    for pattern, label in replacements:
        text = pattern.sub(label, text)
    return text


def _scrub_output(output, replacements):
    """One output with paths replaced and widget views removed; ``None`` when only a widget's text stand-in
    is left (code that wants to be seen without widgets adds a picture, as the case browser does)."""
    if output.get("output_type") == "error":
        output["traceback"] = [_scrub_text(line, replacements) for line in output.get("traceback", [])]
        output["evalue"] = _scrub_text(output.get("evalue", ""), replacements)
        return output
    data = output.get("data")
    if data is None:
        return output
    if WIDGET_VIEW in data:  # a live widget, which a static viewer cannot show
        del data[WIDGET_VIEW]
        output.get("metadata", {}).pop(WIDGET_VIEW, None)
        if set(data) <= {"text/plain"}:  # only its stand-in ("VBox(children=...)"): nothing for a reader
            return None
    for mime, value in data.items():
        if mime.startswith("text/") and isinstance(value, str):
            data[mime] = _scrub_text(value, replacements)
    return output


#: What stands in a published notebook for a picture a licence forbids publishing (BTXRD: CC BY-NC-ND).
IMAGE_WITHHELD = "[picture shown when the notebook runs; not published: the BTXRD licence forbids derivatives]"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif", "application/pdf")


def _withhold_images(output):
    """The output without its pictures (a text line says why), for data whose licence forbids publishing them."""
    data = output.get("data")
    if not data or not any(m in data for m in IMAGE_MIMES):
        return output
    for mime in IMAGE_MIMES:
        data.pop(mime, None)
        output.get("metadata", {}).pop(mime, None)
    data["text/plain"] = IMAGE_WITHHELD
    return output


def _clean_outputs(outputs: list, replacements, withhold_images: bool = False) -> list:
    """Consecutive stream outputs of one name merged, each progress bar's redraws collapsed to the line a
    frontend finally shows, paths replaced, widget views dropped; pictures withheld when asked."""
    cleaned = []
    for output in outputs:
        if output.get("output_type") == "stream":
            if cleaned and cleaned[-1].get("output_type") == "stream" and cleaned[-1]["name"] == output["name"]:
                cleaned[-1]["text"] += output["text"]
            else:
                cleaned.append(output)
            continue
        output = _scrub_output(output, replacements)
        if output is not None:
            cleaned.append(_withhold_images(output) if withhold_images else output)
    for output in cleaned:
        if output.get("output_type") == "stream":
            text = _OVERWRITTEN.sub("", output["text"]).replace("\r", "")
            output["text"] = _scrub_text(text, replacements)
    return cleaned


def publishable(nb, replacements, withhold_images: bool = False):
    """A copy of an executed notebook (``nbformat`` node) fit to publish: see the module docstring.
    ``withhold_images``: every picture replaced by :data:`IMAGE_WITHHELD` (real BTXRD data, whose licence
    forbids publishing derivatives of its radiographs)."""
    nb = copy.deepcopy(nb)
    for key in RUN_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in RUN_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
        if INJECTED_CELL_ID in cell.metadata.get("tags", []):
            cell["id"] = INJECTED_CELL_ID  # papermill gives it a new random id each run
        cell.source = _scrub_text(cell.source, replacements)
        if cell.cell_type == "code":
            cell.outputs = _clean_outputs(cell.outputs, replacements, withhold_images)
    return nb


def write_publishable(executed: Path, target: Path, reports: Path | None = None,
                      withhold_images: bool = False) -> Path:
    """Read an executed notebook, write its :func:`publishable` copy to ``target`` (atomically)."""
    import nbformat

    nb = publishable(nbformat.read(executed, as_version=4), path_replacements(reports=reports), withhold_images)
    nbformat.validate(nb)
    return write_text(target, nbformat.writes(nb) + "\n")


def run_notebook(notebook: Path, out_dir: Path, parameters: dict, timeout: int,
                 withhold_images: bool = False) -> float:
    """Execute one notebook with papermill into ``out_dir`` (its published copy: :func:`publishable`, its
    pictures withheld when ``withhold_images``); returns its wall time in seconds."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target = out_dir / notebook.name
    target.unlink(missing_ok=True)  # an old copy must not pass for this run's
    tmp = out_dir / f".{notebook.stem}.running.ipynb"
    LOGS.mkdir(parents=True, exist_ok=True)
    log_file = LOGS / f"{notebook.stem}.log"
    start = time.perf_counter()
    try:
        with open(log_file, "w", encoding="utf-8") as log, _stderr_to(log), _environment(KERNEL_ENVIRONMENT):
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
    reports = Path(parameters["reports_dir"]) if parameters.get("reports_dir") else None
    try:
        write_publishable(tmp, target, reports=reports, withhold_images=withhold_images)
    finally:
        tmp.unlink(missing_ok=True)
    return time.perf_counter() - start


#: A generous bound on the CPU seconds one training image costs per epoch, validation included (measured
#: here: 0.05-0.08 s on 2 cores at 256 px), so that a scaled cell timeout never stops a run its data size
#: makes long; it only stops one that hangs.
SECONDS_PER_IMAGE_EPOCH = 0.5


def dataset_size(settings: config.Settings) -> int:
    """The number of images ``settings`` trains on, before splitting: the phantom's planned count, or the
    image files of a BTXRD-layout folder (0 when it cannot be found yet)."""
    if settings.data.source == "phantom":
        return settings.data.phantom_images
    from bonetumor.data.btxrd import find_root

    try:
        images = find_root(settings.data_path) / "images"
    except (OSError, ValueError):
        return 0
    return sum(1 for f in images.rglob("*") if f.is_file()) if images.is_dir() else 0


def cell_timeout(settings: config.Settings) -> tuple[int, str]:
    """The per-cell timeout of ``make paper`` and why: the profile's ``notebook_timeout`` for everything but
    training, plus a training budget that scales with the work (images × epochs ×
    :data:`SECONDS_PER_IMAGE_EPOCH`), since any notebook may train a missing model. A data size can then
    never make a timeout certain."""
    n_images, epochs = dataset_size(settings), settings.train.epochs
    training = int(n_images * epochs * SECONDS_PER_IMAGE_EPOCH)
    return settings.notebook_timeout + training, (
        f"cell timeout {settings.notebook_timeout + training} s = {settings.notebook_timeout} s + training "
        f"{n_images} images x {epochs} epochs x {SECONDS_PER_IMAGE_EPOCH:g} s")


#: Tables that ``make paper`` does not produce and so never clears: ``bonetumor bench``'s timings, which
#: belong to the machine they were measured on.
KEPT_TABLES = ("benchmark",)


def _clear_outputs(reports: Path) -> None:
    for sub in ("tables", "figures", "notebooks"):
        for path in (reports / sub).glob("*"):
            if path.is_file() and not (sub == "tables" and path.stem in KEPT_TABLES):
                path.unlink()
    (reports / "provenance.json").unlink(missing_ok=True)


def run_paper(profile: str | None = None, data: str | None = None, reports: Path = paths.REPORTS,
              notebooks: list[Path] | None = None, clinical_csv: str | None = None,
              stream=None) -> list[NotebookResult]:
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
    state = code_state()
    if notebooks == ordered_notebooks():
        _clear_outputs(reports)  # a full run leaves only what it made: no stale figure beside new provenance
    timeout, why = cell_timeout(settings)
    print(f"paper: {settings.tag()}; {len(notebooks)} notebooks -> {out_dir}; {why}", file=stream, flush=True)
    results: list[NotebookResult] = []
    started = time.time()
    for index, notebook in enumerate(notebooks, 1):
        print(f"[{index}/{len(notebooks)}] {notebook.stem} ...", end=" ", file=stream, flush=True)
        try:
            seconds = run_notebook(notebook, out_dir, parameters, timeout,
                                   withhold_images=settings.data.source == "btxrd")
        except NotebookFailed:
            print("FAILED", file=stream, flush=True)
            raise
        results.append(NotebookResult(notebook.stem, round(seconds, 1)))
        print(f"ok ({seconds:.1f} s)", file=stream, flush=True)
    provenance.write(reports / "provenance.json", settings, state, results, started)
    summary.write_readme(reports)
    return results
