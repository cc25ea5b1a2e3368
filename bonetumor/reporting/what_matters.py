"""Notebook 07's tables and figure: every method (the detector and the re-measured comparators) on the same
test split with the same metrics, the paired difference detector − best classifier, the ablations as
differences from their reference run, and a forest plot of all of it with the paper's as-reported numbers
marked as such."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from bonetumor.evaluation.bootstrap import paired_difference, unpaired_difference
from bonetumor.evaluation.classification import benign_vs_malignant, three_class, tumour_vs_normal
from bonetumor.reporting.figures import style

#: ``(task, metric)`` compared for every method: the paper's four per binary task, then the three-class ones.
COMPARED = tuple((task, m) for task in ("tumour_vs_normal", "benign_vs_malignant")
                 for m in ("accuracy", "precision", "recall", "f1")) + \
    (("three_class", "balanced_accuracy"), ("three_class", "macro_auc"), ("three_class", "malignant_recall"))
#: The forest plot's panels.
FOREST = (("tumour_vs_normal", "accuracy"), ("benign_vs_malignant", "accuracy"), ("three_class", "macro_auc"),
          ("three_class", "malignant_recall"))
#: The paper's Table 2 "Proposed" row, as reported (percent), for the accuracy panels of the forest plot.
AS_REPORTED_LABEL = "paper, Proposed (as reported; data not available)"


def headline_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The :data:`COMPARED` metrics of a per-image table (keys ``"<task> <metric>"``), for paired bootstraps."""
    parts = {"tumour_vs_normal": tumour_vs_normal(table), "benign_vs_malignant": benign_vs_malignant(table),
             "three_class": three_class(table)}
    return {f"{task} {metric}": float(parts[task][metric]) for task, metric in COMPARED}


def methods_table(methods: Mapping[str, tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """One row per method and compared metric: ``method, how, task, metric, value, ci_low, ci_high``.
    ``methods``: ``{name: (long metrics table, how it was trained — init, schedule, input size)}``."""
    rows = []
    for name, (metrics, how) in methods.items():
        indexed = metrics.set_index(["task", "metric"])
        for task, metric in COMPARED:
            found = indexed.loc[(task, metric)] if (task, metric) in indexed.index else None
            values = (found["value"], found["ci_low"], found["ci_high"]) if found is not None else (np.nan,) * 3
            rows.append({"method": name, "how": how, "task": task, "metric": metric,
                         **dict(zip(("value", "ci_low", "ci_high"), values))})
    return pd.DataFrame(rows)


def difference_table(name: str, table_a: pd.DataFrame, table_b: pd.DataFrame, paired: bool, n_boot: int,
                     seed: int) -> pd.DataFrame:
    """``a − b`` on every compared metric with a 95 % pseudo-patient bootstrap interval — paired when both
    were scored on the same images (:func:`paired_difference`), else independent (:func:`unpaired_difference`)."""
    diff = (paired_difference if paired else unpaired_difference)(table_a, table_b, headline_metrics, n_boot, seed)
    rows = []
    for key, d in diff.items():
        task, metric = key.split(" ")
        rows.append({"comparison": name, "task": task, "metric": metric, "difference": d["value"],
                     "ci_low": d["ci_low"], "ci_high": d["ci_high"], "paired": paired,
                     "interval excludes 0": bool(d["ci_low"] > 0 or d["ci_high"] < 0)})
    return pd.DataFrame(rows)


def best_classifier(methods: pd.DataFrame, detector: str) -> str | None:
    """The comparator with the highest three-class macro AUC (validation chose each one's epoch; this only
    picks which one to set against the detector, and says so)."""
    auc = methods[(methods["task"] == "three_class") & (methods["metric"] == "macro_auc")
                  & (methods["method"] != detector)].dropna(subset=["value"])
    return None if auc.empty else str(auc.sort_values("value", ascending=False)["method"].iloc[0])


def forest_plot(rows: pd.DataFrame, as_reported: Mapping[str, float], caption: str) -> Figure:
    """One panel per :data:`FOREST` metric, one line per method or ablation (``rows``: ``label, task, metric,
    value, ci_low, ci_high``, fractions), the 95 % interval as a bar. ``as_reported``: the paper's figure for
    a panel (``"<task> <metric>"`` → fraction), drawn as a hollow diamond on its own line."""
    style()
    labels = list(dict.fromkeys(rows["label"]))
    lines = labels + ([AS_REPORTED_LABEL] if as_reported else [])
    fig = Figure(figsize=(11, 0.45 * len(lines) + 1.6))
    axes = fig.subplots(1, len(FOREST), sharey=True)
    colours = sns.color_palette("colorblind", len(labels))
    for ax, (task, metric) in zip(np.atleast_1d(axes), FOREST):
        part = rows[(rows["task"] == task) & (rows["metric"] == metric)].set_index("label")
        for y, label in enumerate(labels):
            if label in part.index and np.isfinite(part.loc[label, "value"]):
                r = part.loc[label]
                ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=colours[y], lw=2)
                ax.plot(r["value"], y, "o", color=colours[y])
            else:
                ax.text(0.5, y, "n/a", ha="center", va="center", fontsize=7)
        reported = as_reported.get(f"{task} {metric}")
        if reported is not None:
            ax.plot(reported, len(labels), "D", mfc="none", color="black")
        ax.set(xlim=(0, 1), title=f"{task.replace('_', ' ')}\n{metric.replace('_', ' ')}")
        ax.axvline(0.5, color="grey", lw=0.5, ls=":")
    first = np.atleast_1d(axes)[0]
    first.set_yticks(range(len(lines)), lines, fontsize=7)
    first.invert_yaxis()
    fig.suptitle(caption, fontsize=8, y=-0.02, va="top", wrap=True)
    return fig
