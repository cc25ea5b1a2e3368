"""Where things are in a BTXRD-layout folder: its root (the folder holding the sheet), the sheet file, the
``images/`` and ``Annotations/`` folders (any letter case), and their files indexed by image id.

Hidden files and ``__MACOSX`` folders are ignored everywhere; files are found by id (the file name without
its extension, matching the sheet's ``image_id`` without its extension), never through a JSON's ``imagePath``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from bonetumor.data.btxrd.problems import DatasetError

#: The sheet's file names, in order of preference.
SHEET_NAMES = ("dataset.xlsx", "dataset.csv")
#: Suffixes (lower case) of the image files the reader accepts.
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp")


def find_root(path: str | os.PathLike) -> Path:
    """The BTXRD root for ``path``: ``path`` itself when it holds the sheet, else ``path/BTXRD``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder (give the BTXRD folder or its parent)")
    candidates = [path] + [p for p in sorted(path.iterdir()) if p.is_dir() and p.name.lower() == "btxrd"]
    for folder in candidates:
        if sheet_file(folder) is not None:
            return folder.resolve()
    raise DatasetError(f"{path}: no {' or '.join(SHEET_NAMES)} in it or in {path / 'BTXRD'}; "
                       "is this a BTXRD-layout folder?")


def sheet_file(folder: Path) -> Path | None:
    """The sheet in ``folder`` (``dataset.xlsx``, else ``dataset.csv``, any letter case), or ``None``."""
    names = {p.name.lower(): p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
    for name in SHEET_NAMES:
        if name in names:
            return names[name]
    return None


def child_dir(root: Path, name: str) -> Path | None:
    """The sub-folder of ``root`` called ``name`` in any letter case (the first in sorted order), or ``None``."""
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name.lower() == name:
            return p
    return None


def hidden(path: Path, base: Path) -> bool:
    """Whether ``path`` lies in a hidden file or folder (or ``__MACOSX``) below ``base``."""
    parts = path.relative_to(base).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def relative(path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX form) when inside it, else as given."""
    path = Path(path)
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def index_files(folder: Path, suffixes, root: Path, report, kind) -> dict[str, list[Path]]:
    """Files under ``folder`` (any depth; nested ``Annotations/Annotations`` included) by stem; files with
    another suffix are reported as ``report(file, reason, kind)`` and left out."""
    index: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or hidden(p, folder):
            continue
        if p.suffix.lower() in suffixes:
            index[p.stem].append(p)
        else:
            report(p, f"unexpected file in {folder.name}/ (not {', '.join(suffixes)}); ignored", kind)
    # shallowest first, so Annotations/X.json wins over Annotations/Annotations/X.json
    return {k: sorted(v, key=lambda p: (len(p.parts), str(p))) for k, v in index.items()}


def pick_file(files: list[Path], image_id: str) -> Path:
    """Of several files for one id: the one named exactly ``image_id``, else the first JPEG, else the first."""
    for f in files:
        if f.name == image_id:
            return f
    jpegs = [f for f in files if f.suffix.lower() in (".jpeg", ".jpg")]
    return (jpegs or files)[0]


def find_image(root: str | os.PathLike, image_id: str) -> Path:
    """The image file of the sheet's ``image_id`` (with or without its extension) under the dataset's
    ``images/`` folder, chosen as the reader chooses it; ``FileNotFoundError`` when there is none."""
    root = find_root(root)
    image_dir = child_dir(root, "images")
    if image_dir is None:
        raise DatasetError(f"{root}: no images/ folder")
    image_id = str(image_id).strip()
    name = Path(image_id).stem if Path(image_id).suffix.lower() in IMAGE_SUFFIXES else image_id
    files = index_files(image_dir, IMAGE_SUFFIXES, root, lambda *args: None, "image").get(name)
    if not files:
        raise FileNotFoundError(f"{root}: no image file {name}.* under images/")
    return pick_file(files, image_id)
