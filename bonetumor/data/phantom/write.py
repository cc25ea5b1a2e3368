"""Writing the phantom in the BTXRD layout: LabelMe 5.4.1 documents from the lesion masks, sheet rows and
``dataset.xlsx`` with reproducible bytes, JPEG images, and :func:`generate`, which writes the whole folder
atomically (built in a temporary sibling, renamed into place at the end, with the folder modes a plain
``mkdir`` gives); :func:`same_phantom` tells whether a folder already holds a given phantom."""

from __future__ import annotations

import concurrent.futures as cf
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bonetumor.data.layout import SHEET_COLUMNS
from bonetumor.io import plain_mode
from bonetumor.data.phantom import radiograph, radiograph_v2
from bonetumor.data.phantom.plan import SITE_LIMB, TEMPLATE_JOINT, plan, proportions_of
from bonetumor.data.phantom.plan_v2 import plan_v2
from bonetumor.data.phantom.radiograph import CENTRE_STYLE

VERSION = "1"
#: The phantom versions :func:`generate` writes: 1 (long-bone joint regions, conspicuous lesions) and 2
#: (BTXRD's site mix, measured lesion sizes, conspicuity, distractors; :mod:`.plan_v2`).
VERSIONS = (1, 2)
LABELME_VERSION = "5.4.1"
_FIXED_DATE = "2025-01-01T00:00:00Z"


def _meta(n_images: int, seed: int, size: int, proportions: dict[str, float] | None, version: int = 1) -> dict:
    """The settings part of ``phantom.json`` (version 1's bytes unchanged)."""
    if version not in VERSIONS:
        raise ValueError(f"phantom version must be one of {VERSIONS}, got {version!r}")
    return {"generator": "bonetumor.data.phantom", "version": str(version), "seed": int(seed), "size": int(size),
            "n_images": int(n_images), "proportions": proportions_of(proportions)}


def same_phantom(out: Path, n_images: int, seed: int = 0, size: int = 512,
                 proportions: dict[str, float] | None = None, version: int = 1) -> bool:
    """Whether ``out`` holds a complete phantom written by :func:`generate` with these settings (its
    ``dataset.xlsx``, written last, is there and its ``phantom.json`` names the same settings)."""
    out = Path(out).expanduser()
    try:
        meta = json.loads((out / "phantom.json").read_text())
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(meta, dict) or not (out / "dataset.xlsx").is_file():
        return False
    want = _meta(n_images, seed, size, proportions, version)
    return all(meta.get(k) == v for k, v in want.items())


def generate(out: Path, n_images: int, seed: int = 0, size: int = 512,
             proportions: dict[str, float] | None = None, progress: bool = True, *,
             workers: int | None = None, overwrite: bool = False, version: int = 1) -> Path:
    """Write a phantom dataset in the BTXRD layout to ``out`` and return ``out``.

    The dataset is built in a temporary sibling folder and renamed into place at the end, so an interrupted
    run never leaves a complete-looking dataset (``dataset.xlsx`` present). ``out`` must not exist or be an
    empty folder; with ``overwrite``, a folder holding an earlier phantom (``phantom.json``) is replaced too
    (a non-empty folder without one never is). The same ``seed`` (and size, proportions) gives
    byte-identical files, whatever ``workers``. Folders get the modes a plain ``mkdir`` would give.
    ``version`` 2 writes phantom v2 (:mod:`.plan_v2`, :mod:`.radiograph_v2`) in the same layout.
    """
    out = Path(out).expanduser().resolve()
    size = int(size)
    if size < 64:
        raise ValueError(f"size must be at least 64 pixels, got {size}")
    replace = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if replace and not (overwrite and out.is_dir() and (out / "phantom.json").is_file()):
        what = ("holds an earlier phantom (pass overwrite=True, or --force, to replace it)"
                if out.is_dir() and (out / "phantom.json").is_file() else "is not an empty folder")
        raise FileExistsError(f"{out} already exists and {what}; remove it or choose another folder")
    _meta(n_images, seed, size, proportions, version)  # checks the version before anything is written
    entries = plan_v2(n_images, seed, proportions) if version == 2 else plan(n_images, seed, proportions)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(tmp, plain_mode(directory=True))  # mkdtemp's 0700 would otherwise become the dataset's mode
    try:
        (tmp / "images").mkdir()
        (tmp / "Annotations").mkdir()
        rows = _write_images(entries, size, tmp, out.name, progress, workers)
        meta = {**_meta(len(entries), seed, size, proportions, version),
                "duplicates": {e["name"]: e["duplicate_of"] for e in entries if e["duplicate_of"]}}
        (tmp / "phantom.json").write_text(json.dumps(meta, indent=2) + "\n")
        write_sheet(tmp / "dataset.xlsx", rows)  # last: its presence marks a complete dataset
        if replace:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_images(entries: list[dict], size: int, folder: Path, name: str, progress: bool,
                  workers: int | None) -> list[list]:
    """Render and write every entry's image and annotation (in worker processes for larger datasets);
    return the sheet rows in entry order."""
    jobs = [(e, size, str(folder)) for e in entries]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(entries) >= 64 else 1
    from bonetumor.progress import progress_bar

    bar = progress_bar(total=len(jobs), desc=f"phantom {name}", unit="img", enabled=progress)
    try:
        rows = []
        if workers <= 1:
            for job in jobs:
                rows.append(_make_one(job))
                bar.update()
        else:
            with cf.ProcessPoolExecutor(max_workers=workers) as pool:
                for row in pool.map(_make_one, jobs, chunksize=8):
                    rows.append(row)
                    bar.update()
    finally:
        bar.close()
    return rows


