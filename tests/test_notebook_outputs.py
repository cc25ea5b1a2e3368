"""What a reader sees: every notebook run as `make paper` runs it (smoke profile, the phantom) shows each of
its figures as a picture and prints nothing error-coloured (no stderr) in cells that ran normally."""

from __future__ import annotations

import nbformat
import pytest

from bonetumor import paths

#: Cells tagged ``figure`` exist to show one; each notebook below has at least this many.
FIGURE_CELLS = {"01_data_collection": 1, "02_preprocessing": 1, "04_training": 1, "06_figures": 5, "07_what_matters": 1}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from bonetumor.paper import run_paper

    reports = tmp_path_factory.mktemp("reports")
    with open(tmp_path_factory.mktemp("log") / "paper.txt", "w") as stream:
        run_paper(profile="smoke", reports=reports, stream=stream)  # the smoke run nbval uses, trained once
    return {p.stem: nbformat.read(p, as_version=4) for p in sorted((reports / "notebooks").glob("*.ipynb"))}


@pytest.mark.slow
def test_every_notebook_ran(executed):
    assert sorted(executed) == sorted(p.stem for p in paths.ROOT.joinpath("notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIGURE_CELLS))
def test_every_figure_cell_shows_a_picture(executed, name):
    cells = [c for c in executed[name].cells if "figure" in c.metadata.get("tags", [])]
    assert len(cells) >= FIGURE_CELLS[name]
    for cell in cells:
        pictures = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert pictures, f"{name}: no picture from {cell.source.splitlines()[0]!r}"


@pytest.mark.slow
def test_no_cell_prints_to_stderr(executed):
    noisy = [(name, cell.source.splitlines()[0], output.get("text", "")[:200])
             for name, nb in executed.items() for cell in nb.cells if cell.cell_type == "code"
             for output in cell.outputs if output.get("output_type") == "stream" and output.get("name") == "stderr"]
    assert not noisy, noisy
