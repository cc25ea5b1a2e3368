"""COCO from records: the instance file written from the records' lesions (:func:`write_coco`), outline
polygons of a binary mask (:func:`mask_to_polygons`), and the geometry of COCO's flat polygons
(``[x0, y0, x1, y1, ...]``) and XYXY boxes that the reader's LabelMe grouping uses.

Records are those of :mod:`bonetumor.data` (lesion ``box`` XYXY, ``polygons`` flat); this module imports
nothing from the readers, so both the BTXRD reader and the evaluation can build on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from bonetumor.io import write_json


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


def write_coco(records: Sequence[dict], out_json: str | os.PathLike,
               categories: Sequence[str] = ("benign", "malignant")) -> Path:
    """Write the records' lesions as a COCO instance file (atomically) and return its path.

    Image ids are the records' ``image_id``; annotation ids count from 1; category ids from 1 in the order
    of ``categories`` (1 benign, 2 malignant). ``segmentation`` holds the lesion's polygons (a box-only lesion
    gets its box as a 4-corner polygon); ``area`` is the mask's pixel area (pycocotools); ``bbox`` is XYWH.
    Images without lesions are listed with no annotation (negatives).
    """
    cat_ids = {name: i + 1 for i, name in enumerate(categories)}
    images, annotations = [], []
    ids = set()
    for rec in records:
        if rec["image_id"] in ids:
            raise ValueError(f"write_coco: image_id {rec['image_id']} appears twice")
        ids.add(rec["image_id"])
        images.append({"id": int(rec["image_id"]), "file_name": Path(rec["file"]).name, "width": int(rec["width"]),
                       "height": int(rec["height"]), "label": rec.get("label")})
        for lesion in rec["lesions"]:
            if lesion["category"] not in cat_ids:
                raise ValueError(f"write_coco: {rec['name']} has a lesion of category {lesion['category']!r}, "
                                 f"not one of {list(categories)}")
            annotations.append(_annotation(lesion, rec, len(annotations) + 1, cat_ids[lesion["category"]]))
    coco = {
        # the description names the function's first home; kept so that the files stay byte-identical
        "info": {"description": "bonetumor ground truth (from bonetumor.data.btxrd.write_coco)"},
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "tumour"} for name, i in cat_ids.items()],
    }
    return write_json(out_json, coco, indent=None)


def _annotation(lesion: dict, rec: dict, annotation_id: int, category_id: int) -> dict:
    """The COCO annotation of one lesion of ``rec``: its polygons (or its box as one), pixel area, XYWH box."""
    from pycocotools import mask as mask_utils

    w, h = int(rec["width"]), int(rec["height"])
    x0, y0, x1, y1 = lesion["box"]
    polygons = [list(map(float, p)) for p in lesion["polygons"]] or [[x0, y0, x1, y0, x1, y1, x0, y1]]
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
    return {"id": annotation_id, "image_id": int(rec["image_id"]), "category_id": category_id,
            "segmentation": polygons, "area": float(mask_utils.area(rle)), "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": 0}
