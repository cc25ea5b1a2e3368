"""Figures 4–7 of the paper, drawn from saved results only (never by retraining), and the data notebooks'
figures (examples per class, the pre-processing of Figure 4(b)). Each is written as PNG and PDF with
deterministic metadata; every caption names the data and the profile.

Computation lives elsewhere (``bonetumor.evaluation``, ``bonetumor.engine``, ``bonetumor.reporting.cases``);
these functions only draw. They never change matplotlib's backend: each returns a
:class:`matplotlib.figure.Figure` that pyplot does not manage, so a notebook shows it inline exactly once (as
its cell's last expression or with ``display``) and nothing is left open. A figure pyplot never saw does not
load the inline backend by itself: the notebooks say ``%matplotlib inline`` first. Figures 4–7 set the
seaborn theme (:func:`style`, global rcParams) when they are drawn; the data figures use matplotlib's defaults.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from bonetumor.io import atomic_path
from bonetumor.modeling.vgg_maskrcnn import AUXILIARY_LOSS_TERMS, LOSS_TERMS

CLASS_COLOURS = {"benign": "#1b9e77", "malignant": "#d95f02"}
#: Lesion colours of the data examples (notebook 01).
EXAMPLE_COLOURS = {"benign": "gold", "malignant": "red"}


def style() -> None:
    """The theme of Figures 4–7 (seaborn ``paper``, white grid) and deterministic SVG/PDF output."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    matplotlib.rcParams.update({"svg.hashsalt": "bonetumor", "pdf.compression": 6, "figure.dpi": 100})


def save_figure(fig: Figure, reports: Path, name: str, caption: str) -> dict[str, Path]:
    """``<reports>/figures/<name>.png`` and ``.pdf`` (no timestamps, no software tag: reruns are
    byte-stable), and the caption beside them as ``<name>.txt``. A figure that pyplot manages is closed
    afterwards (one from this module is not managed: it stays displayable)."""
    folder = Path(reports) / "figures"
    out = {}
    for ext, metadata in (("png", {"Software": None}),
                          ("pdf", {"Creator": None, "Producer": None, "CreationDate": None})):
        target = folder / f"{name}.{ext}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=metadata)
        out[ext] = target
    with atomic_path(folder / f"{name}.txt") as tmp:
        tmp.write_text(caption + "\n", encoding="utf-8")
    out["caption"] = folder / f"{name}.txt"
    _close_if_pyplot(fig)
    return out


def _close_if_pyplot(fig: Figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)  # does nothing for a figure pyplot does not manage


def _outline(ax, mask: np.ndarray, colour: str, **kw) -> None:
    if mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2, **kw)


def _show(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def data_examples(records: list[dict], title: str, per_class: int = 3) -> Figure:
    """Notebook 01: up to ``per_class`` images of each class (rows normal, benign, malignant), each lesion's
    outline filled and its box drawn (red malignant, yellow benign). ``records`` are resized ones (their
    ``file`` a grey image in [0, 1]); see :func:`bonetumor.reporting.data_card.example_records`."""
    fig = Figure(figsize=(3 * per_class, 9))
    axes = fig.subplots(3, per_class, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, label in enumerate(("normal", "benign", "malignant")):
        for col, rec in enumerate([r for r in records if r["label"] == label][:per_class]):
            ax = axes[row, col]
            ax.imshow(imread(rec["file"]), cmap="gray", vmin=0, vmax=1)
            for lesion in rec["lesions"]:
                _draw_lesion(ax, lesion, EXAMPLE_COLOURS[lesion["category"]])
            ax.set_title(f"{rec['name']}: {label}" + (f"\n{rec['subtype']}" if rec["subtype"] else ""), fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _draw_lesion(ax, lesion: dict, colour: str) -> None:
    for poly in lesion["polygons"]:
        ax.fill(poly[0::2], poly[1::2], color=colour, alpha=0.35, linewidth=0)
    x0, y0, x1, y1 = lesion["box"]
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.2))


def preprocessing_example(stages: dict[str, np.ndarray], title: str) -> Figure:
    """Notebook 02, Figure 4(b): each stage of the radiograph pre-processing side by side (``stages``: title →
    image in [0, 1], the original first and the final image last; see
    :func:`bonetumor.reporting.preprocessing.preprocessing_stages`) over the grey-level histograms of the
    original and the final image."""
    images = list(stages.values())
    original, processed = images[0], images[-1]
    fig = Figure(figsize=(12, 6.2))
    grid = fig.add_gridspec(2, len(stages), height_ratios=[3, 1.3])
    for k, (stage, img) in enumerate(stages.items()):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(stage, fontsize=10)
        ax.axis("off")
    hist = fig.add_subplot(grid[1, :])
    bins = np.linspace(0, 1, 65)
    hist.hist(original.ravel(), bins=bins, alpha=0.6, label="original (a)", color="tab:blue")
    hist.hist(processed.ravel(), bins=bins, alpha=0.6, label="pre-processed (b)", color="tab:orange")
    hist.set_xlabel("grey level")
    hist.set_ylabel("pixels")
    hist.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def figure4(image: np.ndarray, preprocessed: np.ndarray, predicted_mask: np.ndarray, truth_mask: np.ndarray,
            caption: str) -> Figure:
    """Figure 4: (a) input radiograph, (b) preprocessed, (c) predicted mask over the image with the ground
    truth outlined. Images are 2-D floats in [0, 1]; masks 2-D booleans."""
    style()
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 3)
    _show(axes[0], image, "(a) input radiograph")
    _show(axes[1], preprocessed, "(b) preprocessed")
    _show(axes[2], image, "(c) predicted mask, ground truth outlined")
    overlay = np.zeros((*predicted_mask.shape, 4))
    overlay[predicted_mask.astype(bool)] = (1.0, 0.2, 0.2, 0.45)
    axes[2].imshow(overlay)
    _outline(axes[2], truth_mask, "#ffd400")
    fig.suptitle(caption, fontsize=8, y=0.02, va="bottom", wrap=True)
    return fig


