"""Direct tests of bonetumor.reporting.figures, .table2 and .summary: what they draw, compute and write."""

import json
import math
import subprocess
import sys

import matplotlib
import matplotlib.container
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from bonetumor.reporting import figures, summary, table2
from bonetumor.reporting.tables import write_table


# ------------------------------------------------------------------------------------------------ figures

def _metrics_long(value=0.8, low=0.7, high=0.9):
    rows = []
    for task in ("tumour_vs_normal", "benign_vs_malignant"):
        for i, metric in enumerate(("accuracy", "precision", "recall", "specificity", "f1")):
            rows.append({"task": task, "metric": metric, "value": value - 0.01 * i, "ci_low": low - 0.01 * i,
                         "ci_high": high - 0.01 * i})
    rows.append({"task": "detection", "metric": "AP50", "value": 0.5, "ci_low": math.nan, "ci_high": math.nan})
    return pd.DataFrame(rows)


def _history(epochs=4, with_val=True):
    e = np.arange(1, epochs + 1)
    frame = {"epoch": e, "loss_classifier": 1.0 / e, "loss_box_reg": 0.5 / e, "loss_mask": 0.7 / e,
             "loss_objectness": 0.2 / e, "loss_rpn_box_reg": 0.1 / e, "loss_total": 2.5 / e}
    if with_val:
        frame["val_mask_mse"] = 0.05 / e
    return pd.DataFrame(frame)


@pytest.mark.slow  # a fresh interpreter imports torch (about 15 s on 2 cores)
def test_importing_figures_leaves_the_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import bonetumor.reporting.figures; "
            "import matplotlib.pyplot; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_figure4_draws_three_panels_and_the_masks():
    image = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
    predicted = np.zeros((64, 48), bool)
    predicted[10:20, 10:20] = True
    truth = np.zeros((64, 48), bool)
    truth[12:22, 12:22] = True
    fig = figures.figure4(image, 1 - image, predicted, truth, "caption four")
    assert isinstance(fig, Figure) and plt.get_fignums() == []  # returned, not left open in pyplot
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["(a) input radiograph", "(b) preprocessed",
                                               "(c) predicted mask, ground truth outlined"]
    overlay = axes[2].images[1].get_array()
    assert overlay.shape == (64, 48, 4) and overlay[15, 15, 3] == pytest.approx(0.45) and overlay[0, 0, 3] == 0
    assert len(axes[2].collections) >= 1  # the ground-truth contour
    assert fig._suptitle.get_text() == "caption four"


def test_figure5_one_panel_per_case_with_boxes_and_labels():
    image = np.zeros((40, 40), np.float32)
    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:15] = True
    cases = [{"image": image, "truth": "benign", "title": "case A",
              "detections": [{"box": [5, 5, 15, 15], "label": "benign", "score": 0.91, "mask": mask}]},
             {"image": image, "truth": "malignant", "title": "case B", "detections": []}]
    fig = figures.figure5(cases, "caption five")
    assert [ax.get_title() for ax in fig.axes] == ["case A", "case B"]
    texts = [[t.get_text() for t in ax.texts] for ax in fig.axes]
    assert texts == [["benign 0.91"], ["no detection above threshold"]]
    box = fig.axes[0].patches[0]
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (5, 5, 10, 10)
    assert matplotlib.colors.to_hex(box.get_edgecolor()) == figures.CLASS_COLOURS["benign"]


@pytest.mark.parametrize("with_val", [True, False])
def test_figure6_plots_every_loss_term_and_the_validation_mse(with_val):
    fig = figures.figure6(_history(with_val=with_val), "caption six")
    left, right = fig.axes[:2]
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert labels == ["loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg",
                      "loss_total"]
    assert left.get_yscale() == "log"
    if with_val:
        assert right.get_ylabel() == "pixel MSE"
        np.testing.assert_allclose(right.lines[0].get_ydata(), 0.05 / np.arange(1, 5))
    else:
        assert [t.get_text() for t in right.texts] == ["no validation split"]


