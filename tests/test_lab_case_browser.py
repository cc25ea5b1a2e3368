"""The case browser of notebook 06: outcomes per image, filters and metrics at a threshold (hand-made records
and predictions), and the widget stepping through them without a frontend."""

import base64

import numpy as np
import pytest
from matplotlib.patches import Polygon, Rectangle

from bonetumor.evaluation import benign_vs_malignant, encode_mask, image_table, tumour_vs_normal
from bonetumor.reporting import case_browser as cb

SIZE = 64


def record(image_id, label, subtype=None, lesion=False):
    lesions = [{"category": label, "polygons": [[10, 10, 30, 10, 30, 30, 10, 30]], "box": [10, 10, 30, 30]}] \
        if lesion else []
    return {"image_id": image_id, "name": f"IMG{image_id:03d}.jpeg", "label": label, "subtype": subtype,
            "patient": f"p{image_id}", "width": SIZE, "height": SIZE, "lesions": lesions}


def prediction(image_id, detections, frame=SIZE):
    masks, boxes = [], []
    for _, _, box in detections:
        mask = np.zeros((frame, frame), bool)
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = True
        masks.append(encode_mask(mask))
        boxes.append([float(v) for v in box])
    return {"image_id": image_id, "height": frame, "width": frame, "boxes": boxes,
            "labels": [label for label, _, _ in detections], "scores": [score for _, score, _ in detections],
            "masks": masks}


BENIGN, MALIGNANT = 1, 2
RECORDS = [record(1, "malignant", "osteosarcoma", lesion=True), record(2, "benign", "osteochondroma", lesion=True),
           record(3, "normal"), record(4, "normal"), record(5, "benign", "giant cell tumor", lesion=True)]
PREDICTIONS = [
    prediction(1, [(MALIGNANT, 0.9, (11, 11, 29, 29)), (BENIGN, 0.2, (40, 40, 50, 50))]),
    prediction(2, [(BENIGN, 0.3, (10, 12, 30, 28))]),
    prediction(3, [(MALIGNANT, 0.6, (5, 5, 15, 15))]),
    prediction(4, []),
    prediction(5, [(MALIGNANT, 0.8, (10, 10, 30, 30))]),
]


def test_outcome_of_each_image():
    assert [cb.image_outcome(t, p) for t, p in [(True, True), (False, True), (True, False), (False, False)]] == \
        ["TP", "FP", "FN", "TN"]
    table = cb.case_table(PREDICTIONS, RECORDS, 0.5)
    assert table["outcome"].tolist() == ["TP", "FN", "FP", "TN", "TP"]
    assert table["pred_class"].tolist() == ["malignant", "normal", "malignant", "normal", "malignant"]
    assert table["class_correct"].tolist() == [True, False, False, True, False]
    assert table["name"].tolist() == [r["name"] for r in RECORDS]
    lower = cb.case_table(PREDICTIONS, RECORDS, 0.25)  # the benign image's detection is kept now
    assert lower["outcome"].tolist() == ["TP", "TP", "FP", "TN", "TP"]
    assert cb.case_table(PREDICTIONS, RECORDS, 0.95)["outcome"].tolist() == ["FN", "FN", "TN", "TN", "FN"]


def test_filters():
    table = cb.case_table(PREDICTIONS, RECORDS, 0.5)
    assert cb.filter_cases(table) == [1, 2, 3, 4, 5]
    assert cb.filter_cases(table, outcome="TP") == [1, 5]
    assert cb.filter_cases(table, outcome="FP") == [3]
    assert cb.filter_cases(table, truth="benign") == [2, 5]
    assert cb.filter_cases(table, truth="benign", outcome="TP") == [5]
    assert cb.filter_cases(table, subtype="osteochondroma") == [2]
    assert cb.filter_cases(table, outcome="TN", truth="malignant") == []
    assert cb.subtypes(RECORDS) == ["giant cell tumor", "osteochondroma", "osteosarcoma"]


