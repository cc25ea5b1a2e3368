"""The paper's tabular equations (1)–(4): mean imputation, min-max scaling, one-hot encoding, z-score.

Equations (1)–(4) of the paper (section 3.2) are *tabular* operations — mean imputation, min-max scaling,
one-hot encoding and z-score standardisation. They apply to a clinical table (the Kaggle CSV the paper
names) or to a dataset's metadata (age, sex, site), not to pixels. Each function here implements one
equation with numpy/pandas, says which in its docstring, and is tested equal to the scikit-learn
transformer that does the same thing (``tests/test_preprocess.py``).

Conventions shared by the four functions:

* Input is a 1-D or 2-D array-like, a :class:`pandas.Series` or a :class:`pandas.DataFrame`; columns are
  features. The output has the input's kind (DataFrame in, DataFrame out, with the same index).
* The statistics (mean, min, max, σ, categories) come from ``reference`` when it is given — the training
  rows, so that validation/test rows are transformed with training statistics, as ``fit`` on train then
  ``transform`` elsewhere does in scikit-learn — and from the data itself otherwise.
* Missing values (NaN) are ignored when statistics are computed and stay NaN in the output of
  :func:`min_max_scale` and :func:`z_score`, as scikit-learn's scalers do.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["mean_impute", "min_max_scale", "one_hot", "z_score"]


# --------------------------------------------------------------------------------------------------------
# helpers


def _as_2d_float(x, name: str = "x") -> tuple[np.ndarray, object]:
    """``x`` as a float64 (n_rows, n_features) array, plus what is needed to give the result x's kind."""
    if isinstance(x, pd.DataFrame):
        arr = x.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        return arr, ("frame", x.index, x.columns)
    if isinstance(x, pd.Series):
        arr = pd.to_numeric(x, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)[:, None]
        return arr, ("series", x.index, x.name)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        return arr[:, None], ("1d",)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    return arr, ("2d",)


def _restore(arr: np.ndarray, kind: tuple, columns=None):
    """Give ``arr`` (2-D) back the kind of the input described by ``kind``."""
    if kind[0] == "frame":
        return pd.DataFrame(arr, index=kind[1], columns=kind[2] if columns is None else columns)
    if kind[0] == "series":
        return pd.Series(arr[:, 0], index=kind[1], name=kind[2])
    if kind[0] == "1d":
        return arr[:, 0]
    return arr


def _reference(x, reference, name: str) -> np.ndarray:
    ref = x if reference is None else reference
    arr, _ = _as_2d_float(ref, name)
    return arr


