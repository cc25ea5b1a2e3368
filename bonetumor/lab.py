"""JupyterLab set-up for readers: tracked notebooks stay clean, the bonetumor kernel is the default.

Two layers keep ``notebooks/*.ipynb`` free of outputs, so that opening or running a notebook never shows in
``git status``:

* :func:`save_hook`, a Jupyter server pre-save hook, writes a notebook that git strips (see
  :func:`is_tracked_notebook`) to disk without outputs, execution counts or the kernel's ``language_info``
  details (the lab keeps showing them; the executed copies with figures are ``make paper``'s, under
  ``reports/notebooks/``). Saving a notebook that only ran therefore rewrites the committed bytes, and git
  sees nothing.
* the ``nbstripout`` git filter (``.gitattributes``) strips whatever reaches git some other way (another
  editor, ``jupyter nbconvert --inplace``). A filter alone does not keep ``git status`` clean: git reports
  a file whose size changed as modified without asking the filter.

Both strip with the same :data:`NBSTRIPOUT_FLAGS`. ``python tools/lab_setup.py install`` (run by
``make env``) defines the git filter and installs :data:`SERVER_CONFIG` into the environment's Jupyter
configuration.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from bonetumor import paths

#: What is stripped besides outputs and execution counts: of ``language_info`` only ``name`` stays (the
#: kernel fills in the rest when a notebook is opened). Cell ids stay (nbformat 4.5).
EXTRA_KEYS = [f"metadata.language_info.{key}" for key in
              ("codemirror_mode", "file_extension", "mimetype", "nbconvert_exporter", "pygments_lexer", "version")]
NBSTRIPOUT_FLAGS = ["--keep-id", "--extra-keys", " ".join(EXTRA_KEYS)]
#: nbstripout's own defaults (its command line adds them to ``--extra-keys``), for stripping in-process.
NBSTRIPOUT_DEFAULT_KEYS = ["metadata.signature", "metadata.widgets", "cell.metadata.collapsed",
                           "cell.metadata.ExecuteTime", "cell.metadata.execution", "cell.metadata.heading_collapsed",
                           "cell.metadata.hidden", "cell.metadata.scrolled"]
KERNEL = "bonetumor"
#: The Jupyter server settings merged into ``<venv>/etc/jupyter/jupyter_server_config.json``.
SERVER_CONFIG = {
    "FileContentsManager": {"pre_save_hook": "bonetumor.lab.save_hook"},
    "MultiKernelManager": {"default_kernel_name": KERNEL},
}
SERVER_CONFIG_NAME = "jupyter_server_config.json"  # (a jupyter_server_config.d/ file would be ignored)


def nbstripout_command(*extra: str, python: str | None = None) -> list[str]:
    """The nbstripout command line with this project's flags (``extra``: e.g. ``-t`` or file names)."""
    return [python or sys.executable, "-m", "nbstripout", *NBSTRIPOUT_FLAGS, *extra]


def strip(content: dict):
    """A notebook (nbformat JSON as a dict) as git's filter stores it: nbstripout's own function with the
    settings of :data:`NBSTRIPOUT_FLAGS`, in-process (its command line takes seconds to start), so the bytes
    written agree with the committed ones (``tests/test_lab_notebooks.py`` compares the two)."""
    import nbformat
    from nbstripout import strip_output

    return strip_output(nbformat.from_dict(content), keep_output=None, keep_count=False, keep_id=True,
                        extra_keys=NBSTRIPOUT_DEFAULT_KEYS + EXTRA_KEYS)


def is_tracked_notebook(os_path: Path) -> bool:
    """True for a notebook that git strips (``.gitattributes`` gives it ``filter=nbstripout``: the notebooks of
    ``notebooks/`` in any checkout of the project); outside a git checkout, a notebook directly in this
    project's ``notebooks/`` folder."""
    os_path = Path(os_path).resolve()
    if os_path.suffix != ".ipynb":
        return False
    try:
        attribute = subprocess.run(["git", "check-attr", "filter", "--", os_path.name], cwd=os_path.parent,
                                   capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        attribute = None
    if attribute is not None and attribute.returncode == 0:
        return attribute.stdout.strip().endswith(": filter: nbstripout")
    return os_path.parent == paths.NOTEBOOKS.resolve()


def save_hook(model: dict, path: str, contents_manager, **kwargs) -> None:
    """Jupyter server pre-save hook: strip a notebook of ``notebooks/`` before it is written (see the module
    docstring); any other file is saved as it is."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    if is_tracked_notebook(Path(contents_manager.root_dir) / path.lstrip("/")):
        model["content"] = strip(model["content"])


def git_filter_settings(python: str) -> dict[str, str]:
    """``git config`` entries of the ``nbstripout`` filter and diff driver that ``.gitattributes`` names."""
    def command(*extra):
        return " ".join(shlex.quote(part) for part in nbstripout_command(*extra, python=python))

    return {"filter.nbstripout.clean": command(), "filter.nbstripout.smudge": "cat",
            "filter.nbstripout.required": "true", "diff.ipynb.textconv": command("-t")}


def install_git_filter(root: Path = paths.ROOT, python: str | None = None) -> bool:
    """Define the git filter in ``root``'s repository; False (nothing done) outside a git checkout."""
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True)
    if inside.returncode != 0:
        return False
    for key, value in git_filter_settings(str(Path(python or sys.executable).absolute())).items():
        subprocess.run(["git", "config", key, value], cwd=root, check=True)
    return True


def install_server_config(prefix: str | Path = sys.prefix) -> Path:
    """Merge :data:`SERVER_CONFIG` into ``<prefix>/etc/jupyter/jupyter_server_config.json``, which every
    Jupyter server of this environment reads (other settings in that file are kept)."""
    target = Path(prefix) / "etc" / "jupyter" / SERVER_CONFIG_NAME
    config = json.loads(target.read_text(encoding="utf-8")) if target.is_file() else {}
    for section, values in SERVER_CONFIG.items():
        config.setdefault(section, {}).update(values)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target
