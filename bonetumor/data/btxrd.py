"""The BTXRD reader: a BTXRD-layout folder (the real dataset or the synthetic phantom) → records; COCO export;
a once-only resize cache; the checksummed download.

Layout (Yao et al., Scientific Data 2025; figshare doi 10.6084/m9.figshare.27865398)::

    BTXRD/images/IMG000001.jpeg ...       the sheet may say .jpeg where the file is .jpg, and the reverse
    BTXRD/Annotations/IMG000001.json ...  LabelMe JSON, tumour images only; some zips nest Annotations/Annotations/
    BTXRD/dataset.xlsx                    one row per image, 37 columns (``SHEET_COLUMNS``)

Rules the reader applies (each departure from them is a :class:`Problem`, never a silent change):

* **The sheet decides** an image's class (``normal``/``benign``/``malignant``), subtype, centre, age, gender,
  site and view. A LabelMe ``label`` is a subtype name (``"osteosarcoma"``, ``"other bt"``; a class name is
  accepted too); when it disagrees with the sheet the disagreement is reported and the sheet is used.
* **Images are found by id** under ``images/`` (any depth, hidden files and ``__MACOSX`` ignored), matching the
  sheet's ``image_id`` without its extension. A JSON's ``imagePath`` is never used to open anything.
* **Shapes → lesions.** Shapes that carry a ``group_id`` form one lesion per ``group_id``. Every rectangle
  without a ``group_id`` starts a lesion of its own. Each polygon without a ``group_id`` joins the lesion
  (with a rectangle) that covers the largest fraction of the polygon's bounding box (within 0.05 of the
  largest, e.g. nested rectangles, the one whose IoU with that bounding box is highest); a polygon that
  overlaps no rectangle is a lesion of its own. A lesion's ``box`` is its rectangle (the union, if a group holds
  several), else the bounds of its polygons. A rectangle with no polygon gives a box-only lesion
  (``polygons == []``), which is reported because it has no mask.
* **Coordinates** outside the image are clipped to it and reported. Polygons with fewer than 3 points or no
  area, unsupported shape types and malformed points are reported and skipped.
* **Sites and views** are one-hot columns; when several are set, the names are joined with ``"+"`` in sheet
  column order (e.g. ``"femur+knee-joint"``); none set gives ``None``.
* **Image ids** are the 1-based position of the row in the sheet, so they stay stable when another row is
  dropped. Images that cannot be used are left out of the records, each with a problem saying why: a sheet
  row without an image file, an unreadable or truncated image, a duplicate id, an inconsistent class, a
  tumour image without any usable annotation. Files on disk without a sheet row are reported too.

Records follow :mod:`bonetumor.data`, plus ``annotation`` (the LabelMe file, or ``None``) and, only for a
file with a non-trivial EXIF orientation, ``exif_orientation``. ``patient`` is left ``None`` (the splits
assign it).

Pixels are never decoded while reading: the image size comes from the file header (a JPEG's end-of-image
marker is checked to catch truncated files). Width and height are those of the image as displayed, i.e.
after its EXIF orientation, which is the frame LabelMe annotates in; read pixels with :func:`load_image`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from bonetumor import paths
from bonetumor.data.layout import SHEET_COLUMNS, SITE_COLUMNS, SUBTYPE_CLASS, VIEW_COLUMNS
from bonetumor.data.layout import SUBTYPES as SUBTYPE_COLUMNS
from bonetumor.io import atomic_path, sha256_file, write_json

#: The dataset's figshare article (doi 10.6084/m9.figshare.27865398). Its ``ndownloader/articles/...`` link
#: serves a zip that figshare builds around the article's files, whose checksum is not the published one.
FIGSHARE_ARTICLE_URL = "https://figshare.com/ndownloader/articles/27865398/versions/1"
#: The article's single file, ``BTXRD.zip`` (figshare file id 50653575); the published MD5 is this file's.
FIGSHARE_URL = "https://ndownloader.figshare.com/files/50653575"
FIGSHARE_MD5 = "59132a5036d030580ccade8add8f13df"
#: Name the download is saved under in ``dest`` (not ``BTXRD.zip``: a wrapping zip may hold a ``BTXRD.zip``).
DOWNLOAD_NAME = "BTXRD-download.zip"

SHEET_NAMES = ("dataset.xlsx", "dataset.csv")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp")
CLASS_NAMES = ("normal", "benign", "malignant")
_EPS = 1e-6


class DatasetError(ValueError):
    """The dataset cannot be read (or, with ``strict=True``, it has problems); ``problems`` lists them."""

    def __init__(self, message: str, problems: Sequence["Problem"] = ()):
        self.problems = list(problems)
        if self.problems:
            shown = "\n".join(f"  - {p}" for p in self.problems[:50])
            more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
            message = f"{message}\n{shown}{more}"
        super().__init__(message)


class DownloadError(RuntimeError):
    """The download failed (network, checksum or archive)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: the file (relative to the dataset root when inside it) and why."""

    file: str
    reason: str
    #: ``sheet`` | ``image`` | ``annotation`` | ``layout``
    kind: str = "annotation"

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


# --------------------------------------------------------------------------------------------------- reading

def find_root(path: str | os.PathLike) -> Path:
    """The BTXRD root for ``path``: ``path`` itself when it holds the sheet, else ``path/BTXRD``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder (give the BTXRD folder or its parent)")
    candidates = [path] + [p for p in sorted(path.iterdir()) if p.is_dir() and p.name.lower() == "btxrd"]
    for folder in candidates:
        if _sheet_file(folder) is not None:
            return folder.resolve()
    raise DatasetError(f"{path}: no {' or '.join(SHEET_NAMES)} in it or in {path / 'BTXRD'}; "
                       "is this a BTXRD-layout folder?")


