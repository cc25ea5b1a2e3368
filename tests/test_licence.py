"""BTXRD's licence (CC BY-NC-ND) forbids redistributing derivatives of its radiographs: on data marked as
BTXRD, no notebook writes an image-bearing file under reports/, and the published executed notebooks carry
no picture. Every notebook is run, as `make paper DATA=...` runs them, on a tiny phantom given as BTXRD."""

from __future__ import annotations

import json

import nbformat
import pytest

from bonetumor.paper import IMAGE_MIMES, IMAGE_WITHHELD, publishable

#: Figures that show no radiograph (loss curves, bar charts): the only ones a BTXRD run may write.
FIGURES_WITHOUT_RADIOGRAPHS = {"figure6_training", "figure7_comparison", "forest_what_matters"}


def test_publishing_withholds_every_picture_when_asked():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
                    nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    nb.cells = [cell]
    withheld = publishable(nb, [], withhold_images=True).cells[0].outputs
    assert not any(m in o.get("data", {}) for o in withheld for m in IMAGE_MIMES)
    assert withheld[0]["data"]["text/plain"] == IMAGE_WITHHELD and withheld[1]["text"] == "kept\n"
    assert "image/png" in publishable(nb, []).cells[0].outputs[0]["data"]  # the phantom's copies keep them


@pytest.mark.slow
def test_no_btxrd_derivative_lands_in_reports(tmp_path, monkeypatch):
    from bonetumor.data import phantom
    from bonetumor.paper import run_paper

    data = tmp_path / "BTXRD"
    phantom.generate(data, n_images=16, seed=3, size=128, progress=False)
    monkeypatch.setenv("BONETUMOR_RUNS", str(tmp_path / "runs"))  # the notebooks' kernels train into it
    monkeypatch.setenv("BONETUMOR_DATA", str(tmp_path / "data"))
    reports = tmp_path / "reports"
    run_paper(profile="smoke", data=str(data), reports=reports, stream=open("/dev/null", "w"))
    written = {p.stem for p in (reports / "figures").glob("*") if p.suffix in (".png", ".pdf")}
    assert written <= FIGURES_WITHOUT_RADIOGRAPHS, written - FIGURES_WITHOUT_RADIOGRAPHS
    executed = sorted((reports / "notebooks").glob("*.ipynb"))
    assert len(executed) >= 6
    for path in executed:
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                assert not any(m in output.get("data", {}) for m in IMAGE_MIMES), (path.name, cell.source[:60])
    assert json.loads((reports / "provenance.json").read_text())["data"]["source"] == "btxrd"