def test_metrics_at_a_threshold_are_the_evaluations():
    for threshold in (0.25, 0.5, 0.95):
        table = cb.case_table(PREDICTIONS, RECORDS, threshold)
        metrics = cb.metrics_at(table)
        reference = image_table(PREDICTIONS, RECORDS, threshold)
        assert metrics["tumour_vs_normal"] == pytest.approx(tumour_vs_normal(reference), nan_ok=True)
        assert metrics["benign_vs_malignant"] == pytest.approx(benign_vs_malignant(reference), nan_ok=True)
    metrics = cb.metrics_at(cb.case_table(PREDICTIONS, RECORDS, 0.5))
    assert metrics["counts"] == {"TP": 2, "FP": 1, "FN": 1, "TN": 1}
    assert metrics["tumour_vs_normal"]["recall"] == pytest.approx(2 / 3)
    assert metrics["tumour_vs_normal"]["specificity"] == pytest.approx(1 / 2)
    text = cb.metrics_html(metrics, 0.5, 5)
    assert "5 test images at score threshold 0.50" in text and "TP 2, FP 1, FN 1, TN 1" in text
    assert "66.7%" in text


def test_case_figure_draws_truth_kept_and_faint_detections():
    table = cb.case_table(PREDICTIONS, RECORDS, 0.5).set_index("image_id")
    fig = cb.case_figure(np.zeros((128, 128)), RECORDS[0], PREDICTIONS[0], 0.5, table.loc[1].to_dict())
    ax = fig.axes[0]
    assert ax.images[0].get_extent() == [0, SIZE, SIZE, 0]  # the image in the predictions' frame
    truth = [p for p in ax.patches if isinstance(p, Polygon) and not isinstance(p, Rectangle)]
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(truth) == 1 and len(boxes) == 2  # one kept, one below the threshold (dotted)
    assert [b.get_linestyle() for b in boxes] == ["solid", ":"]
    assert "malignant 0.90" in [t.get_text() for t in ax.texts]
    assert "IMG001.jpeg: truth malignant (osteosarcoma); predicted malignant — true positive" == ax.get_title()
    assert cb.figure_png(fig).startswith(b"\x89PNG")


def test_browser_steps_filters_and_follows_the_threshold():
    loaded = []

    def load_image(rec):
        loaded.append(rec["image_id"])
        return np.full((SIZE, SIZE), 0.5)

    browser = cb.CaseBrowser(RECORDS, PREDICTIONS, load_image, score_threshold=0.5)
    assert browser.cases == [1, 2, 3, 4, 5] and browser.current == 1
    browser.step(1)
    assert browser.current == 2
    browser.step(-2)
    assert browser.current == 5  # wraps around
    browser.set_filter(outcome="TP")
    assert browser.cases == [1, 5] and browser.current == 5  # still passes the filter: stays
    browser.set_threshold(0.85)  # image 5's detection (0.8) is no longer kept: it becomes FN
    assert browser.cases == [1] and browser.current == 1
    assert browser.metrics()["counts"] == {"TP": 1, "FP": 0, "FN": 2, "TN": 2}
    browser.set_filter(outcome="FP")
    assert browser.cases == [] and browser.current is None
    assert browser.figure().texts[0].get_text() == "no test image passes these filters"
    with pytest.raises(ValueError, match="unknown filter"):
        browser.set_filter(centre="A")
    assert loaded == []  # no widget yet: nothing drawn, no image read


def test_widget_and_static_view_without_a_frontend():
    browser = cb.CaseBrowser(RECORDS, PREDICTIONS, lambda rec: np.zeros((SIZE, SIZE)), score_threshold=0.5)
    bundle = browser._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")  # what a static viewer shows
    assert "5 test images" in bundle["text/plain"]
    parts = browser._widgets
    first = parts["image"].value
    parts["slider"].value = 0.25  # as the reader moves the slider
    assert "score threshold 0.25" in parts["metrics"].value and "TP 3, FP 1, FN 0, TN 1" in parts["metrics"].value
    parts["outcome"].value = "FP"
    assert browser.cases == [3] and parts["position"].value.startswith("case 1 of 1")
    assert parts["image"].value != first
    parts["subtype"].value = "osteosarcoma"
    assert browser.cases == [] and parts["position"].value.startswith("case 0 of 0")