def _make_one(job) -> list:
    entry, size, folder = job
    render = radiograph_v2.render if entry.get("version") == 2 else radiograph.render
    img, lesions = render(entry, size)
    quality = CENTRE_STYLE[entry["centre"]]["quality"]
    if entry["duplicate_of"] is not None:  # the same picture re-saved
        quality = quality - 12
    folder = Path(folder)
    _save_jpeg(img, folder / "images" / f"{entry['name']}.jpeg", quality)
    if entry["label"] != "normal":
        doc = labelme(entry["name"], img.shape[1], img.shape[0], lesions)
        (folder / "Annotations" / f"{entry['name']}.json").write_text(json.dumps(doc, indent=2) + "\n")
    return sheet_row(entry)


def _polygons(mask: np.ndarray) -> list[list[list[float]]]:
    """Outer boundary polygons of a mask, in pixel-edge coordinates (pixel (r, c) spans [c, c+1] × [r, r+1])."""
    from skimage.measure import approximate_polygon, find_contours

    H, W = mask.shape
    rows_any, cols_any = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows_any):
        return []
    r0, c0 = rows_any[0], cols_any[0]
    filled = ndimage.binary_fill_holes(mask[r0:rows_any[-1] + 1, c0:cols_any[-1] + 1])
    polys = []
    for contour in find_contours(np.pad(filled, 1).astype(np.float32), 0.5):
        contour = approximate_polygon(contour - 1.0, tolerance=0.7) + 0.5 + np.array([r0, c0])
        if len(contour) < 4:
            continue
        rows, cols = np.clip(contour[:, 0], 0, H), np.clip(contour[:, 1], 0, W)
        area = 0.5 * abs(np.dot(cols, np.roll(rows, 1)) - np.dot(rows, np.roll(cols, 1)))
        if area < 4:
            continue
        pts = [[round(float(c), 1), round(float(r), 1)] for r, c in zip(rows[:-1], cols[:-1])]
        polys.append(pts)
    return polys


def labelme(name: str, width: int, height: int, lesions: list[dict]) -> dict:
    """The LabelMe 5.4.1 document of one image: per lesion a rectangle and its polygon(s)."""
    shapes = []
    for lesion in lesions:
        polys = _polygons(lesion["mask"])
        if not polys:
            continue
        xs = [p[0] for poly in polys for p in poly]
        ys = [p[1] for poly in polys for p in poly]
        shapes.append({"label": lesion["subtype"], "points": [[min(xs), min(ys)], [max(xs), max(ys)]],
                       "group_id": None, "description": "", "shape_type": "rectangle", "flags": {}, "mask": None})
        for poly in polys:
            shapes.append({"label": lesion["subtype"], "points": poly, "group_id": None, "description": "",
                           "shape_type": "polygon", "flags": {}, "mask": None})
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": f"{name}.jpeg",
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


def sheet_row(entry: dict) -> list:
    """The entry's row of ``dataset.xlsx`` (the 37 columns, one-hot flags as 0/1)."""
    on = set()
    on.add(entry["site"])
    if entry.get("version") == 2:
        on |= {entry["region_column"]} | ({entry["joint_column"]} if entry["joint_column"] else set())
    else:
        on.add(SITE_LIMB[entry["site"]])
        if entry["joint_col"]:
            on.add(TEMPLATE_JOINT[entry["template"]])
    if entry["label"] != "normal":
        on |= {"tumor", entry["label"], entry["subtype"]}
    on.add(entry["view"])
    return [f"{entry['name']}.jpeg", entry["centre"], entry["age"], entry["gender"]] + \
        [int(c in on) for c in SHEET_COLUMNS[4:]]


def write_sheet(path: Path, rows: list[list]) -> None:
    """``dataset.xlsx`` with reproducible bytes (fixed document dates and zip timestamps)."""
    import datetime

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(SHEET_COLUMNS))
    for row in rows:
        ws.append(row)
    fixed = datetime.datetime(2025, 1, 1)
    wb.properties.created = fixed
    wb.properties.modified = fixed
    wb.properties.creator = "bonetumor phantom"
    buf = io.BytesIO()
    wb.save(buf)
    buf.seek(0)
    path.write_bytes(_reproducible_zip(buf))


def _reproducible_zip(buf: io.BytesIO) -> bytes:
    """The workbook's zip rewritten with sorted members, fixed timestamps and fixed document dates."""
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in sorted(zin.infolist(), key=lambda i: i.filename):
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:)",
                              lambda m: m.group(1) + _FIXED_DATE.encode() + m.group(3), data)
            zi = zipfile.ZipInfo(info.filename, date_time=(2025, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zi.create_system = 3
            zout.writestr(zi, data, compresslevel=6)
    return out.getvalue()


def _save_jpeg(img: np.ndarray, path: Path, quality: int) -> None:
    Image.fromarray(img, mode="L").save(path, format="JPEG", quality=int(quality), optimize=False,
                                        progressive=False, subsampling=0)