def read_dataset(root: str | os.PathLike, strict: bool = False) -> tuple[list[dict], list[Problem]]:
    """Read a BTXRD-layout folder (or its parent) into records (see :mod:`bonetumor.data`) and problems.

    Raises :class:`DatasetError` when the folder cannot be read at all (no sheet, missing columns, no
    ``images/`` folder) and, with ``strict=True``, when any problem was found.
    """
    root = find_root(root)
    problems: list[Problem] = []

    def report(file, reason, kind):
        problems.append(Problem(_rel(file, root), reason, kind))

    sheet_path = _sheet_file(root)
    rows = _read_sheet(sheet_path, root, report)
    image_dir = _child_dir(root, "images")
    if image_dir is None:
        raise DatasetError(f"{root}: no images/ folder")
    images = _index_files(image_dir, IMAGE_SUFFIXES, root, report, "image")
    ann_dir = _child_dir(root, "annotations")
    annotations = _index_files(ann_dir, (".json",), root, report, "annotation") if ann_dir is not None else {}

    records: list[dict] = []
    seen: dict[str, int] = {}
    for row in rows:
        name, where = row["name"], row["where"]
        if name in seen:
            report(sheet_path, f"{where}: duplicate image_id {row['image_id']!r} (first at row "
                               f"{seen[name] + 1}); this row is ignored", "sheet")
            continue
        seen[name] = row["row"]
        if row["label"] is None:  # inconsistent class columns, already reported
            continue
        files = images.get(name)
        if not files:
            report(sheet_path, f"{where}: no image file {name}.* under images/; row skipped", "sheet")
            continue
        file = _pick_file(files, row["image_id"])
        if len(files) > 1:
            report(file, f"several files for id {name} ({', '.join(f.name for f in files)}); using {file.name}",
                   "image")
        try:
            width, height, orientation = _probe_image(file)
        except _BadImage as exc:
            report(file, f"{exc}; image skipped", "image")
            continue
        record = {
            "image_id": row["row"], "name": name, "file": str(file), "width": width, "height": height,
            "label": row["label"], "subtype": row["subtype"], "centre": row["centre"], "age": row["age"],
            "gender": row["gender"], "site": row["site"], "view": row["view"], "patient": None,
            "annotation": None, "lesions": [],
        }
        if orientation != 1:
            record["exif_orientation"] = orientation
        ann = annotations.get(name)
        if ann:
            ann_file = ann[0]
            if len(ann) > 1:
                report(ann_file, f"several annotation files for id {name} "
                                 f"({', '.join(_rel(a, root) for a in ann)}); using this one", "annotation")
            record["annotation"] = str(ann_file)
            lesions = _read_labelme(ann_file, width, height, row, lambda reason: report(ann_file, reason,
                                                                                         "annotation"))
            if row["label"] == "normal":
                if lesions:
                    report(ann_file, f"annotates {len(lesions)} lesion(s) but the sheet says {name} is normal; "
                                     "the sheet is used and the lesions are not loaded", "annotation")
                lesions = []
            record["lesions"] = lesions
        if record["label"] != "normal" and not record["lesions"]:
            why = "no annotation file" if not ann else "no usable lesion in its annotation"
            report(file, f"the sheet says {record['label']} but there is {why}; image skipped (a tumour image "
                         "without a lesion would teach the detector that its tumour is background)", "image")
            continue
        records.append(record)

    for name, files in sorted(images.items()):
        if name not in seen:
            report(files[0], "image file without a row in the sheet; ignored", "image")
    for name, files in sorted(annotations.items()):
        if name not in seen:
            report(files[0], "annotation file without a row in the sheet; ignored", "annotation")
    if strict and problems:
        raise DatasetError(f"{root}: {len(problems)} problem(s) (strict mode)", problems)
    return records, problems