def figure5(cases: list[dict], caption: str) -> Figure:
    """Figure 5: classification examples. Each case: ``image`` (2-D float), ``truth`` (class name),
    ``detections`` (list of ``{"box", "label", "score", "mask"}``, best first), ``title``."""
    style()
    fig = Figure(figsize=(4.5 * len(cases), 4.8))
    axes = fig.subplots(1, len(cases), squeeze=False)
    for ax, case in zip(axes[0], cases):
        _show(ax, case["image"], case["title"])
        for det in case["detections"]:
            x0, y0, x1, y1 = det["box"]
            colour = CLASS_COLOURS.get(det["label"], "white")
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
            ax.text(x0, max(y0 - 3, 0), f"{det['label']} {det['score']:.2f}", color="white", fontsize=8,
                    va="bottom", bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
            if det.get("mask") is not None:
                _outline(ax, det["mask"], colour, linestyles="dashed")
        if not case["detections"]:
            ax.text(0.5, 0.05, "no detection above threshold", color="white", ha="center",
                    transform=ax.transAxes, fontsize=8)
    fig.suptitle(caption, fontsize=8, y=0.01, va="bottom", wrap=True)
    return fig


def figure6(history: pd.DataFrame, caption: str) -> Figure:
    """Figure 6: per-epoch training losses (each Mask R-CNN term and the total) and validation mask MSE."""
    style()
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    terms = [t for t in LOSS_TERMS + AUXILIARY_LOSS_TERMS if t in history]
    long = history.melt(id_vars="epoch", value_vars=terms + (["loss_total"] if "loss_total" in history else []),
                        var_name="term", value_name="value")
    sns.lineplot(data=long, x="epoch", y="value", hue="term", marker="o", ax=left)
    left.set(title="training losses", ylabel="loss (epoch mean)", yscale="log")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(fontsize=7)
    if "val_mask_mse" in history and history["val_mask_mse"].notna().any():
        sns.lineplot(data=history, x="epoch", y="val_mask_mse", marker="o", ax=right, color="#7570b3")
        right.set(title="validation mask MSE (paper Fig. 6)", ylabel="pixel MSE")
    else:
        right.text(0.5, 0.5, "no validation split", ha="center", transform=right.transAxes)
    fig.suptitle(caption, fontsize=8, y=-0.02, va="top", wrap=True)
    return fig


def figure7(table: pd.DataFrame, caption: str) -> Figure:
    """Figure 7: accuracy, precision, recall and F1 — the paper's "Proposed" row as reported beside the rows
    measured here, with 95 % bootstrap intervals as error bars. ``table`` is long: ``row, metric, value,
    ci_low, ci_high`` in percent (``ci_*`` NaN for reported numbers)."""
    style()
    rows = list(dict.fromkeys(table["row"]))
    metrics = list(dict.fromkeys(table["metric"]))
    fig = Figure(figsize=(9, 4.2))
    ax = fig.subplots()
    width = 0.8 / len(rows)
    palette = sns.color_palette("colorblind", len(rows))
    x = np.arange(len(metrics))
    for i, row in enumerate(rows):
        part = table[table["row"] == row].set_index("metric").reindex(metrics)
        err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]])
        has_ci = np.isfinite(err).all()
        hatch = "//" if "as reported" in row else None
        offset = x + (i - (len(rows) - 1) / 2) * width
        ax.bar(offset, part["value"], width, label=row, color=palette[i],
               hatch=hatch, edgecolor="black", linewidth=0.5, yerr=err if has_ci else None, capsize=3)
        for xpos, value in zip(offset, part["value"]):
            if not np.isfinite(value):  # e.g. precision with no positive prediction
                ax.text(xpos, 1, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, metrics)
    ax.set(ylabel="%", ylim=(0, 105))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(caption, fontsize=8, y=-0.02, va="top", wrap=True)
    return fig
