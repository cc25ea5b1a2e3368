"""Tracked notebooks stay clean: committed without outputs, and `git status` does not see a notebook that was
opened and run in the lab (the save hook and the git filter of bonetumor.lab, set up by `make env`)."""

import json
import shutil
import subprocess

import nbformat
import pytest
from jupyter_server.services.contents.filemanager import FileContentsManager
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from nbformat.v4 import new_output
from traitlets.config.loader import JSONFileConfigLoader

from bonetumor import lab, paths

GIT = shutil.which("git")


def in_git_checkout() -> bool:
    return GIT is not None and subprocess.run([GIT, "rev-parse", "--is-inside-work-tree"], cwd=paths.ROOT,
                                              capture_output=True).returncode == 0


def tracked_notebooks() -> dict[str, str]:
    """``{path: text}`` of notebooks/*.ipynb as committed (HEAD); the files on disk outside a git checkout."""
    if not in_git_checkout():
        return {str(p.relative_to(paths.ROOT)): p.read_text(encoding="utf-8")
                for p in sorted(paths.NOTEBOOKS.glob("*.ipynb"))}
    names = subprocess.run([GIT, "ls-tree", "--name-only", "HEAD", "notebooks/"], cwd=paths.ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    return {name: subprocess.run([GIT, "show", f"HEAD:{name}"], cwd=paths.ROOT, capture_output=True, text=True,
                                 check=True).stdout for name in names if name.endswith(".ipynb")}


COMMITTED = tracked_notebooks()
#: The git test runs nbstripout's command line, which takes seconds to start: one notebook is enough there.
SMALLEST = min(COMMITTED, key=lambda name: len(COMMITTED[name]))


def test_notebooks_are_tracked():
    assert len(COMMITTED) >= 6


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_tracked_notebook_has_no_outputs_or_run_details(name):
    nb = nbformat.reads(COMMITTED[name], as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        where = f"{name} cell {index}"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{where} has outputs: run `make strip`"
            assert cell.execution_count is None, f"{where} has an execution count: run `make strip`"
        assert not {"execution", "papermill", "ExecuteTime"} & set(cell.metadata), where
    assert not {"papermill", "widgets"} & set(nb.metadata), name
    assert set(nb.metadata.get("language_info", {})) <= {"name"}, f"{name}: the kernel's language_info details"
    assert COMMITTED[name] == nbformat.writes(nb) + "\n", f"{name}: not as nbstripout writes it: run `make strip`"


def after_a_run_in_the_lab(text: str) -> dict:
    """What JupyterLab sends to the server after Run All: outputs, counts, timings, the kernel's language_info."""
    nb = nbformat.reads(text, as_version=4)
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        cell.execution_count = count
        cell.metadata["execution"] = {"iopub.execute_input": "2030-01-01T00:00:00.000000Z"}
        cell.outputs = [new_output("stream", name="stdout", text="progress: 100%\n"),
                        new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})]
    nb.metadata["language_info"] = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                                    "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                                    "pygments_lexer": "ipython3", "version": "3.11.7"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    return json.loads(json.dumps(nb))


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_save_hook_writes_the_committed_bytes(name, tmp_path, monkeypatch):
    """Outside a git checkout the hook strips what is in the project's notebooks/ folder."""
    monkeypatch.setattr(paths, "NOTEBOOKS", tmp_path / "notebooks")
    paths.NOTEBOOKS.mkdir()
    contents = FileContentsManager(root_dir=str(tmp_path), pre_save_hook="bonetumor.lab.save_hook")
    contents.save({"type": "notebook", "format": "json", "content": after_a_run_in_the_lab(COMMITTED[name])}, name)
    assert (tmp_path / name).read_text(encoding="utf-8") == COMMITTED[name]


@pytest.fixture
def scratch_project(tmp_path):
    """A scratch git repository holding a committed notebook, this project's .gitattributes and .gitignore and
    the git filter as `make env` defines it (the save hook finds what to strip from .gitattributes)."""
    if GIT is None:
        pytest.skip("git is not installed")

    def git(*args):
        return subprocess.run([GIT, *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("config", "user.email", "test@example.invalid")
    git("config", "user.name", "test")
    for key, value in lab.git_filter_settings(lab.sys.executable).items():
        git("config", key, value)
    for name in (".gitattributes", ".gitignore"):
        shutil.copy(paths.ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / SMALLEST).write_text(COMMITTED[SMALLEST], encoding="utf-8")
    git("add", "-A")
    git("commit", "-q", "-m", "notebooks")
    return tmp_path, git


def test_git_status_stays_clean(scratch_project):
    root, git = scratch_project
    contents = FileContentsManager(root_dir=str(root), pre_save_hook="bonetumor.lab.save_hook")
    def model():
        return {"type": "notebook", "format": "json", "content": after_a_run_in_the_lab(COMMITTED[SMALLEST])}

    contents.save(model(), SMALLEST)  # the lab saves a notebook that ran
    assert git("status", "--porcelain") == ""
    (root / "scratch").mkdir()
    contents.save(model(), "scratch/mine.ipynb")  # outside notebooks/: saved as it is, outputs and all
    assert '"image/png"' in (root / "scratch" / "mine.ipynb").read_text(encoding="utf-8")
    (root / "scratch" / "mine.ipynb").unlink()

    # written some other way (another editor): git's filter stores it stripped
    nbformat.write(nbformat.from_dict(model()["content"]), root / SMALLEST)
    assert git("diff", "--stat") == ""  # (`git status` lists it until `git add`: git checks sizes before filters)
    git("add", "-A")
    assert git("status", "--porcelain") == ""  # nothing to commit

    published = root / "reports" / "notebooks" / "01.ipynb"  # make paper's executed copies keep their outputs
    published.parent.mkdir(parents=True)
    nbformat.write(nbformat.from_dict(model()["content"]), published)
    git("add", "-A")
    assert '"image/png"' in git("show", ":reports/notebooks/01.ipynb")


def test_server_config_names_the_hook_and_the_kernel(tmp_path):
    config_dir = tmp_path / "etc" / "jupyter"
    config_dir.mkdir(parents=True)
    (config_dir / "jupyter_server_config.json").write_text('{"ServerApp": {"log_level": "WARN"}}')
    target = lab.install_server_config(tmp_path)
    assert target == config_dir / "jupyter_server_config.json"
    config = json.loads(target.read_text())
    assert config["ServerApp"] == {"log_level": "WARN"}  # what was there stays
    assert config["MultiKernelManager"]["default_kernel_name"] == "bonetumor"
    loaded = JSONFileConfigLoader(target.name, path=str(config_dir)).load_config()  # as a Jupyter server reads it
    assert AsyncLargeFileManager(config=loaded, root_dir=str(tmp_path)).pre_save_hook is lab.save_hook
    assert AsyncMappingKernelManager(config=loaded).default_kernel_name == "bonetumor"
