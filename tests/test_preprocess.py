"""Equations (1)–(4) against scikit-learn, and the radiograph pre-processing (Figure 4(b))."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from bonetumor import preprocess as pp


@pytest.fixture
def table():
    rng = np.random.default_rng(7)
    x = np.column_stack([
        rng.integers(17, 84, 60).astype(float),  # age-like
        rng.normal(5.0, 2.0, 60),
        rng.uniform(-1e3, 1e3, 60),
    ])
    x[rng.choice(60, 9, replace=False), 0] = np.nan
    x[rng.choice(60, 4, replace=False), 2] = np.nan
    return x


# ---- equation (1): mean imputation ---------------------------------------------------------------------

def test_mean_impute_matches_simple_imputer(table):
    expected = SimpleImputer(strategy="mean").fit_transform(table)
    got = pp.mean_impute(table)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert not np.isnan(got).any()
    # observed values untouched; imputed ones are the mean of the observed values (equation 1)
    observed = ~np.isnan(table)
    np.testing.assert_array_equal(got[observed], table[observed])
    col = table[:, 0]
    assert np.allclose(got[np.isnan(col), 0], col[~np.isnan(col)].sum() / (~np.isnan(col)).sum())


def test_mean_impute_reference_is_fit_then_transform(table):
    train, test = table[:40], table[40:]
    expected = SimpleImputer(strategy="mean").fit(train).transform(test)
    np.testing.assert_allclose(pp.mean_impute(test, reference=train), expected)


def test_mean_impute_all_missing_column():
    x = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, 5.0], [4.0, np.nan, np.nan]])
    keep = SimpleImputer(strategy="mean", keep_empty_features=True).fit_transform(x)
    np.testing.assert_allclose(pp.mean_impute(x), keep)
    assert (pp.mean_impute(x)[:, 1] == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns that it skips the empty feature
        drop = SimpleImputer(strategy="mean").fit_transform(x)
    got = pp.mean_impute(x, keep_empty=False)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, drop)


def test_mean_impute_keeps_dataframe_kind(table):
    df = pd.DataFrame(table, columns=["age", "b", "c"], index=range(100, 160))
    out = pp.mean_impute(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["age", "b", "c"] and list(out.index) == list(df.index)
    np.testing.assert_allclose(out.to_numpy(), SimpleImputer(strategy="mean").fit_transform(table))
    series = pp.mean_impute(df["age"])
    assert isinstance(series, pd.Series) and series.name == "age"
    np.testing.assert_allclose(series.to_numpy(), out["age"].to_numpy())


# ---- equation (2): min-max scaling ---------------------------------------------------------------------

def test_min_max_matches_sklearn(table):
    filled = SimpleImputer().fit_transform(table)
    got = pp.min_max_scale(filled)
    np.testing.assert_allclose(got, MinMaxScaler().fit_transform(filled), rtol=1e-12, atol=1e-15)
    assert got.min() == 0.0 and got.max() == 1.0


def test_min_max_missing_stay_missing_like_sklearn(table):
    got = pp.min_max_scale(table)
    expected = MinMaxScaler().fit_transform(table)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(table))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_min_max_constant_column_and_reference():
    x = np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 7.0]])
    got = pp.min_max_scale(x)
    np.testing.assert_allclose(got, MinMaxScaler().fit_transform(x))
    assert (got[:, 0] == 0).all()  # constant feature → 0, not NaN
    new = np.array([[4.0, 10.0], [3.0, -2.0]])
    np.testing.assert_allclose(pp.min_max_scale(new, reference=x), MinMaxScaler().fit(x).transform(new))


# ---- equation (3): one-hot encoding --------------------------------------------------------------------

def test_one_hot_matches_sklearn_and_definition():
    df = pd.DataFrame({"sex": ["Female", "Male", "Female", "Male", "Female"],
                       "site": ["left thigh", "right thigh", "parascapusular", "left thigh", "right buttock"]})
    enc = OneHotEncoder(sparse_output=False).fit(df)
    got = pp.one_hot(df)
    np.testing.assert_allclose(got.to_numpy(), enc.transform(df))
    assert list(got.columns) == list(enc.get_feature_names_out())
    # the definition itself: 1 where x_i equals the category, else 0; exactly one 1 per feature
    assert (got["sex_Male"].to_numpy() == (df["sex"] == "Male").to_numpy()).all()
    assert (got.filter(like="site_").sum(axis=1) == 1).all()


def test_one_hot_missing_and_unknown():
    train = np.array([["a"], ["b"], [None], ["a"]], dtype=object)
    enc = OneHotEncoder(sparse_output=False).fit(train)
    np.testing.assert_allclose(pp.one_hot(train), enc.transform(train))  # None: own category, last
    test = np.array([["b"], ["z"], [None]], dtype=object)
    ignore = OneHotEncoder(sparse_output=False, handle_unknown="ignore").fit(train)
    got = pp.one_hot(test, reference=train)
    np.testing.assert_allclose(got, ignore.transform(test))
    assert got[1].sum() == 0  # unknown category → all zeros


def test_one_hot_numeric_categories_and_given_categories():
    x = np.array([3, 1, 2, 3, 1])
    np.testing.assert_allclose(pp.one_hot(x), OneHotEncoder(sparse_output=False).fit_transform(x[:, None]))
    cats = [[1, 2, 3, 4]]
    np.testing.assert_allclose(pp.one_hot(x, categories=cats),
                               OneHotEncoder(sparse_output=False, categories=cats).fit_transform(x[:, None]))


# ---- equation (4): z-score -----------------------------------------------------------------------------

def test_z_score_matches_standard_scaler(table):
    filled = SimpleImputer().fit_transform(table)
    got = pp.z_score(filled)
    np.testing.assert_allclose(got, StandardScaler().fit_transform(filled), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(got.std(axis=0, ddof=0), 1, rtol=1e-12)  # population σ
    assert not np.allclose(got.std(axis=0, ddof=1), 1)  # … not the sample σ


def test_z_score_missing_constant_reference(table):
    np.testing.assert_allclose(pp.z_score(table), StandardScaler().fit_transform(table), rtol=1e-10, atol=1e-12)
    const = np.column_stack([np.full(5, 0.1), np.arange(5.0)])
    got = pp.z_score(const)
    np.testing.assert_allclose(got, StandardScaler().fit_transform(const), atol=1e-12)
    assert (got[:, 0] == 0).all()  # constant feature → 0, not NaN/inf
    train, test = table[:45], table[45:]
    np.testing.assert_allclose(pp.z_score(test, reference=train), StandardScaler().fit(train).transform(test),
                               rtol=1e-10, atol=1e-12)


def test_all_missing_column_scalers_keep_nan():
    x = np.array([[1.0, np.nan], [2.0, np.nan], [4.0, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(pp.min_max_scale(x), MinMaxScaler().fit_transform(x))
        np.testing.assert_allclose(pp.z_score(x), StandardScaler().fit_transform(x))
    assert np.isnan(pp.z_score(x)[:, 1]).all()


# ---- radiographs ---------------------------------------------------------------------------------------

def _phantom_radiograph(size=512, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    bone = ((np.abs(xx - 0.5) < 0.12) * 0.5).astype(np.float32)
    lesion = (((xx - 0.5) ** 2 + (yy - 0.4) ** 2) < 0.004) * 0.15
    img = 0.15 + bone + lesion + 0.1 * yy + rng.normal(0, 0.04, (size, size))
    return np.clip(img, 0, 1).astype(np.float32)


def test_preprocess_radiograph_range_dtype_and_steps():
    img = _phantom_radiograph(256)
    out = pp.preprocess_radiograph(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() >= 0 and out.max() <= 1
    # switched off entirely, the image comes back unchanged (as float32 in [0, 1])
    np.testing.assert_array_equal(pp.preprocess_radiograph(img, normalise=False, denoise=False, enhance=False), img)
    # normalisation alone: percentile stretch fills [0, 1]
    norm = pp.preprocess_radiograph(img * 0.3 + 0.2, denoise=False, enhance=False)
    assert norm.min() == 0 and norm.max() == 1
    # denoising lowers the noise in a flat region (outside the bone)
    flat = (slice(150, 250), slice(10, 60))
    den = pp.preprocess_radiograph(img, normalise=False, enhance=False)
    assert den[flat].std() < 0.5 * img[flat].std()


def test_preprocess_radiograph_inputs():
    img8 = (_phantom_radiograph(64) * 255).astype(np.uint8)
    a = pp.preprocess_radiograph(img8, denoise=False, enhance=False, normalise=False)
    np.testing.assert_allclose(a, img8 / 255.0, atol=1e-6)
    rgb = np.repeat(img8[..., None], 3, axis=-1)
    np.testing.assert_allclose(pp.preprocess_radiograph(rgb), pp.preprocess_radiograph(img8), atol=1e-5)
    flat = pp.preprocess_radiograph(np.full((32, 32), 0.4, dtype=np.float32))
    assert np.isfinite(flat).all() and flat.min() >= 0
    with pytest.raises(ValueError):
        pp.preprocess_radiograph(np.zeros((2, 3, 4, 5)))


def test_radiograph_stats_pools_pixels(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (20, 30), dtype=np.uint8), rng.integers(40, 200, (11, 7), dtype=np.uint8),
              rng.integers(0, 256, (16, 16), dtype=np.uint8)]
    files = []
    for k, arr in enumerate(arrays):
        mode = "L" if k else "RGB"
        im = Image.fromarray(arr) if mode == "L" else Image.fromarray(np.repeat(arr[..., None], 3, -1))
        files.append(tmp_path / f"img{k}.png")
        im.save(files[-1])
    stats = pp.radiograph_stats(files)
    pooled = np.concatenate([a.ravel() / 255.0 for a in arrays])
    assert stats["n_images"] == 3 and stats["n_pixels"] == pooled.size
    np.testing.assert_allclose(stats["mean"], pooled.mean(), rtol=1e-6)  # pixels read as float32
    np.testing.assert_allclose(stats["std"], pooled.std(), rtol=1e-6)
    pre = pp.radiograph_stats(files[1:], preprocess=True)
    expected = np.concatenate([pp.preprocess_radiograph(a / 255.0).ravel() for a in arrays[1:]])
    np.testing.assert_allclose([pre["mean"], pre["std"]], [expected.mean(), expected.std()], rtol=1e-5)
    with pytest.raises(ValueError):
        pp.radiograph_stats([])