def summary(records: Sequence[dict], problems: Sequence[Problem] = ()) -> dict:
    """Counts of a dataset: images, classes, centres, annotated images, lesions and the problems as text."""
    classes = Counter(r["label"] for r in records)
    centres = Counter(r.get("centre") for r in records)
    return {
        "images": len(records),
        "classes": {c: classes.get(c, 0) for c in CLASS_NAMES},
        "centres": {k: centres[k] for k in sorted(centres, key=lambda c: (c is None, str(c)))},
        "annotated_images": sum(1 for r in records if r["lesions"]),
        "lesions": sum(len(r["lesions"]) for r in records),
        "problems": [str(p) for p in problems],
    }


def data_card(records: Sequence[dict]):
    """Images per class by subtype, centre and view, plus lesions and a total row, as a long table with
    columns ``attribute, value, normal, benign, malignant, total`` (a pandas DataFrame)."""
    import pandas as pd

    rows = []

    def add(attribute, value, subset):
        counts = Counter(r["label"] for r in subset)
        row = {"attribute": attribute, "value": value, **{c: counts.get(c, 0) for c in CLASS_NAMES}}
        row["total"] = sum(counts.values())
        rows.append(row)

    add("all", "images", records)
    for attribute, key in (("subtype", "subtype"), ("centre", "centre"), ("view", "view")):
        values = sorted({r.get(key) for r in records}, key=lambda v: (v is None, str(v)))
        for value in values:
            add(attribute, "none" if value is None else str(value), [r for r in records if r.get(key) == value])
    lesions = {c: sum(len(r["lesions"]) for r in records if r["label"] == c) for c in CLASS_NAMES}
    rows.append({"attribute": "all", "value": "lesions", **lesions, "total": sum(lesions.values())})
    return pd.DataFrame(rows, columns=["attribute", "value", *CLASS_NAMES, "total"])