def test_figure7_bars_heights_error_bars_and_hatching():
    data = table2.figure7_rows(_metrics_long(), synthetic=True)
    fig = figures.figure7(data, "caption seven")
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 3 * 4  # three rows (paper + two tasks) x four metrics
    heights = [b.get_height() for b in bars]
    np.testing.assert_allclose(heights, data["value"].to_numpy(float))
    assert [b.get_hatch() for b in bars[:4]] == ["//"] * 4 and bars[4].get_hatch() is None
    assert [t.get_text() for t in ax.get_xticklabels()] == ["accuracy", "precision", "recall", "F1"]
    bar_groups = [c for c in ax.containers if isinstance(c, matplotlib.container.BarContainer)]
    assert len(bar_groups) == 3
    assert bar_groups[0].errorbar is None  # no interval for the reported row
    lows = data["value"] - data["ci_low"]
    for group, row in zip(bar_groups[1:], (1, 2)):
        segments = group.errorbar.lines[2][0].get_segments()
        np.testing.assert_allclose([s[0][1] for s in segments], data["ci_low"].iloc[4 * row:4 * row + 4])
        np.testing.assert_allclose([s[1][1] for s in segments], data["ci_high"].iloc[4 * row:4 * row + 4])
    assert lows.iloc[4:].gt(0).all()


def test_figure7_marks_a_missing_value():
    data = table2.figure7_rows(_metrics_long(), synthetic=False)
    data.loc[5, "value"] = np.nan
    data.loc[5, ["ci_low", "ci_high"]] = np.nan
    ax = figures.figure7(data, "c").axes[0]
    assert [t.get_text() for t in ax.texts] == ["n/a"]


