"""Progress bars and notes: stderr in a terminal; in a Jupyter kernel stdout only, ending as one clean line."""

import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from bonetumor import progress

# What a notebook frontend shows of a stream: text before a carriage return on the same line is overwritten.
OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")


def shown(text: str) -> str:
    return OVERWRITTEN.sub("", text).replace("\r", "")


def test_terminal_bar_and_note_go_to_stderr(capsys, monkeypatch):
    monkeypatch.setenv(progress.MODE_VARIABLE, "live")
    assert not progress.in_kernel()
    assert list(progress.progress_bar(range(3), desc="work", unit="item")) == [0, 1, 2]
    progress.note("using saved predictions")
    out, err = capsys.readouterr()
    assert out == ""
    assert "work" in err and "3/3" in err and "using saved predictions" in err


def test_disabled_bar_still_iterates_silently(capsys, monkeypatch):
    monkeypatch.setenv(progress.MODE_VARIABLE, "off")
    assert list(progress.progress_bar(range(4), desc="quiet")) == [0, 1, 2, 3]
    assert list(progress.progress_bar(range(2), enabled=False)) == [0, 1]
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv(progress.MODE_VARIABLE, "sometimes")
    with pytest.raises(ValueError, match="BONETUMOR_PROGRESS"):
        progress.mode()


KERNEL_CELLS = [
    # a live bar that redraws several times (steps longer than the redraw interval), then a note
    "import os, time\nos.environ['BONETUMOR_PROGRESS'] = 'live'\n"
    "from bonetumor.progress import progress_bar, note, in_kernel\nassert in_kernel()\n"
    "for _ in progress_bar(range(4), desc='live', unit='step'):\n    time.sleep(0.25)\n"
    "note('using saved predictions')",
    # what `make paper` gets: nothing while running, the final state once
    "os.environ['BONETUMOR_PROGRESS'] = 'final'\n"
    "bar = progress_bar(total=5, desc='final', unit='batch')\n"
    "for _ in range(5):\n    time.sleep(0.2)\n    bar.update(1)\n    bar.set_postfix(loss='0.123', refresh=False)\n"
    "bar.write('epoch 1/1 done')\nbar.close()\n"
    "for _ in progress_bar((i for i in range(3)), desc='no total', unit='batch'):\n    pass",
]


@pytest.fixture(scope="module")
def kernel_outputs(tmp_path_factory):
    nb = new_notebook(cells=[new_code_cell(source) for source in KERNEL_CELLS])
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path_factory.mktemp("kernel"))}}).execute()
    return [cell.outputs for cell in nb.cells]


def test_kernel_writes_nothing_to_stderr(kernel_outputs):
    for outputs in kernel_outputs:
        assert outputs, "every cell printed something"
        assert all(o.output_type == "stream" and o.name == "stdout" for o in outputs), outputs


def test_live_bar_in_a_kernel_ends_as_one_clean_line(kernel_outputs):
    text = "".join(o.text for o in kernel_outputs[0])
    assert "\r" in text  # redrawn in place, which JupyterLab shows as one line
    lines = shown(text).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("live: 100%") and "4/4" in lines[0]
    assert lines[1] == "using saved predictions"
    assert "widget" not in text.lower()


def test_final_mode_writes_one_deterministic_line_per_bar(kernel_outputs):
    text = "".join(o.text for o in kernel_outputs[1])
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "epoch 1/1 done"
    assert re.fullmatch(r"final: 100%\|█+\| 5/5 batch, loss=0\.123", lines[1]), lines[1]
    assert lines[2] == "no total: 3 batch"
    assert len(lines) == 3 and text.endswith("\n")