def _nan_stat(func, arr: np.ndarray) -> np.ndarray:
    """Column statistic ignoring NaN; NaN (without a warning) for an all-missing column."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return func(arr, axis=0)


# --------------------------------------------------------------------------------------------------------
# equations (1)–(4)


def mean_impute(x, reference=None, keep_empty: bool = True):
    """Replace each missing value by the mean of the observed values of its column — the paper's equation (1),

    .. math:: \\hat{x}_i = \\frac{1}{n} \\sum_{j=1}^{n} x_j ,

    where the :math:`x_j` are the :math:`n` observed (non-missing) values of the feature (of ``reference``
    when given, else of ``x``). Observed values are left unchanged.

    Same result as ``sklearn.impute.SimpleImputer(strategy="mean")``. A column with no observed value has
    no mean (:math:`n = 0`); like scikit-learn:

    * ``keep_empty=True`` (default) keeps the column and fills it with 0 — ``keep_empty_features=True``;
    * ``keep_empty=False`` drops the column — scikit-learn's default (``keep_empty_features=False``).
    """
    arr, kind = _as_2d_float(x)
    ref = _reference(x, reference, "reference")
    if ref.shape[1] != arr.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} columns, x has {arr.shape[1]}")
    observed = ~np.isnan(ref)
    n = observed.sum(axis=0)
    sums = np.where(observed, ref, 0.0).sum(axis=0)
    empty = n == 0
    means = np.divide(sums, n, out=np.zeros_like(sums), where=~empty)  # equation (1), column-wise
    out = np.where(np.isnan(arr), means[None, :], arr)
    if empty.any() and not keep_empty:
        if kind[0] == "frame":
            return pd.DataFrame(out[:, ~empty], index=kind[1], columns=kind[2][~empty])
        if kind[0] == "2d":
            return out[:, ~empty]
        raise ValueError("mean_impute: the only feature has no observed value and keep_empty=False")
    return _restore(out, kind)


def min_max_scale(x, reference=None):
    """Scale each feature to [0, 1] — the paper's equation (2),

    .. math:: x_{norm} = \\frac{x - x_{min}}{x_{max} - x_{min}} ,

    with :math:`x_{min}`, :math:`x_{max}` the smallest and largest observed value of the feature (of
    ``reference`` when given, so new rows may fall outside [0, 1]). Same result as
    ``sklearn.preprocessing.MinMaxScaler()``.

    A constant feature has :math:`x_{max} - x_{min} = 0`; as in scikit-learn the denominator is then
    taken as 1, so the feature maps to :math:`x - x_{min}` (0 for every training row) instead of NaN.
    Missing values stay missing.
    """
    arr, kind = _as_2d_float(x)
    ref = _reference(x, reference, "reference")
    lo = _nan_stat(np.nanmin, ref)
    hi = _nan_stat(np.nanmax, ref)
    span = hi - lo
    span = np.where((span == 0) | ~np.isfinite(span), 1.0, span)
    return _restore((arr - lo) / span, kind)  # equation (2)


def z_score(x, reference=None):
    """Standardise each feature to zero mean and unit variance — the paper's equation (4),

    .. math:: x_{scaled} = \\frac{x - \\mu}{\\sigma} ,

    with :math:`\\mu` the mean and :math:`\\sigma` the **population** standard deviation
    (:math:`\\sigma^2 = \\frac{1}{n}\\sum (x_j - \\mu)^2`, numpy's ``ddof=0``) of the observed values of the
    feature (of ``reference`` when given). That is the σ ``sklearn.preprocessing.StandardScaler()`` uses, and
    this function gives the same result. (pandas' ``Series.std`` defaults to the sample σ, ``ddof=1``:
    not what equation (4) is usually taken to mean, and not what StandardScaler does.)

    A constant feature has σ = 0; as in scikit-learn σ is then taken as 1, so the feature maps to
    :math:`x - \\mu` (0 for every training row). Missing values stay missing.
    """
    arr, kind = _as_2d_float(x)
    ref = _reference(x, reference, "reference")
    mu = _nan_stat(np.nanmean, ref)
    sigma = _nan_stat(lambda a, axis: np.nanstd(a, axis=axis, ddof=0), ref)
    # scikit-learn treats a σ at round-off level of the mean as zero (constant feature); so do we.
    tiny = sigma < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mu), 1.0)
    sigma = np.where(tiny | ~np.isfinite(sigma), 1.0, sigma)
    return _restore((arr - mu) / sigma, kind)  # equation (4)


def _categories_of(column: np.ndarray) -> list:
    """Sorted distinct values of one column, missing values (None/NaN) last as one category ``nan``."""
    values = pd.Series(column, dtype=object)
    missing = values.isna()
    present = sorted(set(values[~missing].tolist()))
    return present + ([np.nan] if missing.any() else [])


def one_hot(x, categories: Sequence[Sequence] | None = None, reference=None, prefix_sep: str = "_"):
    """Encode categorical features as indicator columns — the paper's equation (3),

    .. math:: \\mathrm{OneHot}(x_i)_c = \\begin{cases} 1 & \\text{if } x_i = c \\\\ 0 & \\text{otherwise,}
              \\end{cases}

    one output column per category :math:`c` of each feature.

    Categories, per feature, are ``categories[k]`` when given, else the sorted distinct values of
    ``reference`` (or of ``x``), with a missing value (None/NaN) as its own category placed last — exactly
    the order of ``sklearn.preprocessing.OneHotEncoder()`` (``categories="auto"``), whose dense output this
    equals. A value that is not among the categories (possible only with ``categories``/``reference``)
    gets an all-zero row, like ``OneHotEncoder(handle_unknown="ignore")``.

    Returns a float64 array, or for a DataFrame/Series a DataFrame whose columns are named
    ``<feature><prefix_sep><category>`` (scikit-learn's ``get_feature_names_out`` convention).
    """
    if isinstance(x, pd.DataFrame):
        cols = [x[c].to_numpy(dtype=object) for c in x.columns]
        names, index = [str(c) for c in x.columns], x.index
    elif isinstance(x, pd.Series):
        cols, names, index = [x.to_numpy(dtype=object)], [str(x.name if x.name is not None else "x0")], x.index
    else:
        arr = np.asarray(x, dtype=object)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"x must be 1-D or 2-D, got shape {arr.shape}")
        cols, names, index = [arr[:, k] for k in range(arr.shape[1])], [f"x{k}" for k in range(arr.shape[1])], None
    if categories is None:
        if reference is None:
            ref_cols = cols
        elif isinstance(reference, pd.DataFrame):
            ref_cols = [reference[c].to_numpy(dtype=object) for c in reference.columns]
        elif isinstance(reference, pd.Series):
            ref_cols = [reference.to_numpy(dtype=object)]
        else:
            ref_arr = np.asarray(reference, dtype=object)
            ref_arr = ref_arr[:, None] if ref_arr.ndim == 1 else ref_arr
            ref_cols = [ref_arr[:, k] for k in range(ref_arr.shape[1])]
        if len(ref_cols) != len(cols):
            raise ValueError(f"reference has {len(ref_cols)} columns, x has {len(cols)}")
        categories = [_categories_of(c) for c in ref_cols]
    elif len(categories) != len(cols):
        raise ValueError(f"{len(categories)} category lists for {len(cols)} features")

    blocks, out_names = [], []
    for values, cats, name in zip(cols, categories, names):
        values = pd.Series(values, dtype=object)
        missing = values.isna().to_numpy()
        block = np.zeros((len(values), len(cats)), dtype=np.float64)
        for k, cat in enumerate(cats):
            if pd.isna(cat):
                block[:, k] = missing  # the "missing" category
            else:
                block[:, k] = (~missing) & (values == cat).to_numpy()  # equation (3)
            out_names.append(f"{name}{prefix_sep}{cat}")
        blocks.append(block)
    out = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(index) if index is not None else 0, 0))
    if isinstance(x, (pd.DataFrame, pd.Series)):
        return pd.DataFrame(out, index=index, columns=out_names)
    return out