def test_save_figure_writes_png_pdf_caption_reproducibly(tmp_path):
    data = table2.figure7_rows(_metrics_long(), synthetic=True)
    first = figures.save_figure(figures.figure7(data, "c"), tmp_path / "a", "fig", "the caption")
    second = figures.save_figure(figures.figure7(data, "c"), tmp_path / "b", "fig", "the caption")
    for key in ("png", "pdf", "caption"):
        assert first[key].read_bytes() == second[key].read_bytes(), key
    assert first["caption"].read_text() == "the caption\n"
    png = Image.open(first["png"])
    assert png.format == "PNG" and "Software" not in png.info
    pdf = first["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf and b"Producer" not in pdf


def test_save_figure_closes_a_pyplot_figure_but_keeps_ours_displayable(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    figures.save_figure(fig, tmp_path, "managed", "c")
    assert plt.get_fignums() == []
    ours = figures.figure6(_history(), "c")
    figures.save_figure(ours, tmp_path, "ours", "c")
    assert ours.canvas is not None and len(ours.axes) == 2


def test_data_examples_one_row_per_class(tmp_path):
    records = []
    for k, label in enumerate(["normal", "benign", "benign", "malignant"]):
        file = tmp_path / f"img{k}.png"
        Image.fromarray(np.full((30, 20), 60 * k, np.uint8)).save(file)
        lesions = [] if label == "normal" else [{"category": label, "polygons": [[2, 2, 10, 2, 10, 10, 2, 10]],
                                                 "box": [2, 2, 10, 10]}]
        records.append({"name": f"IMG{k}", "label": label, "subtype": None if label == "normal" else "x",
                        "file": str(file), "lesions": lesions})
    fig = figures.data_examples(records, "examples", per_class=2)
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in axes[:, 0]] == ["IMG0: normal", "IMG1: benign\nx", "IMG3: malignant\nx"]
    assert axes[1, 1].get_title() == "IMG2: benign\nx" and axes[0, 1].get_title() == ""
    rect = axes[2, 0].patches[-1]
    assert matplotlib.colors.to_hex(rect.get_edgecolor()) == matplotlib.colors.to_hex("red")
    assert len(axes[0, 0].patches) == 0


def test_preprocessing_example_panels_and_histograms():
    original = np.linspace(0, 0.5, 100, dtype=np.float32).reshape(10, 10)
    stages = {"(a) original": original, "middle": original * 1.5, "(b) final": original * 2}
    fig = figures.preprocessing_example(stages, "title")
    assert [ax.get_title() for ax in fig.axes[:3]] == list(stages)
    hist = fig.axes[3]
    counts = [sum(p.get_height() for p in container) for container in hist.containers]
    assert counts == [100, 100]
    assert [t.get_text() for t in hist.get_legend().get_texts()] == ["original (a)", "pre-processed (b)"]


# ------------------------------------------------------------------------------------------------- table2

def test_measured_rows_in_percent_with_intervals():
    rows = table2.measured_rows(_metrics_long(0.8, 0.7, 0.9), "tag")
    assert list(rows["task"]) == list(table2.TASKS.values())
    first = rows.iloc[0]
    assert first["accuracy"] == 80.0 and first["accuracy_ci"] == "[70.0, 90.0]"
    assert first["f1"] == pytest.approx(76.0) and first["f1_ci"] == "[66.0, 86.0]"  # f1 is the 5th metric
    assert first["source"] == "measured here: tag"


def test_measured_rows_skip_a_task_without_metrics():
    metrics = _metrics_long()
    rows = table2.measured_rows(metrics[metrics["task"] != "benign_vs_malignant"], "t")
    assert list(rows["task"]) == [table2.TASKS["tumour_vs_normal"]]


def test_table2_measured_first_then_every_paper_row_as_reported():
    table = table2.table2(_metrics_long(), "tag")
    paper = table2.paper_rows()
    assert len(table) == 2 + len(paper)
    assert table["source"].iloc[:2].str.startswith("measured here").all()
    reported = table.iloc[2:]
    assert (reported["source"] == "as reported (paper, Table 2)").all()
    assert reported["accuracy (%)"].tolist() == paper["accuracy"].tolist()
    assert {"traced to cited work", "what the cited work reports", "F1 95% CI"} <= set(table.columns)
    assert reported["accuracy 95% CI"].isna().all()


def test_figure7_rows_paper_first_then_measured():
    data = table2.figure7_rows(_metrics_long(0.8, 0.7, 0.9), synthetic=True)
    paper = table2.paper_rows().iloc[0]
    assert list(data.columns) == ["row", "metric", "value", "ci_low", "ci_high"]
    assert list(dict.fromkeys(data["row"])) == ["paper, Proposed (as reported)",
                                                "measured: tumour vs normal (per image) [synthetic]",
                                                "measured: benign vs malignant (per tumour image) [synthetic]"]
    assert data["value"].iloc[:4].tolist() == [paper[m] for m in table2.METRICS]
    assert data["ci_low"].iloc[:4].isna().all()
    measured = data.iloc[4:8].set_index("metric")
    assert measured.loc["accuracy", "value"] == pytest.approx(80) and measured.loc["F1", "ci_high"] == pytest.approx(86)
    assert not table2.figure7_rows(_metrics_long(), synthetic=False)["row"].str.contains("synthetic").any()


# ------------------------------------------------------------------------------------------------ summary

def test_readme_orders_sections_and_links_every_file(tmp_path):
    reports = tmp_path / "reports"
    write_table(pd.DataFrame({"a": [1]}), reports, "table2_comparison", "Table 2 caption")
    write_table(pd.DataFrame({"b": [2]}), reports, "zz_extra", "extra caption")
    write_table(pd.DataFrame({"c": [3]}), reports, "table1_vgg19_layers", "Table 1 caption")
    fig = figures.figure6(_history(), "c")
    figures.save_figure(fig, reports, "figure6_training", "Figure 6 caption")
    (reports / "provenance.json").write_text(json.dumps({
        "description": "profile smoke", "code": {"commit": "abc", "dirty": True}, "python": "3.12",
        "data": {"source": "phantom", "synthetic": True, "fingerprint": "0123456789abcdef0123"},
        "device": {"cpu": "a CPU"}, "packages": {"torch": "2"}, "total_seconds": 12,
        "notebooks": [{"name": "01_x", "seconds": 3.2}],
        "training": {"run": "smoke-phantom-x", "epochs_done": 3, "train_seconds": 40, "device": {"name": "cpu"},
                     "init": "random", "best": {"epoch": 2}}}))
    text = summary.write_readme(reports).read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Provenance", "## Table 1 — VGG-19 layers and parameters",
                        "## Table 2 — comparative analysis (measured here vs as reported)",
                        "## Figure 6 — training losses and validation mask MSE", "## zz_extra"]
    assert "- commit: `abc` (with uncommitted changes)" in text
    assert "fingerprint `0123456789abcdef`" in text and "(synthetic phantom)" in text
    assert "01_x 3 s; total 12 s" in text
    assert "3 epochs, 40 s on cpu, random initialisation, best epoch 2" in text
    assert "![Figure 6 — training losses and validation mask MSE](figures/figure6_training.png)" in text
    assert "*Figure 6 caption* [PDF](figures/figure6_training.pdf)" in text
    assert "[CSV](tables/table2_comparison.csv) · [LaTeX](tables/table2_comparison.tex)" in text
    assert "Table 2 caption" in text
    # a table written without LaTeX (bonetumor bench's) links only what exists
    (reports / "tables" / "zz_extra.tex").unlink()
    text = summary.write_readme(reports).read_text()
    assert "[CSV](tables/zz_extra.csv)\n" in text and "zz_extra.tex" not in text


