"""The `make paper` runner: ordered notebooks through papermill, failures named, nothing half-written."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from bonetumor import cli, paper

PARAMETERS = 'profile = "smoke"\ndata = ""\nreports_dir = ""'


def write_notebook(path, *sources):
    cells = [new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})]
    cells += [new_code_cell(source) for source in sources]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "bonetumor", "display_name": "bonetumor",
                                                            "language": "python"}})
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    ok = write_notebook(folder / "01_ok.ipynb",
                        "from pathlib import Path\n(Path(reports_dir) / 'seen.txt').write_text(profile)")
    failing = write_notebook(folder / "02_fail.ipynb", "x = 1", "raise ValueError('boom in the middle')", "y = 2")
    return ok, failing


def test_ordered_notebooks_skips_unnumbered(tmp_path):
    for name in ("02_b.ipynb", "01_a.ipynb", "scratch.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in paper.ordered_notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb"]
    with pytest.raises(FileNotFoundError, match="no NN_"):
        paper.ordered_notebooks(tmp_path / "empty")


def test_successful_run_writes_copies_and_provenance(notebooks, tmp_path, capsys):
    ok, _ = notebooks
    reports = tmp_path / "reports"
    results = paper.run_paper("smoke", reports=reports, notebooks=[ok])
    assert [r.name for r in results] == ["01_ok"] and results[0].seconds > 0
    assert (reports / "seen.txt").read_text() == "smoke"  # parameters were injected
    executed = nbformat.read(reports / "notebooks" / "01_ok.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    provenance = json.loads((reports / "provenance.json").read_text())
    assert provenance["profile"] == "smoke"
    assert "provenance.json" in (reports / "README.md").read_text()
    assert provenance["notebooks"] == [{"name": "01_ok", "seconds": results[0].seconds}]
    assert {"commit", "dirty"} <= set(provenance["code"])
    assert provenance["packages"]["torch"] and provenance["device"]["cpu"]
    assert provenance["data"]["synthetic"] is True and provenance["seeds"] == {"seed": 0}
    out = capsys.readouterr().out
    assert "[1/1] 01_ok ... ok" in out and out.count("\n") == 2  # one line per notebook, plus the header


def test_failure_names_notebook_and_cell_and_leaves_no_copy(notebooks, tmp_path):
    ok, failing = notebooks
    reports = tmp_path / "reports"
    (reports / "notebooks").mkdir(parents=True)
    stale = reports / "notebooks" / "02_fail.ipynb"
    stale.write_text("an old, complete-looking copy")
    with pytest.raises(paper.NotebookFailed) as info:
        paper.run_paper("smoke", reports=reports, notebooks=[ok, failing])
    message = str(info.value)
    assert "02_fail.ipynb" in message and "ValueError: boom in the middle" in message
    assert "raise ValueError" in message  # the failing cell's source is named
    assert (reports / "notebooks" / "01_ok.ipynb").exists()
    assert sorted(p.name for p in (reports / "notebooks").iterdir()) == ["01_ok.ipynb"]
    assert not (reports / "provenance.json").exists()


def test_cli_exit_status_names_the_failure(notebooks, tmp_path, monkeypatch, capsys):
    _, failing = notebooks
    monkeypatch.setattr(paper, "ordered_notebooks", lambda: [failing])
    status = cli.main(["paper", "--profile", "smoke", "--reports", str(tmp_path / "r")])
    assert status == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "02_fail.ipynb" in err
