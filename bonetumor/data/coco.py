"""COCO from records — the one definition of the ground truth that training, evaluation and the export
share: a lesion's mask is the training target's rasteriser (:func:`lesion_rle`), its box the mask's tight
bounds (:func:`lesion_box`), and :func:`ground_truth` builds the COCO instance set that pycocotools scores
(:func:`coco_ground_truth`) and that :func:`write_coco` exports. Records are scaled into the frame of the
image the model saw by :func:`record_in_frame` (the resize cache scales its records the same way).

Also the outline polygons of a binary mask (:func:`mask_to_polygons`) and the geometry of COCO's flat
polygons (``[x0, y0, x1, y1, ...]``) and XYXY boxes that the reader's LabelMe grouping uses.

Records are those of :mod:`bonetumor.data` (lesion ``box`` XYXY, ``polygons`` flat); this module imports
nothing from the readers, so both the BTXRD reader and the evaluation can build on it.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from bonetumor import LABEL_TO_ID
from bonetumor.io import write_json

#: Category ids of the COCO ground truth (the model's labels; 0 is background and never a category).
CATEGORIES = [{"id": LABEL_TO_ID[name], "name": name, "supercategory": "tumour"} for name in ("benign", "malignant")]


def polygon_area(points: np.ndarray) -> float:
    """Area of a polygon given as an ``(n, 2)`` array of ``(x, y)`` points (shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_bounds(flat: Sequence[float]) -> list[float]:
    """The XYXY bounds of a flat polygon ``[x0, y0, x1, y1, ...]``."""
    xs, ys = flat[0::2], flat[1::2]
    return [min(xs), min(ys), max(xs), max(ys)]


def box_union(boxes) -> list[float]:
    """The smallest XYXY box holding all of ``boxes``."""
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.5) -> list[list[float]]:
    """Outline polygons (COCO's flat ``[x0, y0, x1, y1, ...]``) of a binary mask, the inverse of rasterising
    them: contours at the pixel edges (scikit-image), shifted by half a pixel because COCO and LabelMe put
    pixel ``i``'s centre at ``i + 0.5``, and simplified to within ``tolerance`` pixels."""
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(np.asarray(mask, dtype=bool), 1).astype(float)
    polygons = [approximate_polygon(c - 0.5, tolerance=tolerance)[:, ::-1].reshape(-1).tolist()
                for c in find_contours(padded, 0.5)]
    return [p for p in polygons if len(p) >= 6]


# ---- masks as COCO RLE --------------------------------------------------------------------------------

def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE of one binary (H, W) mask, ``counts`` as ``str`` so that it goes into JSON."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_mask(rle: Mapping) -> np.ndarray:
    """Binary (H, W) ``bool`` mask of one RLE dict (``counts`` as ``str`` or ``bytes``)."""
    from pycocotools import mask as mask_utils

    rle = dict(rle)
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    with warnings.catch_warnings():  # pycocotools' own numpy-2 DeprecationWarning (copy keyword)
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


# ---- the ground truth ------------------------------------------------------------------------------------

def scale_lesion(lesion: Mapping, sx: float, sy: float) -> dict:
    """A copy of ``lesion`` with its polygons and box (when it has one) scaled by ``sx``, ``sy``."""
    les = dict(lesion)
    les["polygons"] = [[v * (sx if i % 2 == 0 else sy) for i, v in enumerate(poly)]
                       for poly in lesion.get("polygons", [])]
    if lesion.get("box") is not None:
        x0, y0, x1, y1 = lesion["box"]
        les["box"] = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
    return les


def record_in_frame(record: Mapping, width: int, height: int) -> dict:
    """A copy of ``record`` whose lesions (polygons, boxes) and size are scaled to a ``width`` × ``height``
    frame (the image the model saw); unchanged when the sizes already agree."""
    rec = dict(record)
    w0, h0 = int(record["width"]), int(record["height"])
    if (w0, h0) == (int(width), int(height)):
        return rec
    sx, sy = width / w0, height / h0
    rec.update(width=int(width), height=int(height),
               lesions=[scale_lesion(lesion, sx, sy) for lesion in record.get("lesions", [])])
    return rec


def lesion_rle(lesion: Mapping, height: int, width: int) -> dict:
    """One RLE of the lesion in an ``height`` × ``width`` frame: the training target's mask
    (:func:`bonetumor.data.dataset.rasterise_lesion`), encoded."""
    from pycocotools import mask as mask_utils

    from bonetumor.data.dataset import rasterise_lesion  # torch: imported only when a mask is needed

    return mask_utils.encode(np.asfortranarray(rasterise_lesion(dict(lesion), height, width)))


def lesion_box(rle: dict) -> list[float]:
    """The tight XYXY bounds of a lesion's mask: the boxes the model is trained on (see the Dataset)."""
    from pycocotools import mask as mask_utils

    x, y, w, h = mask_utils.toBbox(rle).tolist()
    return [x, y, x + w, y + h]


def ground_truth(records: Sequence[Mapping], frames: Mapping[int, tuple[int, int]] | None = None) -> dict:
    """The COCO instance set of ``records``: categories 1 benign, 2 malignant; each lesion one annotation
    with its mask as ``segmentation`` (RLE, ``counts`` as str), ``area`` from the mask and ``bbox`` (XYWH)
    the mask's tight bounds; images without lesions included (they hold no annotation, negatives); ids
    start at 1. ``frames`` maps ``image_id`` → ``(width, height)`` to scale records into the frame of the
    predictions. ``ValueError`` for an image id given twice or a lesion of another category."""
    from pycocotools import mask as mask_utils

    images, annotations, seen = [], [], set()
    for record in records:
        if record["image_id"] in seen:
            raise ValueError(f"ground truth: image_id {record['image_id']} appears twice")
        seen.add(record["image_id"])
        if frames and record["image_id"] in frames:
            record = record_in_frame(record, *frames[record["image_id"]])
        h, w = int(record["height"]), int(record["width"])
        images.append({"id": int(record["image_id"]), "width": w, "height": h, "label": record.get("label"),
                       "file_name": os.path.basename(str(record.get("file", record.get("name", ""))))})
        for lesion in record.get("lesions", []):
            if lesion["category"] not in LABEL_TO_ID or LABEL_TO_ID[lesion["category"]] == 0:
                raise ValueError(f"ground truth: {record.get('name', record['image_id'])} has a lesion of category "
                                 f"{lesion['category']!r}, not benign or malignant")
            rle = lesion_rle(lesion, h, w)
            x0, y0, x1, y1 = lesion_box(rle)
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(record["image_id"]),
                "category_id": LABEL_TO_ID[lesion["category"]],
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
            })
    return {"images": images, "annotations": annotations, "categories": [dict(c) for c in CATEGORIES]}


def coco_ground_truth(records: Sequence[Mapping], frames: Mapping[int, tuple[int, int]] | None = None):
    """:func:`ground_truth` as an in-memory ``pycocotools.coco.COCO`` (its index printout captured)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = ground_truth(records, frames)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def write_coco(records: Sequence[Mapping], out_json: str | os.PathLike) -> Path:
    """Write :func:`ground_truth` of ``records`` — exactly what the evaluation scores — as a COCO instance
    file (atomically) and return its path."""
    coco = {"info": {"description": "bonetumor ground truth (bonetumor.data.coco.ground_truth)"},
            **ground_truth(records)}
    return write_json(out_json, coco, indent=None)

