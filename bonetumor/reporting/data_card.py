"""What notebook 01 says about the data: the Kaggle "Bone Tumor" table as documented (and, given the file,
as measured), whether any of its columns could supervise a detector, the counts documented for BTXRD, the
reader's problems as a table and the example images per class. The counts per class, subtype, centre and view
(the data card itself) are :func:`bonetumor.data.btxrd.data_card`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from bonetumor import IMAGE_LABELS as CLASSES

#: The published Kaggle CSV (``antimoni/bone-tumor``, 500 rows) as documented: column, type, documented
#: values and, for the categorical columns whose counts are documented, those counts.
KAGGLE_COLUMNS = (
    ("Patient ID", "text", "STS_0xx; 18 distinct values", None),
    ("Sex", "category", "Female 300, Male 200", {"Female": 300, "Male": 200}),
    ("Age", "integer", "17 to 83, mean 55.4", None),
    ("Grade", "category", "Intermediate 282, High 218", {"Intermediate": 282, "High": 218}),
    ("Histological type", "category", "13 types", None),
    ("MSKCC type", "category", "MFH 225, Leiomyosarcoma 144, Synovial sarcoma 131",
     {"MFH": 225, "Leiomyosarcoma": 144, "Synovial sarcoma": 131}),
    ("Site of primary STS", "category", "7 sites, lower case (e.g. left thigh)", None),
    ("Status (NED, AWD, D)", "category", "NED 247, D 141, AWD 112", {"NED": 247, "D": 141, "AWD": 112}),
    ("Treatment", "category", "3 combinations (e.g. Radiotherapy + Surgery)", None),
)
KAGGLE_ROWS = 500

#: Words in a column name that would mean images or image-level supervision (a file, a label, a box, a mask).
IMAGE_WORDS = ("image", "file", "path", "benign", "malignant", "box", "mask", "x-ray", "radiograph")

#: Images per class of the published BTXRD (Yao et al., Scientific Data 2025).
BTXRD_CLASSES = {"normal": 1879, "benign": 1525, "malignant": 342}
BTXRD_IMAGES = sum(BTXRD_CLASSES.values())


def kaggle_columns() -> pd.DataFrame:
    """The documented schema of the Kaggle CSV: ``column, type, documented values, counts``."""
    return pd.DataFrame(list(KAGGLE_COLUMNS), columns=["column", "type", "documented values", "counts"])


def image_like_columns(columns: Iterable[str]) -> list[str]:
    """The column names that suggest image data or image-level supervision (see :data:`IMAGE_WORDS`)."""
    return [c for c in columns if any(w in str(c).lower() for w in IMAGE_WORDS)]


def clinical_summary(clinical: pd.DataFrame) -> pd.DataFrame:
    """One row per column of a clinical table: distinct values, missing values, the three most frequent."""
    return pd.DataFrame({
        "column": clinical.columns,
        "distinct values": [clinical[c].nunique() for c in clinical.columns],
        "missing": [int(clinical[c].isna().sum()) for c in clinical.columns],
        "most frequent": [", ".join(f"{k} {v}" for k, v in clinical[c].value_counts().head(3).items())
                          for c in clinical.columns],
    })


def age_range(clinical: pd.DataFrame, column: str = "Age") -> dict:
    """Minimum, mean and maximum of the age column, to one decimal."""
    return clinical[column].describe()[["min", "mean", "max"]].round(1).to_dict()


def clinical_vs_documented(clinical: pd.DataFrame, documented: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each column whose counts are documented: the documented counts beside those of ``clinical``."""
    documented = kaggle_columns() if documented is None else documented
    counted = documented.dropna()
    measured = {c: clinical[c].value_counts().to_dict() for c in clinical.columns if c in set(counted["column"])}
    return pd.DataFrame([(col, doc, measured.get(col)) for col, doc in counted[["column", "counts"]].values],
                        columns=["column", "documented", "this file"])


def btxrd_counts(classes: dict) -> pd.DataFrame:
    """Images per class as documented for the published BTXRD beside ``classes`` (as read here)."""
    return pd.DataFrame({"documented": BTXRD_CLASSES, "read here": classes})


def problem_table(problems: Sequence) -> pd.DataFrame:
    """The reader's problems (:class:`bonetumor.data.btxrd.Problem`) as ``kind, file, reason`` rows."""
    return pd.DataFrame([(p.kind, p.file, p.reason) for p in problems], columns=["kind", "file", "reason"])


def example_records(records: Sequence[dict], per_class: int = 3) -> list[dict]:
    """The first ``per_class`` records of each class (normal, benign, malignant), in reading order: the
    examples notebook 01 shows (:func:`bonetumor.reporting.figures.data_examples`)."""
    examples = []
    for label in CLASSES:
        examples += [r for r in records if r["label"] == label][:per_class]
    return examples


def first_tumour_image(records: Sequence[dict]) -> Path:
    """The file of the first tumour image in reading (sheet) order, else of the first image: the example
    radiograph of notebooks 02 and 03."""
    if not records:
        raise ValueError("no image to choose from")
    chosen = next((r for r in records if r["label"] != "normal"), records[0])
    return Path(chosen["file"])
