"""A BTXRD-layout folder → records and problems (:func:`read_dataset`), and the folder's content
:func:`fingerprint`. The rules are in :mod:`bonetumor.data.btxrd`; the sheet, LabelMe files and image
headers are read by :mod:`.sheet`, :mod:`.labelme` and :mod:`.images`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bonetumor.data.btxrd.files import (IMAGE_SUFFIXES, child_dir, find_root, hidden, index_files, pick_file,
                                        relative, sheet_file)
from bonetumor.data.btxrd.images import BadImage, probe_image
from bonetumor.data.btxrd.labelme import read_labelme
from bonetumor.data.btxrd.problems import DatasetError, Problem
from bonetumor.data.btxrd.sheet import read_sheet, sheet_rows
from bonetumor.io import sha256_file


def read_dataset(root: str | os.PathLike, strict: bool = False) -> tuple[list[dict], list[Problem]]:
    """Read a BTXRD-layout folder (or its parent) into records (see :mod:`bonetumor.data`) and problems.

    Raises :class:`DatasetError` when the folder cannot be read at all (no sheet, missing columns, no
    ``images/`` folder) and, with ``strict=True``, when any problem was found.
    """
    root = find_root(root)
    problems: list[Problem] = []

    def report(file, reason, kind):
        problems.append(Problem(relative(file, root), reason, kind))

    sheet_path = sheet_file(root)
    rows = sheet_rows(read_sheet(sheet_path), sheet_path, report)
    images, annotations = _index_folders(root, report)
    records: list[dict] = []
    seen: dict[str, int] = {}
    for row in rows:
        name = row["name"]
        if name in seen:
            report(sheet_path, f"{row['where']}: duplicate image_id {row['image_id']!r} (first at row "
                               f"{seen[name] + 1}); this row is ignored", "sheet")
            continue
        seen[name] = row["row"]
        if row["label"] is None:  # inconsistent class columns, already reported
            continue
        record = _record(row, images.get(name), annotations.get(name), root, sheet_path, report)
        if record is not None:
            records.append(record)
    _report_unlisted(images, annotations, seen, report)
    if strict and problems:
        raise DatasetError(f"{root}: {len(problems)} problem(s) (strict mode)", problems)
    return records, problems


def _index_folders(root: Path, report) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """The image and annotation files by id; :class:`DatasetError` without an ``images/`` folder."""
    image_dir = child_dir(root, "images")
    if image_dir is None:
        raise DatasetError(f"{root}: no images/ folder")
    images = index_files(image_dir, IMAGE_SUFFIXES, root, report, "image")
    ann_dir = child_dir(root, "annotations")
    annotations = index_files(ann_dir, (".json",), root, report, "annotation") if ann_dir is not None else {}
    return images, annotations


def _record(row: dict, files: list[Path] | None, ann: list[Path] | None, root: Path, sheet_path: Path,
            report) -> dict | None:
    """The record of one sheet row, or ``None`` (reported) when its image cannot be used."""
    name = row["name"]
    if not files:
        report(sheet_path, f"{row['where']}: no image file {name}.* under images/; row skipped", "sheet")
        return None
    file = pick_file(files, row["image_id"])
    if len(files) > 1:
        report(file, f"several files for id {name} ({', '.join(f.name for f in files)}); using {file.name}",
               "image")
    try:
        width, height, orientation = probe_image(file)
    except BadImage as exc:
        report(file, f"{exc}; image skipped", "image")
        return None
    record = {
        "image_id": row["row"], "name": name, "file": str(file), "width": width, "height": height,
        "label": row["label"], "subtype": row["subtype"], "centre": row["centre"], "age": row["age"],
        "gender": row["gender"], "site": row["site"], "view": row["view"], "patient": None,
        "annotation": None, "lesions": [],
    }
    if orientation != 1:
        record["exif_orientation"] = orientation
    if ann:
        record["annotation"], record["lesions"] = _annotation(ann, row, width, height, root, report)
    if record["label"] != "normal" and not record["lesions"]:
        why = "no annotation file" if not ann else "no usable lesion in its annotation"
        report(file, f"the sheet says {record['label']} but there is {why}; image skipped (a tumour image "
                     "without a lesion would teach the detector that its tumour is background)", "image")
        return None
    return record


def _annotation(ann: list[Path], row: dict, width: int, height: int, root: Path, report) -> tuple[str, list[dict]]:
    """The annotation file used for a row (the shallowest) and its lesions (none for a normal image)."""
    ann_file = ann[0]
    if len(ann) > 1:
        report(ann_file, f"several annotation files for id {row['name']} "
                         f"({', '.join(relative(a, root) for a in ann)}); using this one", "annotation")
    lesions = read_labelme(ann_file, width, height, row, lambda reason: report(ann_file, reason, "annotation"))
    if row["label"] == "normal":
        if lesions:
            report(ann_file, f"annotates {len(lesions)} lesion(s) but the sheet says {row['name']} is normal; "
                             "the sheet is used and the lesions are not loaded", "annotation")
        lesions = []
    return str(ann_file), lesions


def _report_unlisted(images: dict, annotations: dict, seen: dict, report) -> None:
    """Report the image and annotation files whose id has no row in the sheet."""
    for name, files in sorted(images.items()):
        if name not in seen:
            report(files[0], "image file without a row in the sheet; ignored", "image")
    for name, files in sorted(annotations.items()):
        if name not in seen:
            report(files[0], "annotation file without a row in the sheet; ignored", "annotation")


def fingerprint(root: str | os.PathLike, progress: bool = False) -> str:
    """SHA-256 over the sorted relative paths and SHA-256 contents of the sheet, annotations and images."""
    root = find_root(root)
    files = [sheet_file(root)]
    for sub in ("annotations", "images"):
        folder = child_dir(root, sub)
        if folder is not None:
            files += [p for p in folder.rglob("*") if p.is_file() and not hidden(p, folder)]
    entries = sorted((p.relative_to(root).as_posix(), p) for p in files)
    digest = hashlib.sha256()
    iterator = entries
    if progress:
        from bonetumor.progress import progress_bar

        iterator = progress_bar(entries, desc="fingerprint", unit="file")
    for rel, path in iterator:
        content = sha256_file(path)
        digest.update(f"{rel}\0{content}\n".encode())
    return digest.hexdigest()
