"""The `make paper` runner: ordered notebooks through papermill, failures named, nothing half-written."""

import json
import re
import tempfile
from pathlib import Path

import nbformat
import pytest
import torch
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
    assert "[01_ok](notebooks/01_ok.ipynb)" in (reports / "README.md").read_text()
    assert provenance["notebooks"] == [{"name": "01_ok", "seconds": results[0].seconds}]
    assert {"commit", "dirty"} <= set(provenance["code"])
    assert provenance["packages"]["torch"] and provenance["device"]["cpu"]
    assert provenance["device"]["cpu_instruction_sets"]["torch"] == torch.backends.cpu.get_cpu_capability()
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


# --------------------------------------------------------------------------------------------------------
# published copies: deterministic, no run-specific details, figures kept

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def executed_notebook(root, tmp, seconds: float):
    """What papermill writes for a small notebook: timings, widget state, paths of this machine."""
    from nbformat.v4 import new_markdown_cell, new_output

    stamp = f"2030-01-01T00:00:{seconds:09.6f}Z"
    run_meta = {"execution": {"iopub.execute_input": stamp, "shell.execute_reply": stamp},
                "papermill": {"duration": seconds, "start_time": stamp, "end_time": stamp, "status": "completed"}}
    bar = "".join(f"\rpredict: {10 * i:3d}%|{'#' * i:<10}| {i}/10 [{i:02d}s]" for i in range(11)) + "\n"
    cells = [
        new_code_cell(PARAMETERS, id="aaaa0001", metadata={"tags": ["parameters"], **run_meta}),
        new_code_cell(f'# Parameters\nreports_dir = "{root}/reports"\n', id=f"random{int(seconds)}",
                      metadata={"tags": ["injected-parameters"], **run_meta}),
        new_markdown_cell("text", id="aaaa0002", metadata={"tags": [], **run_meta}),
        new_code_cell("run()", id="aaaa0003", execution_count=3, metadata=dict(run_meta), outputs=[
            new_output("stream", name="stdout", text=f"data in {root}/data/phantom and {tmp}/tmpk3x_{seconds}/a.png\n"),
            new_output("stream", name="stdout", text=bar[:40]),
            new_output("stream", name="stdout", text=bar[40:]),
            new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure size 100x100 with 1 Axes>"}),
            new_output("display_data", data={"application/vnd.jupyter.widget-view+json":
                                             {"model_id": f"model{seconds}", "version_major": 2, "version_minor": 0},
                                             "text/plain": "VBox(children=(IntSlider(value=0),))"}),
            new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m2"},
                                             "image/png": PNG, "text/plain": "Case browser"}),
            new_output("execute_result", execution_count=3,
                       data={"text/html": f"<td>{root}/reports/figures</td>", "text/plain": f"{root}2 stays"}),
        ]),
    ]
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "bonetumor", "display_name": "Python (bonetumor)", "language": "python"},
        "papermill": {"duration": seconds, "start_time": stamp, "input_path": f"{root}/notebooks/01.ipynb"},
        "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {f"model{seconds}": {}}}}})
    return nb


def test_published_copy_has_no_run_details_and_keeps_figures(tmp_path):
    root, tmp = "/srv/checkout/bonetumor", "/var/tmp-x"
    replacements = paper.path_replacements(root=Path(root))
    replacements += [(re.compile(re.escape(tmp) + r"(?:/[^/\s'\"]*)?(?![\w.-])"), "<tmp>")]
    nb = paper.publishable(executed_notebook(root, tmp, 1.5), replacements)
    nbformat.validate(nb)
    assert set(nb.metadata) == {"kernelspec"}
    assert all(set(cell.metadata) <= {"tags"} for cell in nb.cells)
    assert "tags" not in nb.cells[2].metadata  # papermill's empty tag lists are dropped
    assert [cell.id for cell in nb.cells[:2]] == ["aaaa0001", "injected-parameters"]
    assert nb.cells[1].source == '# Parameters\nreports_dir = "<repo>/reports"\n'
    outputs = nb.cells[3].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data", "display_data", "execute_result"]
    assert outputs[0].text == ("data in <repo>/data/phantom and <tmp>/a.png\n"
                               "predict: 100%|##########| 10/10 [10s]\n")
    assert outputs[1].data["image/png"] == PNG
    assert outputs[2].data == {"image/png": PNG, "text/plain": "Case browser"}  # a widget's static view stays
    assert outputs[3].data == {"text/html": "<td><repo>/reports/figures</td>", "text/plain": f"{root}2 stays"}
    assert outputs[3].execution_count == 3


