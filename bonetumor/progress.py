"""Progress bars and informational messages that read well wherever the code runs.

* In a **terminal**: an ordinary tqdm bar on standard error, updated in place.
* In a **Jupyter kernel** (JupyterLab, nbval, papermill): a plain-text bar on standard *output*, never an
  ipywidgets bar (a saved notebook would show ``Error displaying widget: model not found`` where a widget
  was, and viewers outside the lab a bar frozen at ``0/16``) and never on standard error (which notebooks
  colour as an error). JupyterLab redraws the line in place, so a saved notebook holds one clean line.
* In a kernel **without a reader** (``make paper``: :mod:`bonetumor.paper` sets ``BONETUMOR_PROGRESS=final``
  for the kernels it starts): only the final state, written once as one line without timings, so the
  papermill log and the executed notebook under ``reports/notebooks/`` hold one deterministic line per bar.

:func:`note` is for messages meant for a reader ("using saved predictions"): standard output in a notebook
(not an error-coloured block), standard error in a terminal (standard output stays for results).

``BONETUMOR_PROGRESS`` overrides the choice: ``live`` (in-place bar), ``final`` (one final line) or
``off`` (no bar).
"""

from __future__ import annotations

import os
import sys
from typing import Iterable

from tqdm.std import tqdm

#: Environment variable that overrides how bars are shown: ``live``, ``final`` or ``off``.
MODE_VARIABLE = "BONETUMOR_PROGRESS"
MODES = ("live", "final", "off")
#: Seconds between redraws of a bar in a notebook (each redraw is a message to the frontend).
NOTEBOOK_MININTERVAL = 0.5
#: Width of a text bar in a notebook (a kernel has no terminal to measure).
NOTEBOOK_NCOLS = 90

_FINAL_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} {unit}{postfix}"
_FINAL_FORMAT_NO_TOTAL = "{n_fmt} {unit}{postfix}"


def in_kernel() -> bool:
    """True when running inside a Jupyter kernel (JupyterLab, nbval, papermill), False in a terminal or a
    plain Python process (IPython is never imported here just to find out)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def mode() -> str:
    """How bars are shown here: ``BONETUMOR_PROGRESS`` when set, else ``live``."""
    value = os.environ.get(MODE_VARIABLE, "").strip().lower() or "live"
    if value not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={value!r}: expected one of {', '.join(MODES)}")
    return value


class FinalLineBar(tqdm):
    """A tqdm bar that draws nothing while it runs and, when closed, writes its final state once as one
    line without timings (no carriage returns, no elapsed time or rate): the same text every run."""

    _closing = False

    @staticmethod
    def status_printer(file):
        def print_status(text):
            file.write(str(text))
            getattr(file, "flush", lambda: None)()

        return print_status

    @property
    def format_dict(self):
        values = super().format_dict
        values["bar_format"] = _FINAL_FORMAT if values["total"] else \
            ("{desc}: " if values.get("prefix") else "") + _FINAL_FORMAT_NO_TOTAL
        return values

    def display(self, msg=None, pos=None):
        if self._closing and msg is None:
            return super().display(msg, pos)
        return False

    def clear(self, nolock=False):
        """Nothing is drawn before the end, so there is nothing to clear (``tqdm.write`` calls this)."""

    def close(self):
        self._closing = True
        super().close()


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 unit: str = "it", leave: bool = True, enabled: bool = True) -> tqdm:
    """A tqdm bar suited to where the code runs (see the module docstring); use it as ``tqdm`` itself
    (iterate over it, or ``update``/``set_postfix``/``set_description``/``close`` it). ``enabled=False`` or
    ``BONETUMOR_PROGRESS=off`` gives a silent bar that still iterates."""
    how = mode()
    options = {"total": total, "desc": desc, "unit": unit, "leave": leave, "disable": not enabled or how == "off"}
    if not in_kernel():
        return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **options)
    if how == "final":
        return FinalLineBar(iterable, file=sys.stdout, ncols=NOTEBOOK_NCOLS, mininterval=3600, **options)
    return tqdm(iterable, file=sys.stdout, ncols=NOTEBOOK_NCOLS, mininterval=NOTEBOOK_MININTERVAL, **options)


def note(message: str) -> None:
    """An informational message for whoever is watching: standard output in a notebook (a normal output,
    not an error-coloured one), standard error in a terminal."""
    print(message, file=sys.stdout if in_kernel() else sys.stderr, flush=True)
