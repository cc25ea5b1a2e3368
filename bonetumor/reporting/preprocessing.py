"""What notebook 02 shows the pre-processing on: the per-image metadata table of the dataset sheet (the table
equations (1)–(4) run on when no clinical CSV is given), each stage of the radiograph pre-processing of
Figure 4(b), and the image sample whose grey-level statistics it reports. The equations themselves are
:mod:`bonetumor.preprocess`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from bonetumor.data.layout import SITE_COLUMNS
from bonetumor.preprocess import preprocess_radiograph


def _normalised_columns(sheet: pd.DataFrame) -> pd.DataFrame:
    return sheet.rename(columns={c: " ".join(str(c).strip().lower().split()) for c in sheet.columns})


def site_flags(sheet: pd.DataFrame) -> pd.DataFrame:
    """The sheet's 15 one-hot site columns as 0/1 integers (an empty cell is 0)."""
    return _normalised_columns(sheet)[list(SITE_COLUMNS)].fillna(0).astype(int)


def sheet_metadata(sheet: pd.DataFrame) -> pd.DataFrame:
    """One row per image of a BTXRD-layout sheet (:func:`bonetumor.data.btxrd.read_sheet`): ``age``
    (numeric; unreadable is missing), ``sex`` (upper case) and ``site`` — the one-hot site columns turned back
    into one categorical column (several sites joined with ``+``; none marked is missing)."""
    sheet = _normalised_columns(sheet)
    flags = site_flags(sheet)
    columns = list(SITE_COLUMNS)
    site = flags.apply(lambda row: "+".join(c for c in columns if row[c] == 1) or None, axis=1)
    return pd.DataFrame({"age": pd.to_numeric(sheet["age"], errors="coerce"),
                         "sex": sheet["gender"].astype(str).str.strip().str.upper(),
                         "site": site.astype(object)})


def preprocessing_stages(original: np.ndarray) -> dict[str, np.ndarray]:
    """Each stage of :func:`bonetumor.preprocess.preprocess_radiograph` on one image, in order: the
    original (a), normalised, normalised and denoised, and the final image with CLAHE (b)."""
    processed = preprocess_radiograph(original)
    return {
        "(a) original": original,
        "normalised": preprocess_radiograph(original, denoise=False, enhance=False),
        "normalised + denoised": preprocess_radiograph(original, enhance=False),
        "(b) + CLAHE (final)": processed,
    }


def image_sample(records: Sequence[dict], rng: np.random.Generator, at_most: int = 40) -> list[Path]:
    """The image files of ``records`` in name order, or a seeded sample of ``at_most`` of them (drawn with
    ``rng``, kept in name order): the images whose grey-level statistics notebook 02 reports."""
    files = [Path(r["file"]) for r in sorted(records, key=lambda r: r["name"])]
    if len(files) > at_most:
        files = [files[i] for i in sorted(rng.choice(len(files), at_most, replace=False))]
    return files
