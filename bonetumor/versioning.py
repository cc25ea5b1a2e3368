"""The state of the code that produced a result: git commit and whether tracked files differed from it.

A low-level helper, so that training (``run.json``) and reporting (``reports/provenance.json``) record the
code state the same way without training importing the reporting package.
"""

from __future__ import annotations

import subprocess

from bonetumor import paths


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_state() -> dict:
    """Git commit and whether tracked code differed from it (``reports/`` excluded: a run rewrites it).
    Taken *before* the notebooks run."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
