"""The paper's image preprocessing (:func:`~bonetumor.preprocess.radiograph.preprocess_radiograph`) as the
model's input (``data.preprocess``): computed once per resized image and cached beside the resize cache, so
that training pays for it once, not every epoch."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from bonetumor import paths
from bonetumor.io import atomic_path
from bonetumor.preprocess.radiograph import preprocess_radiograph, read_grayscale

#: Bumped whenever preprocess_radiograph's defaults change, so old cache files are never reused.
PREPROCESS_VERSION = 1


def preprocessed_file(source: str | os.PathLike, folder: Path) -> Path:
    """The cache file of ``source`` preprocessed (an 8-bit grayscale PNG), written if missing. Its name
    hashes the source's name — the resize cache names its files by their content — and the version; any
    other source is hashed by its bytes."""
    source = Path(source)
    identity = source.name if source.parent.name.endswith("px") else hashlib.sha1(source.read_bytes()).hexdigest()
    key = hashlib.sha1(f"{PREPROCESS_VERSION}:{identity}".encode()).hexdigest()
    target = folder / f"{key}.png"
    if not target.is_file():
        image = preprocess_radiograph(read_grayscale(source))
        with atomic_path(target) as tmp:
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp, format="PNG")
    return target


def preprocessed_records(records: Sequence[dict], cache_dir: str | os.PathLike | None = None,
                         progress: bool = True) -> list[dict]:
    """The records with ``file`` pointing at their preprocessed image (same size, so boxes and polygons
    still fit); the unpreprocessed file is kept as ``unpreprocessed_file``."""
    folder = Path(cache_dir if cache_dir is not None else paths.CACHE) / f"preprocessed-v{PREPROCESS_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    iterator: Iterable = records
    if progress:
        from bonetumor.progress import progress_bar

        iterator = progress_bar(records, desc="preprocess (Figure 4b)", unit="image")
    return [{**rec, "file": str(preprocessed_file(rec["file"], folder)), "unpreprocessed_file": rec["file"]}
            for rec in iterator]