def fingerprint(root: str | os.PathLike, progress: bool = False) -> str:
    """SHA-256 over the sorted relative paths and SHA-256 contents of the sheet, annotations and images."""
    root = find_root(root)
    files = [_sheet_file(root)]
    for sub in ("annotations", "images"):
        folder = _child_dir(root, sub)
        if folder is not None:
            files += [p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder)]
    entries = sorted((p.relative_to(root).as_posix(), p) for p in files)
    digest = hashlib.sha256()
    iterator = entries
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(entries, desc="fingerprint", unit="file")
    for rel, path in iterator:
        content = sha256_file(path)
        digest.update(f"{rel}\0{content}\n".encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ sheet

def _sheet_file(folder: Path) -> Path | None:
    names = {p.name.lower(): p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
    for name in SHEET_NAMES:
        if name in names:
            return names[name]
    return None


def _norm(name) -> str:
    return " ".join(str(name).strip().lower().split())


def _read_sheet(path: Path, root: Path, report) -> list[dict]:
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype={"image_id": str})
        else:
            df = pd.read_excel(path, sheet_name=0, engine="openpyxl")
    except Exception as exc:  # openpyxl/pandas raise many types for a damaged file
        raise DatasetError(f"{path}: cannot read the sheet: {type(exc).__name__}: {exc}") from exc
    df = df.rename(columns={c: _norm(c) for c in df.columns})
    missing = [c for c in SHEET_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: the sheet lacks {len(missing)} of the 37 BTXRD columns: {', '.join(missing)}")
    extra = [c for c in df.columns if c not in SHEET_COLUMNS]
    if extra:
        report(path, f"unexpected columns ignored: {', '.join(map(str, extra))}", "sheet")
    onehot = [c for c in SHEET_COLUMNS[4:]]
    flags = df[onehot].apply(pd.to_numeric, errors="coerce")
    bad = df[onehot].notna() & flags.isna()
    flags = flags.fillna(0)
    rows = []
    for i, (raw, flag, badrow) in enumerate(zip(df.to_dict("records"), flags.to_dict("records"),
                                                bad.to_dict("records"))):
        image_id = raw["image_id"]
        excel_row = i + 2
        if image_id is None or (isinstance(image_id, float) and math.isnan(image_id)) or not str(image_id).strip():
            report(path, f"row {excel_row}: empty image_id; row skipped", "sheet")
            continue
        image_id = str(image_id).strip()
        name = Path(image_id).stem if Path(image_id).suffix.lower() in IMAGE_SUFFIXES else image_id
        where = f"row {excel_row} ({image_id})"
        for col, is_bad in badrow.items():
            if is_bad:
                report(path, f"{where}: column {col!r} holds {raw[col]!r}, not 0/1; read as 0", "sheet")
        on = {c: float(v) >= 0.5 for c, v in flag.items()}
        row = {"row": i + 1, "image_id": image_id, "name": name, "where": where}
        row["label"], row["subtype"] = _class_of(on, where, path, report)
        row["site"] = _joined(on, SITE_COLUMNS)
        row["view"] = _joined(on, VIEW_COLUMNS)
        row["centre"] = _as_int(raw["center"], "center", where, path, report)
        row["age"] = _as_int(raw["age"], "age", where, path, report)
        gender = raw["gender"]
        gender = None if gender is None or (isinstance(gender, float) and math.isnan(gender)) else \
            str(gender).strip().upper()
        if gender in ("MALE", "FEMALE"):
            gender = gender[0]
        if gender not in ("M", "F"):
            report(path, f"{where}: gender {raw['gender']!r} is not M or F; left empty", "sheet")
            gender = None
        row["gender"] = gender
        rows.append(row)
    return rows


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


# ------------------------------------------------------------------------------------------------ files

def _rel(path, root: Path) -> str:
    path = Path(path)
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _hidden(path: Path, base: Path) -> bool:
    parts = path.relative_to(base).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _child_dir(root: Path, name: str) -> Path | None:
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name.lower() == name:
            return p
    return None


def _index_files(folder: Path, suffixes, root: Path, report, kind) -> dict[str, list[Path]]:
    """Files under ``folder`` (any depth; nested ``Annotations/Annotations`` included) by stem."""
    index: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or _hidden(p, folder):
            continue
        if p.suffix.lower() in suffixes:
            index[p.stem].append(p)
        else:
            report(p, f"unexpected file in {folder.name}/ (not {', '.join(suffixes)}); ignored", kind)
    # shallowest first, so Annotations/X.json wins over Annotations/Annotations/X.json
    return {k: sorted(v, key=lambda p: (len(p.parts), str(p))) for k, v in index.items()}


def _pick_file(files: list[Path], image_id: str) -> Path:
    for f in files:
        if f.name == image_id:
            return f
    jpegs = [f for f in files if f.suffix.lower() in (".jpeg", ".jpg")]
    return (jpegs or files)[0]


class _BadImage(Exception):
    pass


def _probe_image(path: Path) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) from the header, oriented as displayed; raises _BadImage."""
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size == 0:
        raise _BadImage("empty file")
    try:
        with Image.open(path) as im:
            width, height = im.size
            fmt = im.format
            try:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # a damaged EXIF block does not make the pixels unreadable
                orientation = 1
            if fmt not in ("JPEG", "MPO"):
                im.verify()
    except UnidentifiedImageError:
        raise _BadImage("not a readable image (PIL cannot identify it)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _BadImage(f"unreadable image ({type(exc).__name__}: {exc})") from None
    if width < 1 or height < 1:
        raise _BadImage(f"image has size {width}x{height}")
    if fmt in ("JPEG", "MPO"):
        with open(path, "rb") as handle:
            handle.seek(max(0, size - 4096))
            if b"\xff\xd9" not in handle.read():
                raise _BadImage("truncated JPEG (no end-of-image marker)")
    if orientation not in range(1, 9):
        orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height, orientation


# ------------------------------------------------------------------------------------------------ LabelMe

def _read_labelme(path: Path, width: int, height: int, row: dict, report) -> list[dict]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        report(f"not UTF-8 text ({exc}); no lesion read")
        return []
    except json.JSONDecodeError as exc:
        report(f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); no lesion read")
        return []
    except OSError as exc:
        report(f"cannot read ({exc}); no lesion read")
        return []
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        report("not a LabelMe file (no 'shapes' list); no lesion read")
        return []
    image_path = data.get("imagePath")
    if isinstance(image_path, str) and image_path.strip():
        stem = Path(image_path.replace("\\", "/")).stem
        if stem != path.stem:
            report(f"imagePath {image_path!r} names another image; ignored (images are found by file name)")
    jw, jh = data.get("imageWidth"), data.get("imageHeight")
    if isinstance(jw, (int, float)) and isinstance(jh, (int, float)) and (int(jw), int(jh)) != (width, height):
        report(f"imageWidth x imageHeight {int(jw)}x{int(jh)} differs from the image's {width}x{height}; "
               "coordinates are read as pixels of the image on disk")

    rects, polys = [], []  # (index, group, label, xyxy) / (index, group, label, flat)
    clipped = 0
    for i, shape in enumerate(data["shapes"]):
        where = f"shape {i}"
        if not isinstance(shape, dict):
            report(f"{where} is not an object; skipped")
            continue
        kind = shape.get("shape_type") or "polygon"
        label = shape.get("label")
        group = shape.get("group_id")
        if group is not None and not isinstance(group, (int, str)):
            report(f"{where}: group_id {group!r} is not a number; treated as none")
            group = None
        points = _points(shape.get("points"))
        if points is None:
            report(f"{where} ({kind}): points are not a list of [x, y] number pairs; skipped")
            continue
        if kind not in ("rectangle", "polygon"):
            report(f"{where}: shape_type {kind!r} is not supported (rectangle or polygon); skipped")
            continue
        outside = ((points[:, 0] < -_EPS) | (points[:, 0] > width + _EPS)
                   | (points[:, 1] < -_EPS) | (points[:, 1] > height + _EPS))
        if outside.any():
            clipped += 1
            points = np.column_stack([np.clip(points[:, 0], 0, width), np.clip(points[:, 1], 0, height)])
        if kind == "rectangle":
            if len(points) < 2:
                report(f"{where}: rectangle with {len(points)} point(s); skipped")
                continue
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            if x1 - x0 <= _EPS or y1 - y0 <= _EPS:
                report(f"{where}: rectangle has no area (after clipping to the image); skipped")
                continue
            rects.append((i, group, label, [float(x0), float(y0), float(x1), float(y1)]))
        else:
            if len(points) < 3:
                report(f"{where}: polygon with {len(points)} point(s) (needs 3); skipped")
                continue
            if _area(points) <= _EPS:
                report(f"{where}: polygon has no area (after clipping to the image); skipped")
                continue
            polys.append((i, group, label, [float(v) for v in points.reshape(-1)]))
    if clipped:
        report(f"{clipped} shape(s) reach outside the {width}x{height} image; clipped to it")

    lesions = _group(rects, polys)
    return [_lesion(lesion, row, report) for lesion in lesions]


def _points(raw) -> np.ndarray | None:
    if not isinstance(raw, list) or not raw:
        return None
    out = []
    for p in raw:
        if (not isinstance(p, (list, tuple)) or len(p) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
            return None
        out.append((float(p[0]), float(p[1])))
    arr = np.asarray(out, dtype=float)
    return arr if np.isfinite(arr).all() else None


def _area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _bounds(flat: Sequence[float]) -> list[float]:
    xs, ys = flat[0::2], flat[1::2]
    return [min(xs), min(ys), max(xs), max(ys)]


def _group(rects, polys) -> list[dict]:
    """Shapes → lesions (the rule in the module docstring). Each lesion: rects, polys, labels, order."""
    lesions: dict = {}
    for i, group, label, box in rects:
        key = ("g", group) if group is not None else ("r", i)
        lesion = lesions.setdefault(key, {"order": i, "rects": [], "polys": [], "labels": []})
        lesion["rects"].append(box)
        lesion["labels"].append(label)
    loose = []
    for i, group, label, flat in polys:
        if group is not None:
            lesion = lesions.setdefault(("g", group), {"order": i, "rects": [], "polys": [], "labels": []})
            lesion["polys"].append(flat)
            lesion["labels"].append(label)
        else:
            loose.append((i, label, flat))
    boxed = [lesion for lesion in lesions.values() if lesion["rects"]]
    for i, label, flat in loose:
        px0, py0, px1, py1 = _bounds(flat)
        parea = max((px1 - px0) * (py1 - py0), _EPS)
        scored = []  # (coverage of the polygon's bounds, IoU of bounds and rectangle, lesion)
        for lesion in boxed:
            x0, y0, x1, y1 = _union(lesion["rects"])
            inter = max(0.0, min(x1, px1) - max(x0, px0)) * max(0.0, min(y1, py1) - max(y0, py0))
            if inter > 0:
                union = parea + (x1 - x0) * (y1 - y0) - inter
                scored.append((inter / parea, inter / union, lesion))
        best = None
        if scored:
            top = max(c for c, _, _ in scored)
            # near-equal coverage (nested rectangles): the rectangle that fits the polygon best
            best = max((s for s in scored if s[0] >= top - 0.05), key=lambda s: s[1])[2]
        if best is None:
            lesions[("p", i)] = {"order": i, "rects": [], "polys": [flat], "labels": [label]}
        else:
            best["polys"].append(flat)
            best["labels"].append(label)
    return sorted(lesions.values(), key=lambda lesion: lesion["order"])


def _union(boxes) -> list[float]:
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _lesion(lesion: dict, row: dict, report) -> dict:
    label, subtype = row["label"], row["subtype"]
    first = lesion["order"]
    if len(lesion["rects"]) > 1:
        report(f"lesion of shape {first}: {len(lesion['rects'])} rectangles in one group; using their union")
    if lesion["rects"]:
        box = _union(lesion["rects"])
        if not lesion["polys"]:
            report(f"lesion of shape {first}: rectangle without polygon; box only, no mask")
    else:
        box = _union([_bounds(p) for p in lesion["polys"]])
    checked = sorted({str(x) for x in lesion["labels"]}) if label != "normal" else []  # normal: reported once
    for raw in checked:
        name = " ".join(raw.strip().lower().replace("_", " ").split())
        if name in SUBTYPE_CLASS:
            if subtype is not None and name != subtype:
                what = "class and subtype" if SUBTYPE_CLASS[name] != label else "subtype"
                report(f"lesion of shape {first}: label {raw!r} ({SUBTYPE_CLASS[name]}) disagrees with the sheet's "
                       f"{what} ({subtype!r}, {label}); the sheet is used")
            elif subtype is None and SUBTYPE_CLASS[name] != label:
                report(f"lesion of shape {first}: label {raw!r} ({SUBTYPE_CLASS[name]}) disagrees with the sheet's "
                       f"class ({label}); the sheet is used")
        elif name in ("benign", "malignant"):
            if name != label:
                report(f"lesion of shape {first}: label {raw!r} disagrees with the sheet's class ({label}); "
                       "the sheet is used")
        else:
            report(f"lesion of shape {first}: unknown label {raw!r} (not a BTXRD subtype); "
                   f"the sheet's {label} is used")
    return {"category": label, "subtype": subtype, "box": [float(v) for v in box],
            "polygons": [list(p) for p in lesion["polys"]]}


# ------------------------------------------------------------------------------------------------ COCO

def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.5) -> list[list[float]]:
    """Outline polygons (COCO's flat ``[x0, y0, x1, y1, ...]``) of a binary mask, the inverse of rasterising
    them: contours at the pixel edges (scikit-image), shifted by half a pixel because COCO and LabelMe put
    pixel ``i``'s centre at ``i + 0.5``, and simplified to within ``tolerance`` pixels."""
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(np.asarray(mask, dtype=bool), 1).astype(float)
    polygons = [approximate_polygon(c - 0.5, tolerance=tolerance)[:, ::-1].reshape(-1).tolist()
                for c in find_contours(padded, 0.5)]
    return [p for p in polygons if len(p) >= 6]


def write_coco(records: Sequence[dict], out_json: str | os.PathLike,
               categories: Sequence[str] = ("benign", "malignant")) -> Path:
    """Write the records' lesions as a COCO instance file (atomically) and return its path.

    Image ids are the records' ``image_id``; annotation ids count from 1; category ids from 1 in the order
    of ``categories`` (1 benign, 2 malignant). ``segmentation`` holds the lesion's polygons (a box-only lesion
    gets its box as a 4-corner polygon); ``area`` is the mask's pixel area (pycocotools); ``bbox`` is XYWH.
    Images without lesions are listed with no annotation (negatives).
    """
    from pycocotools import mask as mask_utils

    cat_ids = {name: i + 1 for i, name in enumerate(categories)}
    images, annotations = [], []
    ids = set()
    for rec in records:
        if rec["image_id"] in ids:
            raise ValueError(f"write_coco: image_id {rec['image_id']} appears twice")
        ids.add(rec["image_id"])
        w, h = int(rec["width"]), int(rec["height"])
        images.append({"id": int(rec["image_id"]), "file_name": Path(rec["file"]).name, "width": w, "height": h,
                       "label": rec.get("label")})
        for lesion in rec["lesions"]:
            if lesion["category"] not in cat_ids:
                raise ValueError(f"write_coco: {rec['name']} has a lesion of category {lesion['category']!r}, "
                                 f"not one of {list(categories)}")
            x0, y0, x1, y1 = lesion["box"]
            polygons = [list(map(float, p)) for p in lesion["polygons"]] or [[x0, y0, x1, y0, x1, y1, x0, y1]]
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(rec["image_id"]),
                "category_id": cat_ids[lesion["category"]], "segmentation": polygons,
                "area": float(mask_utils.area(rle)), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
            })
    coco = {
        "info": {"description": "bonetumor ground truth (from bonetumor.data.btxrd.write_coco)"},
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "tumour"} for name, i in cat_ids.items()],
    }
    return write_json(out_json, coco, indent=None)


