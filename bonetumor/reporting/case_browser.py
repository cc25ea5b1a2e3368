"""An interactive browser of the test cases (notebook 06): step through the radiographs with the ground truth
and the predictions overlaid, filtered by image-level outcome, class and subtype, with the score threshold as
a slider that updates the image-level metrics live. Nothing is written to disk, so it works on BTXRD too
(whose licence forbids publishing derivatives of its images).

The pure parts are plain functions: :func:`case_table` (each image's outcome at a threshold, from
:func:`bonetumor.evaluation.image_table`, so the rules are those of every image-level metric),
:func:`filter_cases`, :func:`metrics_at` and :func:`case_figure` (matplotlib's object-oriented API, no
pyplot). :class:`CaseBrowser` wires them into ipywidgets. Displayed, it offers both the live widget and a
PNG of its first view: JupyterLab shows the widget, a static viewer (GitHub, an executed copy of
``make paper``, which drops widget state) shows the picture.

Outcomes are those of tumour vs normal at image level: **TP** a tumour image with a kept detection, **FN** a
tumour image without one, **FP** a normal image with one, **TN** a normal image without one.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

from bonetumor import ID_TO_LABEL
from bonetumor import IMAGE_LABELS as CLASSES
from bonetumor.data.coco import record_in_frame
from bonetumor.evaluation import benign_vs_malignant, decode_mask, image_table, tumour_vs_normal

ALL = "all"
OUTCOMES = {"TP": "true positive", "FP": "false positive", "FN": "false negative", "TN": "true negative"}
CLASS_COLOURS = {"benign": "#1b9e77", "malignant": "#d95f02"}
TRUTH_COLOUR = "#ffd400"
#: Detections below the threshold drawn (faint, dotted) so the slider's effect can be seen; at most this many.
SHOWN_BELOW_THRESHOLD = 5


def image_outcome(truth_tumour: bool, pred_tumour: bool) -> str:
    """``TP``, ``FP``, ``FN`` or ``TN`` of tumour (positive) vs normal for one image."""
    return ("T" if truth_tumour == pred_tumour else "F") + ("P" if pred_tumour else "N")


def case_table(predictions: Sequence[Mapping], records: Sequence[Mapping], score_threshold: float) -> pd.DataFrame:
    """:func:`bonetumor.evaluation.image_table` at ``score_threshold`` (one row per record, in record order)
    with ``outcome`` (see :func:`image_outcome`), ``class_correct`` (predicted class = truth, ``normal``
    included) and the record's ``name``."""
    table = image_table(predictions, records, score_threshold=score_threshold)
    table["outcome"] = [image_outcome(t, p) for t, p in zip(table["truth_tumour"], table["pred_tumour"])]
    table["class_correct"] = table["pred_class"] == table["truth"]
    names = {int(r["image_id"]): str(r.get("name", r["image_id"])) for r in records}
    table["name"] = table["image_id"].map(names)
    return table


def filter_cases(table: pd.DataFrame, outcome: str = ALL, truth: str = ALL, subtype: str = ALL) -> list[int]:
    """Image ids of the rows of a :func:`case_table` with this ``outcome`` (``TP``/``FP``/``FN``/``TN``),
    ground-truth class and subtype; ``"all"`` does not filter. Table order."""
    keep = np.ones(len(table), bool)
    if outcome != ALL:
        keep &= (table["outcome"] == outcome).to_numpy()
    if truth != ALL:
        keep &= (table["truth"] == truth).to_numpy()
    if subtype != ALL:
        keep &= (table["subtype"] == subtype).to_numpy()
    return [int(i) for i in table.loc[keep, "image_id"]]


def subtypes(records: Sequence[Mapping]) -> list[str]:
    """The subtypes among ``records``, sorted (records without one are left out)."""
    return sorted({str(r["subtype"]) for r in records if r.get("subtype")})


def metrics_at(table: pd.DataFrame) -> dict:
    """Image-level metrics of a :func:`case_table`: ``tumour_vs_normal`` and ``benign_vs_malignant`` (the
    evaluation's own functions) and ``counts`` of each outcome."""
    counts = table["outcome"].value_counts()
    return {"tumour_vs_normal": tumour_vs_normal(table), "benign_vs_malignant": benign_vs_malignant(table),
            "counts": {key: int(counts.get(key, 0)) for key in OUTCOMES}}


