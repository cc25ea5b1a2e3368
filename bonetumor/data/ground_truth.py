"""The evaluation's ground truth: one definition of a ground-truth lesion's mask (the training target's
rasteriser), its box (the mask's tight bounds, as the model is trained on) and the COCO ground truth that
pycocotools scores; records scaled into the frame of the image the model saw."""

from __future__ import annotations

import contextlib
import copy
import io
import os
from typing import Mapping, Sequence

import numpy as np

from bonetumor import LABEL_TO_ID

#: Category ids of the COCO ground truth (the model's labels; 0 is background and never a category).
CATEGORIES = [{"id": LABEL_TO_ID[name], "name": name, "supercategory": "tumour"} for name in ("benign", "malignant")]
ID_TO_LABEL = {v: k for k, v in LABEL_TO_ID.items()}


def record_in_frame(record: Mapping, width: int, height: int) -> dict:
    """A copy of ``record`` whose lesions (polygons, boxes) and size are scaled to a ``width`` × ``height``
    frame (the image the model saw); unchanged when the sizes already agree."""
    rec = dict(record)
    w0, h0 = int(record["width"]), int(record["height"])
    if (w0, h0) == (int(width), int(height)):
        return rec
    sx, sy = width / w0, height / h0
    lesions = []
    for lesion in record.get("lesions", []):
        les = dict(lesion)
        les["polygons"] = [[v * (sx if i % 2 == 0 else sy) for i, v in enumerate(poly)]
                           for poly in lesion.get("polygons", [])]
        if lesion.get("box") is not None:
            x0, y0, x1, y1 = lesion["box"]
            les["box"] = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
        lesions.append(les)
    rec.update(width=int(width), height=int(height), lesions=lesions)
    return rec


def lesion_rle(lesion: Mapping, height: int, width: int) -> dict:
    """One RLE of the lesion in an ``height`` × ``width`` frame: the training target's mask
    (:func:`bonetumor.data.dataset.rasterise_lesion`), encoded."""
    from pycocotools import mask as mask_utils

    from bonetumor.data.dataset import rasterise_lesion

    return mask_utils.encode(np.asfortranarray(rasterise_lesion(dict(lesion), height, width)))


def lesion_box(rle: dict) -> list[float]:
    """The tight XYXY bounds of a lesion's mask: the boxes the model is trained on (see the Dataset)."""
    from pycocotools import mask as mask_utils

    x, y, w, h = mask_utils.toBbox(rle).tolist()
    return [x, y, x + w, y + h]


def coco_ground_truth(records: Sequence[Mapping], frames: Mapping[int, tuple[int, int]] | None = None):
    """In-memory COCO ground truth (``pycocotools.coco.COCO``) of ``records``: categories 1 benign,
    2 malignant; each lesion one annotation with its polygons as ``segmentation``, ``area`` from its mask and
    ``bbox`` from its box; images without lesions included (they hold no annotation). ``frames`` maps
    ``image_id`` → ``(width, height)`` to scale records into the frame of the predictions."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    images, annotations = [], []
    ann_id = 1
    for record in records:
        if frames and record["image_id"] in frames:
            record = record_in_frame(record, *frames[record["image_id"]])
        h, w = int(record["height"]), int(record["width"])
        images.append({"id": int(record["image_id"]), "width": w, "height": h,
                       "file_name": os.path.basename(str(record.get("file", record.get("name", ""))))})
        for lesion in record.get("lesions", []):
            rle = lesion_rle(lesion, h, w)
            x0, y0, x1, y1 = lesion_box(rle)
            annotations.append({
                "id": ann_id, "image_id": int(record["image_id"]),
                "category_id": LABEL_TO_ID[lesion["category"]],
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
            })
            ann_id += 1
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": copy.deepcopy(CATEGORIES)}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco

