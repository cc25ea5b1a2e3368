"""Table 2 of the paper, regenerated honestly: the paper's rows *as reported* (with whether each figure could
be traced to the cited work, ``shared/DATASETS.md`` section 3) beside the rows *measured here*; and the same
comparison in the long form Figure 7 draws."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from bonetumor import paths

PAPER_TABLE2 = paths.RESOURCES / "table2_paper.csv"
METRICS = ("accuracy", "precision", "recall", "f1")
TASKS = {"tumour_vs_normal": "tumour vs normal (per image)",
         "benign_vs_malignant": "benign vs malignant (per tumour image)"}
#: Figure 7's name for each metric.
METRIC_LABELS = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1"}


def paper_rows() -> pd.DataFrame:
    """The paper's Table 2 as printed (percent), with the traceability columns."""
    return pd.read_csv(PAPER_TABLE2)


DETECTOR = "VGG-19 Mask R-CNN (this project)"


def measured_rows(metrics: pd.DataFrame, tag: str, method: str = DETECTOR, source: str = "measured here") -> pd.DataFrame:
    """Rows measured here from a long metrics table (``task, metric, value, ci_low, ci_high``; fractions),
    one per classification task, as "value [low, high]" percent strings plus numeric columns."""
    rows = []
    for task, label in TASKS.items():
        part = _task_metrics(metrics, task)
        if part.empty:
            continue
        row = {"method": method, "task": label, "source": f"{source}: {tag}"}
        for metric in METRICS:
            value, low, high = _percent(part, metric)
            row[metric] = round(value, 2)
            row[f"{metric}_ci"] = f"[{low:.1f}, {high:.1f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _task_metrics(metrics: pd.DataFrame, task: str) -> pd.DataFrame:
    """The rows of one task's four Table 2 metrics, indexed by metric."""
    return metrics[(metrics["task"] == task) & metrics["metric"].isin(METRICS)].set_index("metric")


def _percent(part: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """Value and 95 % interval of one metric, in percent."""
    return tuple(100 * part.loc[metric, c] for c in ("value", "ci_low", "ci_high"))


def figure7_rows(metrics: pd.DataFrame, synthetic: bool) -> pd.DataFrame:
    """Figure 7's comparison in long form (``row, metric, value, ci_low, ci_high``, percent): the paper's
    "Proposed" row as reported (no interval), then the rows measured here, one per classification task
    (marked ``[synthetic]`` on the phantom)."""
    paper = paper_rows().iloc[0]
    rows = [{"row": "paper, Proposed (as reported)", "metric": METRIC_LABELS[m], "value": paper[m],
             "ci_low": np.nan, "ci_high": np.nan} for m in METRICS]
    for task, name in TASKS.items():
        part = _task_metrics(metrics, task)
        for metric in METRICS:
            rows.append({"row": f"measured: {name}" + (" [synthetic]" if synthetic else ""),
                         "metric": METRIC_LABELS[metric], **dict(zip(("value", "ci_low", "ci_high"),
                                                                      _percent(part, metric)))})
    return pd.DataFrame(rows)


def table2(metrics: pd.DataFrame, tag: str, comparators: Mapping[str, tuple[pd.DataFrame, str]] | None = None
           ) -> pd.DataFrame:
    """The full comparison: the detector's measured rows first, then the comparators re-measured on the same
    split (``{method: (long metrics table, tag)}``, marked "measured here, same split"), then the paper's
    rows marked "as reported"."""
    paper = paper_rows()
    paper = paper.assign(method=paper["method"] + " " + paper["reference"].where(paper["reference"] != "this paper", ""),
                         task="as reported in the paper (task and data not stated per row)",
                         source="as reported (paper, Table 2)")
    paper["method"] = paper["method"].str.strip()
    measured = pd.concat([measured_rows(metrics, tag)] + [
        measured_rows(m, t, method=name, source="measured here, same split") for name, (m, t) in
        (comparators or {}).items()], ignore_index=True)
    columns = ["method", "task", "source", *METRICS, *(f"{m}_ci" for m in METRICS), "traced", "cited_work_reports"]
    table = pd.concat([measured, paper], ignore_index=True).reindex(columns=columns)
    return table.rename(columns={"accuracy": "accuracy (%)", "precision": "precision (%)", "recall": "recall (%)",
                                 "f1": "F1 (%)", "accuracy_ci": "accuracy 95% CI", "precision_ci": "precision 95% CI",
                                 "recall_ci": "recall 95% CI", "f1_ci": "F1 95% CI",
                                 "traced": "traced to cited work", "cited_work_reports": "what the cited work reports"})