def test_readme_without_provenance_or_results(tmp_path):
    text = summary.write_readme(tmp_path).read_text()
    assert text.startswith("# Results") and "## " not in text


def test_the_results_page_names_the_command_that_made_it(tmp_path):
    assert "Regenerated by `make paper`" in summary.write_readme(tmp_path).read_text()
    (tmp_path / "provenance.json").write_text(json.dumps({"profile": "ablations"}))
    assert "Regenerated by `make ablations`" in summary.write_readme(tmp_path).read_text()


def test_the_results_page_links_make_ablations_page_when_it_exists(tmp_path):
    assert "ablations/README.md" not in summary.write_readme(tmp_path).read_text()
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "README.md").write_text("# Results")
    assert "[ablations/README.md](ablations/README.md)" in summary.write_readme(tmp_path).read_text()


def test_the_results_page_carries_a_stalled_training_warning(tmp_path):
    import json

    from bonetumor.reporting.summary import write_readme

    (tmp_path / "provenance.json").write_text(json.dumps({"training": {
        "run": "r", "warning": "training stalled: validation box AP50 stayed at 0 for all 24 epochs",
        "epochs_done": 24, "train_seconds": 1.0, "init": "random", "best": {"epoch": 1}}}))
    page = write_readme(tmp_path).read_text()
    assert "**Warning — training stalled: validation box AP50 stayed at 0 for all 24 epochs.**" in page
    (tmp_path / "provenance.json").write_text(json.dumps({"training": {
        "run": "r", "warning": None, "epochs_done": 24, "train_seconds": 1.0, "init": "random", "best": {}}}))
    assert "Warning" not in write_readme(tmp_path).read_text()


def test_holdout_table_puts_each_split_beside_the_other():
    import math

    import pandas as pd

    from bonetumor.reporting.evaluation_tables import HOLDOUT_ROWS, holdout_table

    def long(value):
        return pd.DataFrame([{"task": t, "metric": m, "value": value, "ci_low": value - 0.1, "ci_high": value + 0.1}
                             for t, m in HOLDOUT_ROWS if (t, m) != ("detection", "AP50")])

    table = holdout_table({"grouped": (long(0.5), {"images": 10, "patients": 7}),
                           "held out": (long(0.25), {"images": 4, "patients": 3})}).set_index("metric")
    assert list(table.columns) == [f"{s} {p}" for s in ("grouped", "held out") for p in ("value", "ci_low", "ci_high")]
    assert table.loc["tumour_vs_normal auc", "grouped value"] == 0.5
    assert table.loc["tumour_vs_normal auc", "held out ci_high"] == 0.35
    assert math.isnan(table.loc["detection AP50", "held out value"])  # missing from the metrics: NaN, not 0
    assert table.loc["test images", "held out value"] == 4 and table.loc["test pseudo-patients", "grouped value"] == 7
