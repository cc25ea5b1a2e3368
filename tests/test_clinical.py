"""The Kaggle clinical CSV loader, on fixture files written here with the real schema (the file is not shipped)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bonetumor.data.clinical import CATEGORICAL, COLUMNS, load_clinical

SITES = ["left thigh", "right thigh", "right buttock", "left buttock", "parascapusular", "right parascapusular",
         "left biceps"]
HISTOLOGY = ["pleiomorphic leiomyosarcoma", "synovial sarcoma", "malignant fibrous histiocytoma",
             "myxofibrosarcoma", "leiomyosarcoma", "poorly differentiated synovial sarcoma"]
MSKCC = ["MFH", "Leiomyosarcoma", "Synovial sarcoma"]
TREATMENTS = ["Radiotherapy + Surgery", "Surgery + Chemotherapy", "Radiotherapy + Surgery + Chemotherapy"]


def make_table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """A plausible stand-in for 'Bone Tumor Dataset.csv' (same 9 columns, similar values)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "Patient ID": [f"STS_{rng.integers(1, 19):03d}" for _ in range(n)],
        "Sex": rng.choice(["Female", "Male"], n, p=[0.6, 0.4]),
        "Age": rng.integers(17, 84, n),
        "Grade": rng.choice(["Intermediate", "High"], n),
        "Histological type": rng.choice(HISTOLOGY, n),
        "MSKCC type": rng.choice(MSKCC, n),
        "Site of primary STS": rng.choice(SITES, n),
        "Status (NED, AWD, D)": rng.choice(["NED", "AWD", "D"], n, p=[0.5, 0.22, 0.28]),
        "Treatment": rng.choice(TREATMENTS, n),
    })


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "Bone Tumor Dataset.csv"
    make_table().to_csv(path, index=False)
    return path


def test_clean_file_loads_without_problems(csv):
    table, problems = load_clinical(csv)
    assert problems == []
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 40
    assert table["Age"].dtype == np.float64
    expected = make_table()
    np.testing.assert_array_equal(table["Age"].to_numpy(), expected["Age"].to_numpy().astype(float))
    for col in CATEGORICAL:
        assert table[col].tolist() == expected[col].tolist()


def test_whitespace_and_bom_tolerated(tmp_path):
    df = make_table(5)
    df["Sex"] = " " + df["Sex"]
    df.columns = [f" {c} " for c in df.columns]
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + df.to_csv(index=False).encode())
    table, problems = load_clinical(path)
    assert problems == [] and list(table.columns) == list(COLUMNS)
    assert set(table["Sex"]) <= {"Female", "Male"}


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere" / "Bone Tumor Dataset.csv"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_clinical(path)


def test_missing_columns_listed(tmp_path):
    path = tmp_path / "short.csv"
    make_table().drop(columns=["Grade", "Treatment"]).rename(columns={"Sex": "Gender"}).to_csv(path, index=False)
    with pytest.raises(ValueError) as info:
        load_clinical(path)
    msg = str(info.value)
    assert "short.csv" in msg and "'Sex'" in msg and "'Grade'" in msg and "'Treatment'" in msg
    assert "Gender" in msg  # the unexpected column is named too


def test_extra_columns_reported_and_kept(tmp_path):
    path = tmp_path / "extra.csv"
    make_table().assign(Notes="x").to_csv(path, index=False)
    table, problems = load_clinical(path)
    assert list(table.columns) == list(COLUMNS) + ["Notes"]
    assert len(problems) == 1 and "Notes" in problems[0] and "extra.csv" in problems[0]


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (pd.DataFrame(columns=list(COLUMNS)).to_csv(index=False).encode(), "no data rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\xff\xfe\x00\x81", "not a readable CSV"),
])
def test_unusable_files_raise_naming_the_file(tmp_path, content, needle):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=needle) as info:
        load_clinical(path)
    assert "broken.csv" in str(info.value)


def test_directory_is_not_a_csv(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        load_clinical(tmp_path)


def test_age_not_numeric(tmp_path):
    df = make_table().astype({"Age": object})
    df.loc[[3, 7], "Age"] = ["forty", "n/a?"]
    path = tmp_path / "ages.csv"
    df.to_csv(path, index=False)
    table, problems = load_clinical(path)
    assert table["Age"].isna().sum() == 2 and np.isnan(table.loc[3, "Age"])
    assert any("non-numeric Age" in p and "4, 8" in p for p in problems)  # 1-based data rows

    df["Age"] = "old"
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match="ages.csv.*no numeric"):
        load_clinical(path)


def test_missing_values_unknown_categories_and_out_of_range_reported(tmp_path):
    df = make_table()
    df.loc[0, "Grade"] = None
    df.loc[1, "Age"] = None
    df.loc[2, "Sex"] = "Unknown"
    df.loc[5, "Age"] = 230
    path = tmp_path / "messy.csv"
    df.to_csv(path, index=False)
    table, problems = load_clinical(path)
    text = "\n".join(problems)
    assert "'Grade' has 1 missing" in text and "'Age' has 1 missing" in text
    assert "Unknown" in text and "outside" in text
    assert len(problems) == 4
    assert table["Age"].isna().sum() == 1  # a blank age is missing, not an error