# ------------------------------------------------------------------------------------------------ pixels

def load_image(file: str | os.PathLike, max_side: int | None = None):
    """An image as an 8-bit grayscale PIL image, EXIF orientation applied (the frame LabelMe annotates in).

    With ``max_side``, a JPEG is decoded at a reduced scale (PIL ``draft``) no smaller than needed for a longest
    side of ``max_side``; the caller still resizes exactly.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(file) as im:
            if max_side and im.format in ("JPEG", "MPO"):
                w, h = im.size
                scale = max_side / max(w, h)
                if scale < 1:
                    im.draft("L", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
                return Image.fromarray(np.round(arr).astype(np.uint8), mode="L")
            return im.convert("L")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{file}: cannot decode the image ({type(exc).__name__}: {exc})") from exc


def resized_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    """``(width, height)`` with the longest side ``image_size`` and the aspect kept."""
    scale = image_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _file_key(path: Path) -> str:
    """SHA-1 of the file's size and bytes (head and tail 1 MiB for larger files): content, not mtime."""
    size = path.stat().st_size
    digest = hashlib.sha1(f"{size}\0".encode())
    with open(path, "rb") as handle:
        if size <= 2 << 20:
            digest.update(handle.read())
        else:
            digest.update(handle.read(1 << 20))
            handle.seek(size - (1 << 20))
            digest.update(handle.read())
    return digest.hexdigest()


