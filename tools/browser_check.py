"""Check the lab in a real browser: JupyterLab headless on a free localhost port (temporary configuration,
settings and workspace), a notebook opened in headless Chromium driven by ChromeDriver's W3C WebDriver
protocol (plain HTTP: no Python package needed), Run All, then assert what a reader would see: a rendered
``<img>`` of a figure in an output area, the case browser's widget with its picture, a progress bar as one
line and no error-coloured (stderr) output. Screenshots go to ``build/browser-check/`` (never committed).

    python tools/browser_check.py                        # a small temporary notebook (seconds of compute)
    python tools/browser_check.py --notebook notebooks/02_preprocessing.ipynb
                                  # a real notebook (its parameters cell: the smoke profile); `git status` too

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``);
``tests/test_lab_browser.py`` runs the first form and is skipped where they are missing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "browser-check"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1100"]

CHECK_NOTEBOOK_CELLS = [
    "# a progress bar, as the package shows it in a notebook\n"
    "import time\nfrom bonetumor.progress import progress_bar\n"
    "for _ in progress_bar(range(12), desc='work', unit='step'):\n    time.sleep(0.05)",
    "# a figure drawn by bonetumor.reporting, displayed inline (as in notebooks/)\n%matplotlib inline\n"
    "import numpy as np\nimport pandas as pd\n"
    "from bonetumor.reporting import figures\n"
    "rows = [{'row': r, 'metric': m, 'value': v, 'ci_low': v - 5, 'ci_high': v + 5}\n"
    "        for r, base in (('paper (as reported)', 90), ('measured here', 60))\n"
    "        for m, v in zip(('accuracy', 'precision', 'recall', 'F1'), (base, base - 5, base - 10, base - 7))]\n"
    "figures.figure7(pd.DataFrame(rows), 'browser check: a figure of bonetumor.reporting')",
    "# the case browser on hand-made cases\nfrom bonetumor.evaluation import encode_mask\n"
    "from bonetumor.reporting.case_browser import CaseBrowser\n"
    "def case(i, label, score):\n"
    "    rec = {'image_id': i, 'name': f'case{i}', 'label': label, 'subtype': None, 'width': 96, 'height': 96,\n"
    "           'lesions': [] if label == 'normal' else\n"
    "           [{'category': label, 'polygons': [[30, 30, 60, 30, 60, 60, 30, 60]], 'box': [30, 30, 60, 60]}]}\n"
    "    mask = np.zeros((96, 96), bool); mask[32:58, 32:58] = True\n"
    "    pred = {'image_id': i, 'width': 96, 'height': 96, 'boxes': [[32, 32, 58, 58]], 'labels': [2],\n"
    "            'scores': [score], 'masks': [encode_mask(mask)]}\n"
    "    return rec, pred\n"
    "cases = [case(1, 'malignant', 0.9), case(2, 'benign', 0.3), case(3, 'normal', 0.7), case(4, 'normal', 0.1)]\n"
    "image = np.tile(np.linspace(0.1, 0.9, 96), (96, 1))\n"
    "CaseBrowser([r for r, _ in cases], [p for _, p in cases], lambda record: image, 0.5)",
]

#: JavaScript run in the page (window.jupyterapp: --LabApp.expose_app_in_browser).
JS_KERNEL_STATUS = """
const app = window.jupyterapp; if (!app || !app.shell) return null;
const panel = app.shell.currentWidget; if (!panel || !panel.sessionContext) return null;
const session = panel.sessionContext.session; if (!session || !session.kernel) return null;
return [session.kernel.name, session.kernel.status];"""
JS_OUTPUTS = """
const area = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
if (!area) return null;
const cells = [...area.querySelectorAll('.jp-Cell.jp-CodeCell')];
return cells.map(cell => ({
  prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
  images: [...cell.querySelectorAll('.jp-OutputArea-output img')]
          .map(img => ({w: img.naturalWidth, h: img.naturalHeight, widget: !!img.closest('.jupyter-widgets')})),
  stderr: cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]').length,
  errors: cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"]').length,
  widgetErrors: [...cell.querySelectorAll('.jp-OutputArea-output')]
          .filter(o => /Error displaying widget/.test(o.textContent)).length,
  text: [...cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.stdout"]')].map(o => o.textContent),
  widgets: cell.querySelectorAll('.jupyter-widgets.widget-vbox, .jupyter-widgets .widget-slider').length,
}));"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe, timeout: float, interval: float = 0.5):
    """Call ``probe`` until it returns something truthy; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class WebDriver:
    """The few W3C WebDriver commands used here, over ChromeDriver's HTTP endpoint."""

    def __init__(self, port: int, profile: Path):
        self.base = f"http://127.0.0.1:{port}"
        options = {"binary": CHROMIUM, "args": CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]}
        reply = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
        self.session = f"/session/{reply['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 60):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"WebDriver {method} {path}: {exc.read().decode(errors='replace')[:500]}") from None

    def get(self, url: str) -> None:
        self._call("POST", self.session + "/url", {"url": url})

    def script(self, source: str, *args):
        return self._call("POST", self.session + "/execute/sync", {"script": source, "args": list(args)})

    def screenshot(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(self._call("GET", self.session + "/screenshot")))
        return target

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self._call("DELETE", self.session, timeout=10)