def test_published_copy_is_byte_identical_whatever_the_timings(tmp_path):
    written = []
    for seconds in (1.5, 7.25):
        executed = tmp_path / f"executed-{seconds}.ipynb"
        nb = executed_notebook(str(paper.paths.ROOT), tempfile.gettempdir(), seconds)
        nb.cells[3].outputs[0].text = nb.cells[3].outputs[0].text.replace(f"tmpk3x_{seconds}", "tmpk3x")
        nbformat.write(nb, executed)
        written.append(paper.write_publishable(executed, tmp_path / f"published-{seconds}.ipynb").read_bytes())
    assert written[0] == written[1]
    text = written[0].decode()
    assert f'{paper.paths.ROOT}/' not in text and tempfile.gettempdir() + "/" not in text
    assert "duration" not in text and "2030-" not in text and "widget" not in text and "\\r" not in text
    assert text.endswith("}\n")


def test_executed_copy_is_published_clean(tmp_path):
    notebook = write_notebook(tmp_path / "01_env.ipynb",
                              "import os\nprint(os.environ['BONETUMOR_PROGRESS'], reports_dir)")
    reports = tmp_path / "reports"
    paper.run_paper("smoke", reports=reports, notebooks=[notebook])
    published = reports / "notebooks" / "01_env.ipynb"
    executed = nbformat.read(published, as_version=4)
    assert "papermill" not in executed.metadata
    assert all("execution" not in c.metadata and "papermill" not in c.metadata for c in executed.cells)
    assert executed.cells[1].id == "injected-parameters"
    assert executed.cells[2].outputs[0].text == "final <reports>\n"  # the kernel ran with one-line progress bars
    assert str(tmp_path) not in published.read_text()
    assert not list((reports / "notebooks").glob(".*"))  # no temporary copy left behind


def test_the_cell_timeout_scales_with_the_data_so_a_data_size_never_makes_it_certain(tmp_path):
    from bonetumor import config
    from bonetumor.paper import SECONDS_PER_IMAGE_EPOCH, cell_timeout

    quick = config.load("quick")
    timeout, why = cell_timeout(quick)
    training = quick.data.phantom_images * quick.train.epochs * SECONDS_PER_IMAGE_EPOCH
    assert timeout == quick.notebook_timeout + int(training) and f"{quick.data.phantom_images} images" in why
    # BTXRD's 3,746 radiographs at the quick profile's 24 epochs: about 150-200 s an epoch on 2 cores
    root = tmp_path / "BTXRD"
    (root / "images").mkdir(parents=True)
    (root / "dataset.xlsx").write_bytes(b"")
    for i in range(3746):
        (root / "images" / f"IMG{i:06d}.jpeg").write_bytes(b"")
    btxrd_timeout, why = cell_timeout(config.load("quick", data=str(root)))
    assert "3746 images" in why and btxrd_timeout > 24 * 200 * 3


def test_make_paper_clears_its_own_outputs_but_keeps_the_benchmark(tmp_path):
    from bonetumor.paper import _clear_outputs

    for sub, name in (("tables", "benchmark.csv"), ("tables", "benchmark.md"), ("tables", "data_card.csv"),
                      ("figures", "figure4_detection.png"), ("notebooks", "01_data_collection.ipynb")):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / name).write_text("x")
    _clear_outputs(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["tables/benchmark.csv", "tables/benchmark.md"]