def _percent(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def metrics_html(metrics: Mapping, score_threshold: float, n_images: int) -> str:
    """A small HTML table of :func:`metrics_at` for the browser."""
    names = ("accuracy", "precision", "recall", "specificity", "f1", "auc")
    rows = "".join(
        f"<tr><td>{task}</td>" + "".join(f"<td>{_percent(metrics[key].get(n))}</td>" for n in names) + "</tr>"
        for task, key in (("tumour vs normal", "tumour_vs_normal"), ("malignant vs benign", "benign_vs_malignant")))
    counts = ", ".join(f"{key} {value}" for key, value in metrics["counts"].items())
    return (f"<b>{n_images} test images at score threshold {score_threshold:.2f}</b>: {counts}"
            "<table><tr><th></th>" + "".join(f"<th>{n}</th>" for n in names) + f"</tr>{rows}</table>")


def draw_case(ax, image: np.ndarray, record: Mapping, prediction: Mapping, score_threshold: float,
              row: Mapping | None = None) -> None:
    """Draw one case on ``ax``: the radiograph in the frame the model saw, ground-truth lesions outlined
    (yellow), kept detections (box, class, score, mask outline; coloured by class) and up to
    :data:`SHOWN_BELOW_THRESHOLD` detections below the threshold (grey, dotted)."""
    width, height = int(prediction.get("width", record["width"])), int(prediction.get("height", record["height"]))
    record = record_in_frame(record, width, height)
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, extent=(0, width, height, 0), interpolation="antialiased")
    for lesion in record.get("lesions", []):
        for polygon in lesion.get("polygons", []):
            ax.add_patch(Polygon(np.reshape(polygon, (-1, 2)), closed=True, fill=False, edgecolor=TRUTH_COLOUR,
                                 linewidth=1.5))
    order = np.argsort(prediction["scores"])[::-1]
    below = 0
    for i in (int(j) for j in order):
        score, label = float(prediction["scores"][i]), ID_TO_LABEL[int(prediction["labels"][i])]
        x0, y0, x1, y1 = prediction["boxes"][i]
        if score >= score_threshold:
            colour = CLASS_COLOURS.get(label, "white")
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
            ax.text(x0, max(y0 - 3, 0), f"{label} {score:.2f}", color="white", fontsize=8, va="bottom",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
            mask = decode_mask(prediction["masks"][i]) if prediction.get("masks") else None
            if mask is not None and mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.0, linestyles="dashed")
        elif below < SHOWN_BELOW_THRESHOLD:
            below += 1
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="0.7", linewidth=0.8,
                                   linestyle=":"))
            ax.text(x0, y1 + 2, f"{score:.2f}", color="0.8", fontsize=7, va="top")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    if row is not None:
        ax.set_title(f"{row['name']}: truth {row['truth']}" + (f" ({row['subtype']})" if row.get("subtype") else "")
                     + f"; predicted {row['pred_class']} — {OUTCOMES[row['outcome']]}", fontsize=9)


def case_figure(image: np.ndarray, record: Mapping, prediction: Mapping, score_threshold: float,
                row: Mapping | None = None, size: float = 6.0) -> Figure:
    """A figure (not managed by pyplot: nothing to close) of :func:`draw_case`."""
    fig = Figure(figsize=(size, size), layout="constrained")
    draw_case(fig.add_subplot(), image, record, prediction, score_threshold, row)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