_CACHE_VERSION = "v1"


def resize_records(records: Sequence[dict], image_size: int, cache_dir: str | os.PathLike | None = None,
                   progress: bool = True) -> list[dict]:
    """Each image resized once (longest side ``image_size``, aspect kept, 8-bit grayscale PNG) into the cache;
    new records point ``file`` at the cached image with scaled boxes and polygons.

    The cache file is ``<cache_dir>/<image_size>px/<key>.png`` where ``key`` hashes the source file's content
    (see :func:`_file_key`) and the cache version, so a second call finds it without decoding the original;
    a changed source file gets a new key. The original file and size are kept as ``orig_file``,
    ``orig_width`` and ``orig_height``.
    """
    if int(image_size) < 1:
        raise ValueError(f"image_size must be positive, not {image_size}")
    image_size = int(image_size)
    folder = Path(cache_dir if cache_dir is not None else paths.CACHE) / f"{image_size}px"
    folder.mkdir(parents=True, exist_ok=True)
    iterator: Iterable = records
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(records, desc=f"resize to {image_size}px", unit="image")
    out = []
    for rec in iterator:
        source = Path(rec["file"])
        w, h = int(rec["width"]), int(rec["height"])
        nw, nh = resized_size(w, h, image_size)
        try:
            key = hashlib.sha1(f"{_CACHE_VERSION}\0{_file_key(source)}".encode()).hexdigest()
        except OSError as exc:
            raise DatasetError(f"{source}: cannot read ({exc})") from exc
        target = folder / f"{key}.png"
        if not target.is_file():
            image = load_image(source, max_side=image_size)
            iw, ih = image.size
            if abs((iw / ih) / (w / h) - 1) > 0.05:  # e.g. an orientation the header did not show
                raise DatasetError(f"{source}: decoded image is {iw}x{ih}, not the shape of the record's {w}x{h} "
                                   "(was the file replaced after reading the dataset?)")
            from PIL import Image

            image = image.resize((nw, nh), Image.Resampling.LANCZOS)
            with atomic_path(target) as tmp:
                image.save(tmp, format="PNG")
        sx, sy = nw / w, nh / h
        new = dict(rec)
        new.update(file=str(target), width=nw, height=nh, orig_file=rec.get("orig_file", rec["file"]),
                   orig_width=rec.get("orig_width", w), orig_height=rec.get("orig_height", h))
        new.pop("exif_orientation", None)  # the cached pixels are already upright
        new["lesions"] = [_scale_lesion(lesion, sx, sy) for lesion in rec["lesions"]]
        out.append(new)
    return out


