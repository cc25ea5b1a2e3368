"""The BTXRD sheet (``dataset.xlsx``, or ``dataset.csv``): one row per image, the 37 columns of
:data:`bonetumor.data.layout.SHEET_COLUMNS`.

:func:`read_sheet` reads it as a pandas DataFrame (column names normalised to lower case with single spaces;
the 37 columns checked; values as in the file). In a workbook of several sheets, the first sheet that holds
the 37 columns is read (a report names it when it is not the first). :func:`sheet_rows` applies the reader's rules to it (see
:mod:`bonetumor.data.btxrd`): the sheet decides an image's class and subtype; sites and views are one-hot
columns joined with ``"+"`` in column order; each departure is reported, never silently changed.
:func:`parse_sheet` gives those rows as a DataFrame with the problems. One-hot cells must hold 0 or 1 (or
be empty, read as 0); any other value is reported and read as 0. Ages outside
:data:`bonetumor.data.clinical.AGE_RANGE` are reported and left empty, as the clinical CSV reader does.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from bonetumor.data.btxrd.files import IMAGE_SUFFIXES, find_root, relative, sheet_file
from bonetumor.data.clinical import AGE_RANGE
from bonetumor.data.btxrd.problems import DatasetError, Problem
from bonetumor.data.layout import SHEET_COLUMNS, SITE_COLUMNS, SUBTYPE_CLASS, VIEW_COLUMNS
from bonetumor.data.layout import SUBTYPES as SUBTYPE_COLUMNS

#: Columns of :func:`parse_sheet`'s table: ``row`` is the 1-based row in the sheet (the reader's image id).
PARSED_COLUMNS = ("row", "image_id", "name", "label", "subtype", "site", "view", "centre", "age", "gender")


def read_sheet(path_or_root: str | os.PathLike):
    """The sheet as a pandas DataFrame: ``path_or_root`` is the sheet file itself, a BTXRD root or its parent.

    Column names are normalised (lower case, single spaces); values are left as the file holds them (an
    ``.xlsx`` read with openpyxl, a ``.csv`` with ``image_id`` as text). Raises :class:`DatasetError` when the
    file cannot be read or no sheet of it has all 37 BTXRD columns (extra columns are kept). A workbook's
    first sheet with the 37 columns is read; when that is not its first sheet, ``attrs["sheet_note"]`` says
    which was read (:func:`sheet_rows` reports it).
    """
    import pandas as pd

    path = Path(path_or_root).expanduser()
    if path.is_dir() or not path.exists():
        path = sheet_file(find_root(path))
    try:
        if path.suffix.lower() == ".csv":
            names, frames = [None], iter([pd.read_csv(path, dtype={"image_id": str})])
        else:
            book = pd.ExcelFile(path, engine="openpyxl")
            names = book.sheet_names
            frames = (pd.read_excel(book, sheet_name=name) for name in names)
        for index, (name, df) in enumerate(zip(names, frames)):
            df = df.rename(columns={c: _norm(c) for c in df.columns})
            missing = [c for c in SHEET_COLUMNS if c not in df.columns]
            if index == 0:
                first_missing = missing
            if not missing:
                break
    except Exception as exc:  # openpyxl/pandas raise many types for a damaged file
        raise DatasetError(f"{path}: cannot read the sheet: {type(exc).__name__}: {_one_line(exc)}") from exc
    if missing:
        others = (f" (nor does any other sheet of the workbook: {', '.join(map(repr, names[1:]))})"
                  if len(names) > 1 else "")
        raise DatasetError(f"{path}: the sheet{'' if names[0] is None else f' {names[0]!r}'} lacks "
                           f"{len(first_missing)} of the 37 BTXRD columns: {', '.join(first_missing)}{others}")
    if index > 0:
        df.attrs["sheet_note"] = (f"read sheet {name!r}: the workbook's first sheet {names[0]!r} lacks "
                                  f"{len(first_missing)} of the 37 BTXRD columns")
    return df


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:299] + "…"


def parse_sheet(path_or_root: str | os.PathLike):
    """The sheet read by the reader's rules: ``(table, problems)``, one table row (columns
    :data:`PARSED_COLUMNS`) per sheet row with an image id, holding the values the records get. Text columns
    hold ``None`` where empty (``label`` where the class columns contradict each other); ``centre`` and
    ``age`` are numbers (NaN where empty). Duplicate ids are kept here (the reader drops all but the first)."""
    import pandas as pd

    path = Path(path_or_root).expanduser()
    if path.is_dir() or not path.exists():
        path = sheet_file(find_root(path))
    root = path.resolve().parent
    problems: list[Problem] = []

    def report(file, reason, kind):
        problems.append(Problem(relative(file, root), reason, kind))

    rows = sheet_rows(read_sheet(path), path, report)
    numeric = ("row", "centre", "age")
    table = pd.DataFrame({c: pd.Series([row[c] for row in rows], dtype=None if c in numeric else object)
                          for c in PARSED_COLUMNS})
    return table, problems


def sheet_rows(df, path: Path, report) -> list[dict]:
    """The rows of a sheet read by :func:`read_sheet`, by the reader's rules; each departure is reported as
    ``report(path, reason, "sheet")``. A row: ``row`` (1-based), ``image_id``, ``name`` (without extension),
    ``where`` (for messages), ``label``, ``subtype``, ``site``, ``view``, ``centre``, ``age``, ``gender``."""
    import pandas as pd

    if df.attrs.get("sheet_note"):
        report(path, df.attrs["sheet_note"], "sheet")
    extra = [c for c in df.columns if c not in SHEET_COLUMNS]
    if extra:
        report(path, f"unexpected columns ignored: {', '.join(map(str, extra))}", "sheet")
    onehot = [c for c in SHEET_COLUMNS[4:]]
    flags = df[onehot].apply(pd.to_numeric, errors="coerce")
    bad = (df[onehot].notna() & flags.isna()) | (flags.notna() & ~flags.isin([0, 1]))
    flags = flags.where(~bad).fillna(0)
    rows = []
    for i, (raw, flag, badrow) in enumerate(zip(df.to_dict("records"), flags.to_dict("records"),
                                                bad.to_dict("records"))):
        row = _row(i, raw, flag, badrow, path, report)
        if row is not None:
            rows.append(row)
    return rows


def _row(i: int, raw: dict, flag: dict, badrow: dict, path: Path, report) -> dict | None:
    """Sheet row ``i`` (0-based) from its raw values, numeric one-hot flags and not-a-number marks."""
    image_id = raw["image_id"]
    excel_row = i + 2
    if image_id is None or (isinstance(image_id, float) and math.isnan(image_id)) or not str(image_id).strip():
        report(path, f"row {excel_row}: empty image_id; row skipped", "sheet")
        return None
    image_id = str(image_id).strip()
    name = Path(image_id).stem if Path(image_id).suffix.lower() in IMAGE_SUFFIXES else image_id
    where = f"row {excel_row} ({image_id})"
    for col, is_bad in badrow.items():
        if is_bad:
            report(path, f"{where}: column {col!r} holds {raw[col]!r}, not 0/1; read as 0", "sheet")
    on = {c: float(v) == 1 for c, v in flag.items()}
    row = {"row": i + 1, "image_id": image_id, "name": name, "where": where}
    row["label"], row["subtype"] = _class_of(on, where, path, report)
    row["site"] = _joined(on, SITE_COLUMNS)
    row["view"] = _joined(on, VIEW_COLUMNS)
    row["centre"] = _as_int(raw["center"], "center", where, path, report)
    row["age"] = _as_int(raw["age"], "age", where, path, report)
    if row["age"] is not None and not AGE_RANGE[0] <= row["age"] <= AGE_RANGE[1]:
        report(path, f"{where}: age {row['age']} is outside {AGE_RANGE[0]}–{AGE_RANGE[1]}; left empty", "sheet")
        row["age"] = None
    row["gender"] = _gender(raw["gender"], where, path, report)
    return row


def _norm(name) -> str:
    return " ".join(str(name).strip().lower().split())


def _gender(raw, where: str, path: Path, report) -> str | None:
    gender = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw).strip().upper()
    if gender in ("MALE", "FEMALE"):
        gender = gender[0]
    if gender not in ("M", "F"):
        report(path, f"{where}: gender {raw!r} is not M or F; left empty", "sheet")
        gender = None
    return gender


def _class_of(on: dict, where: str, path: Path, report) -> tuple[str | None, str | None]:
    subtypes = [s for s in SUBTYPE_COLUMNS if on[s]]
    subtype = subtypes[0] if subtypes else None
    if len(subtypes) > 1:
        report(path, f"{where}: several subtype columns set ({', '.join(subtypes)}); using {subtype!r}", "sheet")
    benign, malignant, tumor = on["benign"], on["malignant"], on["tumor"]
    if benign and malignant:
        report(path, f"{where}: both benign and malignant are 1; row skipped", "sheet")
        return None, None
    if benign or malignant:
        label = "benign" if benign else "malignant"
        if not tumor:
            report(path, f"{where}: {label} is 1 but tumor is 0; read as {label}", "sheet")
    elif tumor:
        if subtype is None:
            report(path, f"{where}: tumor is 1 but neither benign nor malignant nor any subtype is set; "
                         "row skipped", "sheet")
            return None, None
        label = SUBTYPE_CLASS[subtype]
        report(path, f"{where}: tumor is 1 but neither benign nor malignant is set; read as {label} "
                     f"from subtype {subtype!r}", "sheet")
    else:
        if subtype is not None:
            report(path, f"{where}: normal (tumor 0) but subtype {subtype!r} is set; read as normal", "sheet")
        return "normal", None
    if subtype is None:
        report(path, f"{where}: {label} but no subtype column is set", "sheet")
    elif SUBTYPE_CLASS[subtype] != label:
        report(path, f"{where}: subtype {subtype!r} is {SUBTYPE_CLASS[subtype]} but the row says {label}; "
                     f"read as {label}", "sheet")
    return label, subtype


def _joined(on: dict, columns: Sequence[str]) -> str | None:
    names = [c for c in columns if on[c]]
    return "+".join(names) if names else None


def _as_int(value, column, where, path, report) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        report(path, f"{where}: {column} {value!r} is not a number; left empty", "sheet")
        return None
    if math.isnan(number):
        report(path, f"{where}: {column} is empty", "sheet")
        return None
    if number != int(number):
        report(path, f"{where}: {column} {value!r} is not a whole number; left empty", "sheet")
        return None
    return int(number)