def start(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                            start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_check_notebook(folder: Path) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(source) for source in CHECK_NOTEBOOK_CELLS], metadata={
        "kernelspec": {"name": "bonetumor", "display_name": "Python (bonetumor)", "language": "python"}})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "browser_check.ipynb"
    nbformat.write(nb, path)
    return path


def git_status(path: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=ROOT, capture_output=True,
                          text=True).stdout


def lab_environment(tmp: Path) -> dict:
    """This environment with a temporary Jupyter configuration, runtime, settings and workspace folder (the
    environment's own configuration, the save hook and the default kernel, still applies); JupyterLab asks
    for no news (this machine has no network to fetch them from)."""
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        (tmp / name.lower()).mkdir()
        env[name] = str(tmp / name.lower())
    news = tmp / "jupyterlab_settings_dir" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return env


def start_lab(tmp: Path, token: str, port: int) -> subprocess.Popen:
    """JupyterLab at the project root, as `make lab` opens it, on ``port`` of 127.0.0.1 only."""
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
               "--LabApp.expose_app_in_browser=True", *(["--allow-root"] if os.geteuid() == 0 else [])]
    return start(command, OUT / "jupyterlab.log", lab_environment(tmp))


def run_all_in_browser(driver: "WebDriver", url: str, timeout: float) -> dict:
    """Open ``url`` (a notebook in the lab), Run All, take screenshots, click the case browser's "next",
    save; what the page showed."""
    driver.get(url)
    kernel = wait_for("the kernel", lambda: (driver.script(JS_KERNEL_STATUS) or [None, None])[1] == "idle"
                      and driver.script(JS_KERNEL_STATUS), 120)
    driver.script("return window.jupyterapp.commands.execute('notebook:run-all-cells');")
    wait_for("every cell to run", lambda: _all_ran(driver.script(JS_OUTPUTS)), timeout, 1.0)
    time.sleep(1.0)  # let images decode before the screenshot
    outputs = driver.script(JS_OUTPUTS)
    shots = [driver.screenshot(OUT / "lab-top.png")]
    driver.script("const imgs = document.querySelectorAll('.jp-OutputArea-output img');"
                  "if (imgs.length) imgs[imgs.length - 1].scrollIntoView({block: 'end'});")
    time.sleep(0.5)
    shots.append(driver.screenshot(OUT / "lab-last-image.png"))
    next_case = _click_next_case(driver)
    if next_case:
        shots.append(driver.screenshot(OUT / "lab-case-browser-next.png"))
    driver.script("return window.jupyterapp.commands.execute('docmanager:save');")
    time.sleep(2.0)
    return {"kernel": kernel, "cells": outputs, "screenshots": [str(s) for s in shots], "next_case": next_case}