class CaseBrowser:
    """The browser: ``CaseBrowser(records, predictions, load_image, score_threshold)`` as a cell's last
    expression (or ``display(browser)``). ``records``: the test split's records; ``predictions``: their
    saved predictions (``bonetumor.evaluation.load_predictions``); ``load_image(record)``: the radiograph as
    a 2-D float array in [0, 1]; ``score_threshold``: the slider's starting value (the evaluation's)."""

    def __init__(self, records: Sequence[Mapping], predictions: Sequence[Mapping],
                 load_image: Callable[[Mapping], np.ndarray], score_threshold: float = 0.5):
        self.records = {int(r["image_id"]): r for r in records}
        self.predictions = {int(p["image_id"]): p for p in predictions}
        self._record_list = list(records)
        self._prediction_list = list(predictions)
        self.load_image = load_image
        self._images: dict[int, np.ndarray] = {}
        self.threshold = float(score_threshold)
        self.table = case_table(self._prediction_list, self._record_list, self.threshold)
        self.filters = {"outcome": ALL, "truth": ALL, "subtype": ALL}
        self.cases = filter_cases(self.table, **self.filters)
        self.position = 0
        self._widgets = None

    # ---- state (no widgets needed) ----------------------------------------------------------------------

    @property
    def current(self) -> int | None:
        """The image id shown, ``None`` when no case passes the filters."""
        return self.cases[self.position] if self.cases else None

    def metrics(self) -> dict:
        return metrics_at(self.table)

    def set_threshold(self, value: float) -> None:
        """New score threshold: outcomes, metrics and filtered cases recomputed; the image shown stays when
        it still passes the filters."""
        self.threshold = float(value)
        self.table = case_table(self._prediction_list, self._record_list, self.threshold)
        self._refilter()

    def set_filter(self, **filters: str) -> None:
        """``outcome``, ``truth`` and/or ``subtype`` (``"all"`` for no filter)."""
        unknown = set(filters) - set(self.filters)
        if unknown:
            raise ValueError(f"unknown filter(s) {sorted(unknown)}; filters: {sorted(self.filters)}")
        self.filters.update(filters)
        self._refilter()

    def step(self, delta: int) -> None:
        """Move ``delta`` cases forward (negative: back), wrapping around."""
        if self.cases:
            self.position = (self.position + delta) % len(self.cases)
        self._update()

    def _refilter(self) -> None:
        shown = self.current
        self.cases = filter_cases(self.table, **self.filters)
        self.position = self.cases.index(shown) if shown in self.cases else 0
        self._update()

    def figure(self) -> Figure:
        """The current case as a figure (a note in place of the image when no case passes the filters)."""
        if self.current is None:
            fig = Figure(figsize=(6.0, 1.0))
            fig.text(0.5, 0.5, "no test image passes these filters", ha="center", va="center")
            return fig
        record, prediction = self.records[self.current], self.predictions[self.current]
        row = self.table.set_index("image_id").loc[self.current].to_dict() | {"image_id": self.current}
        return case_figure(self._image(record), record, prediction, self.threshold, row)

    def _image(self, record: Mapping) -> np.ndarray:
        key = int(record["image_id"])
        if key not in self._images:
            if len(self._images) >= 16:  # a few radiographs in memory, not the whole split
                self._images.pop(next(iter(self._images)))
            self._images[key] = np.asarray(self.load_image(record))
        return self._images[key]

    # ---- widgets --------------------------------------------------------------------------------------------

    @property
    def widget(self):
        """The ipywidgets box (built on first use)."""
        if self._widgets is None:
            self._widgets = self._build()
            self._update()
        return self._widgets["box"]

    def _build(self) -> dict:
        import ipywidgets as w

        def dropdown(description, options, key):
            box = w.Dropdown(options=options, value=ALL, description=description,
                             layout=w.Layout(width="220px"), style={"description_width": "60px"})
            box.observe(lambda change: self.set_filter(**{key: change["new"]}), names="value")
            return box

        outcome = dropdown("outcome", [(ALL, ALL)] + [(f"{k} ({v})", k) for k, v in OUTCOMES.items()], "outcome")
        truth = dropdown("truth", [ALL, *CLASSES], "truth")
        subtype = dropdown("subtype", [ALL, *subtypes(self._record_list)], "subtype")
        slider = w.FloatSlider(value=self.threshold, min=0.0, max=1.0, step=0.01, continuous_update=False,
                               description="score ≥", readout_format=".2f", layout=w.Layout(width="420px"))
        slider.observe(lambda change: self.set_threshold(change["new"]), names="value")
        previous, following = w.Button(description="◀ previous"), w.Button(description="next ▶")
        previous.on_click(lambda _: self.step(-1))
        following.on_click(lambda _: self.step(1))
        parts = {"outcome": outcome, "truth": truth, "subtype": subtype, "slider": slider, "position": w.Label(),
                 "metrics": w.HTML(), "image": w.Image(format="png", layout=w.Layout(max_width="640px"))}
        parts["box"] = w.VBox([w.HBox([outcome, truth, subtype]), slider, parts["metrics"],
                               w.HBox([previous, following, parts["position"]]), parts["image"]])
        return parts

    def _update(self) -> None:
        if self._widgets is None:
            return
        parts = self._widgets
        parts["metrics"].value = metrics_html(self.metrics(), self.threshold, len(self.table))
        current = "" if self.current is None else html.escape(str(self.records[self.current].get("name", "")))
        parts["position"].value = f"case {self.position + 1 if self.cases else 0} of {len(self.cases)} {current}"
        parts["image"].value = figure_png(self.figure())

    def _repr_mimebundle_(self, include=None, exclude=None):
        """The live widget for JupyterLab, plus a PNG of the current view for viewers without widgets."""
        bundle = dict(self.widget._repr_mimebundle_() or {})
        bundle["image/png"] = base64.b64encode(self._widgets["image"].value).decode("ascii")
        bundle["text/plain"] = (f"Case browser of {len(self.table)} test images (interactive in JupyterLab); "
                                f"shown: case {self.position + 1} of {len(self.cases)} at score threshold "
                                f"{self.threshold:.2f}")
        return bundle