def _scale_lesion(lesion: dict, sx: float, sy: float) -> dict:
    x0, y0, x1, y1 = lesion["box"]
    new = dict(lesion)
    new["box"] = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
    new["polygons"] = [[v * (sx if j % 2 == 0 else sy) for j, v in enumerate(p)] for p in lesion["polygons"]]
    return new


# ------------------------------------------------------------------------------------------------ download

def download_btxrd(dest: str | os.PathLike | None = None, url: str = FIGSHARE_URL,
                   md5: str | None = FIGSHARE_MD5, progress: bool = True) -> Path:
    """Download and unzip BTXRD into ``dest`` (default ``data/``) with pooch, checking the MD5; return its root.

    Nothing is downloaded when ``dest`` already holds a readable BTXRD folder. ``md5=None`` skips the check
    (for a mirror whose checksum you do not know). If the archive holds another zip (figshare's
    whole-article download wraps ``BTXRD.zip``), that one is unzipped too.
    """
    import pooch

    dest = Path(dest if dest is not None else paths.DATA).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return find_root(dest)
    except DatasetError:
        pass
    known = None
    if md5:
        md5 = md5.lower().removeprefix("md5:")
        known = f"md5:{md5}"
    try:
        pooch.retrieve(url, known_hash=known, fname=DOWNLOAD_NAME, path=dest,
                       processor=pooch.Unzip(extract_dir="."), progressbar=progress)
    except ValueError as exc:
        if "hash" in str(exc).lower():
            raise DownloadError(f"{url}: the download does not match MD5 {md5} and was discarded ({exc}). "
                                "Retry, or give the right --url/--md5.") from exc
        raise DownloadError(f"{url}: {exc}") from exc
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{url}: the download is not a zip archive ({exc})") from exc
    except Exception as exc:  # requests' network errors
        raise DownloadError(f"{url}: download failed: {type(exc).__name__}: {exc}") from exc
    try:
        return find_root(dest)
    except DatasetError:
        pass
    inner = [p for p in dest.rglob("*.zip") if p.name != DOWNLOAD_NAME and not _hidden(p, dest)]
    for archive in inner:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(archive.parent)
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{archive}: not a zip archive ({exc})") from exc
    try:
        return find_root(dest)
    except DatasetError as exc:
        raise DownloadError(f"{url}: the archive unzipped into {dest} but holds no BTXRD layout ({exc})") from exc
