"""Pre-processing: the paper's tabular equations (1)–(4) and the radiograph pre-processing of its Figure 4(b).

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

The image pipeline (the paper's algorithm, step 1.1: "normalisation, denoising") is
:func:`preprocess_radiograph`; :func:`radiograph_stats` measures the grey-level mean and standard deviation
a model normalises its inputs with.
"""

from __future__ import annotations

import os
import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "mean_impute", "min_max_scale", "one_hot", "z_score",
    "preprocess_radiograph", "radiograph_stats", "read_grayscale",
]


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


# --------------------------------------------------------------------------------------------------------
# radiographs (the paper's algorithm step 1.1 and Figure 4(b))


def read_grayscale(file: str | os.PathLike) -> np.ndarray:
    """Read an image file as a float32 (H, W) array in [0, 1] (8-bit /255, 16-bit /65535; colour → luma)."""
    from PIL import Image, ImageOps

    with Image.open(file) as im:
        im = ImageOps.exif_transpose(im) if im.format in ("JPEG", "MPO", "TIFF") else im
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float32)
            top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
            return np.clip(arr / top, 0.0, 1.0)
        if im.mode == "F":
            arr = np.asarray(im, dtype=np.float32)
            return np.clip(arr, 0.0, 1.0)
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def preprocess_radiograph(image: np.ndarray, normalise: bool = True, denoise: bool = True,
                          enhance: bool = True, percentiles: tuple[float, float] = (0.5, 99.5),
                          denoise_strength: float = 0.8, clip_limit: float = 0.01) -> np.ndarray:
    """Normalise, denoise and contrast-enhance one grayscale radiograph (the paper's algorithm step 1.1,
    "normalisation, denoising", shown in its Figure 4(b)). Returns a float32 (H, W) array in [0, 1].

    The paper names the kinds of step but not the methods; these are chosen for radiographs:

    1. ``normalise`` — **percentile intensity normalisation**: clip to the ``percentiles`` (0.5 %, 99.5 %) of
       the image's grey levels and stretch that range to [0, 1]. Radiographs from different centres and
       scanners differ in exposure and windowing; percentiles (not min/max, i.e. not equation (2) on pixels)
       make this robust to burnt-in labels, collimator edges and hot pixels.
    2. ``denoise`` — **non-local means** (``skimage.restoration.denoise_nl_means``, fast mode, 5×5 patches,
       7×7 search window) with filter strength ``denoise_strength`` × the noise σ estimated from the image
       (``estimate_sigma``). It averages similar patches, so it removes quantum noise while keeping cortical
       edges and trabecular texture better than Gaussian or median filtering; a bilateral filter was slower
       (≈ 130 ms vs ≈ 80 ms at 512 px) for a similar effect. Skipped when the estimated σ is ~0.
    3. ``enhance`` — **CLAHE** (``skimage.exposure.equalize_adapthist``, ``clip_limit``): local contrast
       equalisation that brings out lesion margins and periosteal reaction in both dense and thin bone. It
       comes after denoising because it would otherwise amplify the noise too.

    Each step can be switched off. On one 512×512 image the three take about 0.1 s on one CPU core
    (measured in ``tests/test_preprocess.py``, which fails above 0.2 s).

    ``image``: 2-D array (any numeric dtype; integers are scaled by their dtype's maximum) or (H, W, 3)
    RGB, converted to grey by luma.
    """
    from skimage import exposure, restoration

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] in (3, 4):  # colour: luma
        scale = np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else 1.0
        img = (img[..., :3].astype(np.float32) / scale) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image (or H×W×3), got shape {img.shape}")
    elif np.issubdtype(img.dtype, np.integer):
        img = img.astype(np.float32) / np.iinfo(img.dtype).max
    img = np.asarray(img, dtype=np.float32)
    if img.size == 0:
        raise ValueError("empty image")

    if normalise:
        lo, hi = np.percentile(img, percentiles)
        if hi > lo:
            img = (np.clip(img, lo, hi) - lo) / (hi - lo)
        else:  # a flat image: nothing to stretch
            img = np.zeros_like(img)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)

    if denoise and min(img.shape) >= 8 and float(img.max()) > float(img.min()):
        sigma = float(restoration.estimate_sigma(img))
        if sigma > 1e-4:
            img = restoration.denoise_nl_means(img, h=denoise_strength * sigma, sigma=sigma, patch_size=5,
                                               patch_distance=3, fast_mode=True).astype(np.float32)

    if enhance and min(img.shape) >= 8 and float(img.max()) > float(img.min()):
        img = exposure.equalize_adapthist(np.clip(img, 0.0, 1.0), clip_limit=clip_limit).astype(np.float32)

    return np.clip(img, 0.0, 1.0).astype(np.float32)


def radiograph_stats(files: Iterable[str | os.PathLike], preprocess: bool = False, **kwargs) -> dict:
    """Grey-level mean and standard deviation over all pixels of a set of images (each read in [0, 1]),
    e.g. the training images, for the model's input normalisation (``image_mean``/``image_std``).

    Pixels are pooled, so larger images weigh more, as they do in a per-pixel normalisation. With
    ``preprocess=True`` each image first goes through :func:`preprocess_radiograph` (``kwargs`` passed on),
    matching a model trained on pre-processed images. Accumulated in float64 with per-image centring, so
    it is exact for any number of images without holding them in memory.

    Returns ``{"mean", "std", "n_images", "n_pixels"}`` (population σ over pixels).
    """
    n_total = 0
    mean = 0.0
    m2 = 0.0  # sum of squared deviations (Chan et al. parallel update)
    n_images = 0
    for file in files:
        img = read_grayscale(file)
        if preprocess:
            img = preprocess_radiograph(img, **kwargs)
        px = img.astype(np.float64).ravel()
        n = px.size
        if n == 0:
            continue
        m = float(px.mean())
        s = float(((px - m) ** 2).sum())
        delta = m - mean
        total = n_total + n
        mean += delta * n / total
        m2 += s + delta * delta * n_total * n / total
        n_total = total
        n_images += 1
    if n_images == 0:
        raise ValueError("radiograph_stats: no images given")
    return {"mean": mean, "std": float(np.sqrt(m2 / n_total)), "n_images": n_images, "n_pixels": n_total}