def check(notebook: Path | None, timeout: float) -> dict:
    """Run one notebook in the lab in Chromium; returns what was seen (raises ``AssertionError`` if wrong)."""
    OUT.mkdir(parents=True, exist_ok=True)
    notebook = (notebook or write_check_notebook(OUT / "notebook")).resolve()
    status_before = git_status(notebook)
    with tempfile.TemporaryDirectory(prefix="bonetumor-browser-") as tmp_name:
        tmp = Path(tmp_name)
        token, lab_port, driver_port = secrets.token_hex(16), free_port(), free_port()
        lab = start_lab(tmp, token, lab_port)
        chromedriver = start([CHROMEDRIVER, f"--port={driver_port}"], OUT / "chromedriver.log")
        driver = None
        try:
            base = f"http://127.0.0.1:{lab_port}"
            wait_for("JupyterLab", lambda: _alive(lab, "JupyterLab") and urllib.request.urlopen(
                f"{base}/api/status?token={token}", timeout=5).status == 200, 120)
            wait_for("ChromeDriver", lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{driver_port}/status", timeout=5).status == 200, 60)
            driver = WebDriver(driver_port, tmp / "chromium-profile")
            seen = run_all_in_browser(
                driver, f"{base}/lab/tree/{notebook.relative_to(ROOT).as_posix()}?reset&token={token}", timeout)
        finally:
            if driver is not None:
                driver.quit()
            stop(chromedriver)
            stop(lab)
    seen.update(git_status_before=status_before, git_status_after=git_status(notebook))
    (OUT / "seen.json").write_text(json.dumps(seen, indent=1))
    _assert_reader_sees(seen)
    return seen


JS_CASE_POSITION = """
const label = [...document.querySelectorAll('.jupyter-widgets.widget-label')]
  .find(l => /^case \\d+ of/.test(l.textContent));
return label ? label.textContent : null;"""


def _click_next_case(driver) -> str | None:
    """Click the case browser's "next" button, if there is one; the position it then shows."""
    before = driver.script(JS_CASE_POSITION)
    if before is None:
        return None
    driver.script("[...document.querySelectorAll('button')].find(b => b.textContent.includes('next')).click();")
    return wait_for("the next case", lambda: (now := driver.script(JS_CASE_POSITION)) != before and now, 60)


def _alive(process: subprocess.Popen, name: str) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"{name} exited with status {process.returncode}; see {OUT}")
    return True


def _all_ran(cells):
    """The cells once each has an execution count (``[3]:``, not ``[*]:`` or ``[ ]:``)."""
    if not cells or any(not c["prompt"].strip("[]: ").isdigit() for c in cells):
        return None
    return cells


def _assert_reader_sees(seen: dict) -> None:
    cells = seen["cells"]
    assert seen["kernel"][0] == "bonetumor", f"kernel {seen['kernel']}: not the bonetumor kernel"
    for index, cell in enumerate(cells):
        assert cell["stderr"] == 0 and cell["errors"] == 0, f"cell {index}: error-coloured output {cell}"
        assert cell["widgetErrors"] == 0, f"cell {index}: 'Error displaying widget'"
    figures = [img for cell in cells for img in cell["images"] if not img["widget"] and img["w"] > 0]
    assert figures, "no rendered <img> of a figure in any output area"
    if any(cell["widgets"] for cell in cells):
        assert seen["next_case"] and seen["next_case"].startswith("case 2 of"), f"next case: {seen['next_case']}"
    assert seen["git_status_after"] == seen["git_status_before"], \
        f"git status changed: {seen['git_status_before']!r} -> {seen['git_status_after']!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, help="a notebook under the project root (default: a small "
                                                      "temporary one under build/browser-check/)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for Run All")
    args = parser.parse_args(argv)
    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).exists():
            print(f"browser check: {program} not found (apt-get install -y chromium chromium-driver)")
            return 2
    seen = check(args.notebook.resolve() if args.notebook else None, args.timeout)
    for index, cell in enumerate(seen["cells"]):
        print(f"cell {index} {cell['prompt'].strip()} images {cell['images']} widgets {cell['widgets']} "
              f"stdout {[t.strip()[-90:] for t in cell['text']]}")
    print("screenshots:", *seen["screenshots"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
