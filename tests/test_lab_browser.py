"""A real browser: JupyterLab headless, a notebook run in headless Chromium, a rendered figure, the case
browser's widget answering a click, no error-coloured output (tools/browser_check.py). Skipped where Debian's
chromium and chromium-driver are not installed."""

import shutil
import subprocess
import sys

import pytest

from bonetumor import paths

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="no chromium + chromedriver (apt-get install -y chromium chromium-driver)")
def test_notebook_runs_in_jupyterlab_in_chromium():
    result = subprocess.run([sys.executable, str(paths.ROOT / "tools" / "browser_check.py"), "--timeout", "300"],
                            cwd=paths.ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "images [{" in result.stdout and (paths.ROOT / "build" / "browser-check" / "lab-top.png").is_file()
