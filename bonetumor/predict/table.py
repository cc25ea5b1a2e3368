"""``detections.csv`` of ``bonetumor predict``, written as results come so that a killed run can continue.

Every image gets at least one row — one per detection (``status`` ``ok``), one ``no detection`` row, or one
``error: <message>`` row — so the file itself says which images are done. Rows are appended a batch at a
time, each batch in one write and flushed; every row is one line (messages are put on one line). A run
killed in the middle of a write leaves at most a last line without its newline: :meth:`DetectionsCsv.start`
with ``resume`` drops that line and every row of the image it belongs to (that image is predicted again),
drops the ``error`` rows (those images are tried again) and keeps every other line byte for byte."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

#: Columns of ``detections.csv``, in order (unchanged since the file was written whole at the end).
CSV_COLUMNS = ["file", "status", "detection", "class", "score", "x0", "y0", "x1", "y1", "mask_area", "overlay"]
CSV_NAME = "detections.csv"
_INTEGER_COLUMNS = ("detection", "mask_area")
_TEXT_COLUMNS = ("file", "status", "class", "overlay")


def detection_rows(file: Path, dets, masks, overlay: str | None) -> list[dict]:
    """The rows of one processed image: one per detection, or one ``no detection`` row."""
    if not dets:
        return [{"file": str(file), "status": "no detection", "overlay": overlay}]
    rows = []
    for k, (det, mask) in enumerate(zip(dets, masks)):
        x0, y0, x1, y1 = (round(v, 1) for v in det["box"])
        rows.append({"file": str(file), "status": "ok", "detection": k, "class": det["class"],
                     "score": round(det["score"], 4), "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                     "mask_area": int(mask.sum()), "overlay": overlay})
    return rows


def error_row(file: Path, message: str) -> dict:
    """The row of an image that could not be processed (``message`` on one line)."""
    return {"file": str(file), "status": "error: " + " ".join(message.split())}


def rows_text(rows: list[dict], header: bool = False) -> str:
    """``rows`` as CSV lines (``\\n``-terminated), integers written as integers."""
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    for column in _INTEGER_COLUMNS:
        df[column] = df[column].astype("Int64")
    return df.to_csv(index=False, header=header, lineterminator="\n")


def read_detections(path: str | os.PathLike) -> pd.DataFrame:
    """``detections.csv`` as a DataFrame: columns :data:`CSV_COLUMNS`, integer columns as ``Int64``, empty
    cells as missing."""
    df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False, na_values={
        c: [""] for c in CSV_COLUMNS})
    for column in _INTEGER_COLUMNS:
        df[column] = df[column].astype("Int64")
    return df


class DetectionsCsv:
    """An append-only ``detections.csv``: :meth:`start` it (fresh or resumed), :meth:`append` each batch's
    rows, :meth:`close` it (or use it in a ``with`` block)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._handle = None

    def start(self, resume: bool = False) -> list[dict]:
        """Open the file for appending and return the rows kept from an earlier run (as dicts of strings):
        none unless ``resume`` and the file exists (see the module docstring); otherwise the file is
        replaced by a header alone. ``ValueError`` naming the file when its header is not this table's."""
        from bonetumor.io import write_text

        kept: list[dict] = []
        if resume and self.path.is_file():
            kept = self._resumed()
        else:
            write_text(self.path, rows_text([], header=True))
        self._handle = open(self.path, "a", encoding="utf-8", newline="")
        return kept

    def _resumed(self) -> list[dict]:
        """The rows of the file worth keeping; the file rewritten (atomically) when any were dropped."""
        from bonetumor.io import write_text

        text = self.path.read_text(encoding="utf-8")
        complete = text.endswith("\n")
        lines = text.split("\n")[:-1]  # without the empty string after the last newline, or a cut last line
        header = rows_text([], header=True).rstrip("\n")
        if not lines:  # nothing, or a header cut short
            write_text(self.path, header + "\n")
            return []
        if lines[0] != header:
            raise ValueError(f"{self.path}: not a detections.csv of this command (its columns are {lines[0]!r}, "
                             f"expected {header!r}); predict into another --out, or remove it to start afresh")
        rows = [(dict(zip(CSV_COLUMNS, next(csv.reader([line])))), line) for line in lines[1:] if line]
        kept = rows
        if not complete and kept:  # the last image's rows may be cut short: predict it again
            kept = [(row, line) for row, line in kept if row["file"] != rows[-1][0]["file"]]
        kept = [(row, line) for row, line in kept if not row["status"].startswith("error")]
        if not complete or len(kept) != len(rows):
            write_text(self.path, "".join(line + "\n" for line in [header] + [line for _, line in kept]))
        return [row for row, _ in kept]

    def append(self, rows: list[dict]) -> None:
        """Append ``rows`` in one write and flush it to the operating system."""
        if rows:
            self._handle.write(rows_text(rows))
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
