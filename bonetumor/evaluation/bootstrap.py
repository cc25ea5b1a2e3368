"""95 % percentile bootstrap confidence intervals that resample pseudo-patients, so that correlated images
of one patient do not narrow the interval."""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import pandas as pd


def bootstrap_ci(table: pd.DataFrame, metric_fn: Callable[[pd.DataFrame], Mapping[str, float]], n: int = 1000,
                 seed: int = 0, level: float = 0.95, group: str = "patient", return_samples: bool = False) -> dict:
    """Percentile bootstrap confidence intervals of every metric ``metric_fn(table)`` returns, resampling
    **groups** (pseudo-patients, column ``group``) with replacement — all images of a drawn patient enter the
    resample together, as often as the patient is drawn — so that correlated images of one patient do not
    narrow the interval. ``n`` resamples from ``numpy.random.default_rng(seed)``.

    A resample where a metric is undefined (NaN, e.g. no malignant image drawn) is skipped for that metric.
    Returns ``{metric: {"value", "ci_low", "ci_high", "n_boot", "n_skipped"}}`` (``ci_*`` NaN when ``n`` is 0
    or every resample was skipped); with ``return_samples`` also ``{"_samples": {metric: array}}``.
    """
    point = {k: float(v) for k, v in metric_fn(table).items()}
    groups = table[group].astype(str).to_numpy()
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    samples = {k: [] for k in point}
    rng = np.random.default_rng(seed)
    if len(uniq):
        for _ in range(int(n)):
            drawn = rng.integers(0, len(uniq), len(uniq))
            idx = np.concatenate([members[g] for g in drawn])
            values = metric_fn(table.iloc[idx])
            for k in point:
                samples[k].append(float(values[k]))
    alpha = (1.0 - level) / 2.0
    out: dict = {}
    for k, value in point.items():
        arr = np.asarray(samples[k], float)
        valid = arr[~np.isnan(arr)]
        lo, hi = (np.percentile(valid, [100 * alpha, 100 * (1 - alpha)]) if len(valid) else (math.nan, math.nan))
        out[k] = {"value": value, "ci_low": float(lo), "ci_high": float(hi), "n_boot": int(len(valid)),
                  "n_skipped": int(len(arr) - len(valid))}
    if return_samples:
        out["_samples"] = {k: np.asarray(v, float) for k, v in samples.items()}
    return out



def paired_difference(table_a: pd.DataFrame, table_b: pd.DataFrame,
                      metric_fn: Callable[[pd.DataFrame], Mapping[str, float]], n: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """``metric_fn(a) − metric_fn(b)`` for two models scored on the **same images**, with a paired bootstrap
    interval: each resample draws the same pseudo-patients for both models, so what the two share (the
    images' difficulty) cancels. Same result layout as :func:`bootstrap_ci`. ``ValueError`` when the tables
    do not hold the same images."""
    if sorted(table_a["image_id"]) != sorted(table_b["image_id"]):
        raise ValueError("a paired difference needs both models scored on the same images")
    combined = pd.concat([table_a.assign(_model="a"), table_b.assign(_model="b")], ignore_index=True)

    def difference(t: pd.DataFrame) -> dict:
        a, b = metric_fn(t[t["_model"] == "a"]), metric_fn(t[t["_model"] == "b"])
        return {k: float(a[k]) - float(b[k]) for k in a}

    return bootstrap_ci(combined, difference, n, seed, level)


def unpaired_difference(table_a: pd.DataFrame, table_b: pd.DataFrame,
                        metric_fn: Callable[[pd.DataFrame], Mapping[str, float]], n: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict:
    """``metric_fn(a) − metric_fn(b)`` for two models scored on **different** test sets (e.g. a leaky random
    split against the grouped one): each side resampled by its own patients, independently, and the
    interval taken over the differences of the resamples. Same result layout as :func:`bootstrap_ci`."""
    a = bootstrap_ci(table_a, metric_fn, n, seed, level, return_samples=True)
    b = bootstrap_ci(table_b, metric_fn, n, seed + 1, level, return_samples=True)
    alpha = (1.0 - level) / 2.0
    out = {}
    for k in (m for m in a if m != "_samples"):
        diffs = a["_samples"][k] - b["_samples"][k] if n else np.array([])
        valid = diffs[~np.isnan(diffs)]
        lo, hi = (np.percentile(valid, [100 * alpha, 100 * (1 - alpha)]) if len(valid) else (math.nan, math.nan))
        out[k] = {"value": a[k]["value"] - b[k]["value"], "ci_low": float(lo), "ci_high": float(hi),
                  "n_boot": int(len(valid)), "n_skipped": int(len(diffs) - len(valid))}
    return out
