"""The Kaggle "Bone Tumor" clinical table (``Bone Tumor Dataset.csv``) — the dataset the paper names.

It is 500 rows of soft-tissue-sarcoma clinical records and no images (see ``DATASETS.md``, section 1), so
the project uses it only where it fits: to show the paper's tabular equations (1)–(4). The file is not
shipped (its licence is not stated); :func:`load_clinical` reads it from wherever the user put it
(``kaggle datasets download antimoni/bone-tumor``) and checks its schema.

Errors that make the table unusable raise (``FileNotFoundError`` for a missing file, ``ValueError`` for
a file that is not a CSV, is empty, lacks columns, or has no numeric age at all), each naming the file.
Problems the table can be used despite (extra columns, missing values, a few non-numeric ages, unknown
category values, ages out of range) come back as a list of plain sentences.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

#: The nine columns of the Kaggle file, in its order.
COLUMNS = (
    "Patient ID", "Sex", "Age", "Grade", "Histological type", "MSKCC type", "Site of primary STS",
    "Status (NED, AWD, D)", "Treatment",
)
#: Columns that are categorical (everything except the id and the age).
CATEGORICAL = ("Sex", "Grade", "Histological type", "MSKCC type", "Site of primary STS",
               "Status (NED, AWD, D)", "Treatment")
#: Values seen in the published file for the columns with a small fixed vocabulary; others are reported.
KNOWN_VALUES = {
    "Sex": ("Female", "Male"),
    "Grade": ("Intermediate", "High"),
    "Status (NED, AWD, D)": ("NED", "AWD", "D"),
}
#: Plausible age range, years; ages outside it are reported (the published file spans 17–83).
AGE_RANGE = (0, 120)


def load_clinical(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """Read and check the Kaggle clinical CSV; return ``(table, problems)``.

    ``table`` has the nine :data:`COLUMNS` in that order (header whitespace and a UTF-8 BOM are tolerated
    and removed), ``Age`` as float64 (non-numeric entries become NaN and are reported) and the other columns
    as text with surrounding whitespace stripped. Extra columns are kept after the nine and reported.
    ``problems`` is empty for a clean file.

    Raises ``FileNotFoundError`` (no such file), ``ValueError`` (a directory, not a readable CSV, empty, no
    data rows, required columns missing — all listed —, duplicated column names, or no numeric age at all);
    every message names the file.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"clinical CSV {file} does not exist "
                                "(download it: kaggle datasets download antimoni/bone-tumor)")
    if not file.is_file():
        raise ValueError(f"clinical CSV {file} is not a file")
    if file.stat().st_size == 0:
        raise ValueError(f"clinical CSV {file} is empty")
    try:
        raw = pd.read_csv(file, dtype=str, keep_default_na=True, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"clinical CSV {file} is empty") from exc
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValueError(f"{file} is not a readable CSV file ({type(exc).__name__}: {exc})") from exc

    raw.columns = [str(c).strip() for c in raw.columns]
    if len(set(raw.columns)) != len(raw.columns):
        dup = sorted({c for c in raw.columns if list(raw.columns).count(c) > 1})
        raise ValueError(f"{file}: duplicated column names {dup}")
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        extra = [c for c in raw.columns if c not in COLUMNS]
        hint = f"; it has columns {list(raw.columns)}" if len(raw.columns) <= 20 else ""
        raise ValueError(f"{file} is not the Kaggle 'Bone Tumor Dataset.csv': missing column(s) {missing}"
                         + (f" (unexpected: {extra})" if extra else "") + hint)
    if raw.empty:
        raise ValueError(f"clinical CSV {file} has a header but no data rows")

    problems: list[str] = []
    extra = [c for c in raw.columns if c not in COLUMNS]
    if extra:
        problems.append(f"{file.name}: unexpected extra column(s) {extra} (kept, after the nine expected ones)")

    table = raw[list(COLUMNS) + extra].copy()
    for col in table.columns:
        if col != "Age":
            table[col] = table[col].str.strip()

    age_text = table["Age"].str.strip()
    age = pd.to_numeric(age_text, errors="coerce").astype("float64")
    bad = age.isna() & age_text.notna() & (age_text != "")
    if age.notna().sum() == 0:
        raise ValueError(f"{file}: column 'Age' has no numeric value (first entries: {age_text.head(3).tolist()})")
    if bad.any():
        rows = _rows(table.index[bad])
        problems.append(f"{file.name}: {int(bad.sum())} non-numeric Age value(s) set to missing "
                        f"(data rows {rows}: {age_text[bad].head(5).tolist()})")
    out_of_range = age.notna() & ~age.between(*AGE_RANGE)
    if out_of_range.any():
        problems.append(f"{file.name}: {int(out_of_range.sum())} Age value(s) outside {AGE_RANGE[0]}–{AGE_RANGE[1]} "
                        f"(data rows {_rows(table.index[out_of_range])})")
    table["Age"] = age

    for col in table.columns:
        n = int(table[col].isna().sum())
        if n:
            problems.append(f"{file.name}: column {col!r} has {n} missing value(s)")
    for col, allowed in KNOWN_VALUES.items():
        seen = table[col].dropna()
        unknown = sorted(set(seen) - set(allowed))
        if unknown:
            problems.append(f"{file.name}: column {col!r} has value(s) {unknown} besides the expected {list(allowed)}")
    return table.reset_index(drop=True), problems


def _rows(index, limit: int = 10) -> str:
    """1-based data-row numbers (header not counted) of an index, shortened."""
    rows = [int(i) + 1 for i in index]
    text = ", ".join(map(str, rows[:limit]))
    return text + (f", … ({len(rows)} in all)" if len(rows) > limit else "")
