"""Masks: overlap of two binary masks (IoU, Dice) and the paper's post-processing of segmented regions
(:func:`refine_mask`), applied to saved predictions by :func:`refined_predictions`."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from bonetumor.data.coco import decode_mask, encode_mask


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two binary masks; 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)`` of two binary masks; 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def refine_mask(mask: np.ndarray, min_size: int = 64, fill_holes: bool = True, keep_largest: bool = False) -> np.ndarray:
    """Post-process one binary mask (the paper's "post-processing to refine segmented tumour regions"):

    1. ``fill_holes`` — fill enclosed holes (``scipy.ndimage.binary_fill_holes``): a lesion is one solid
       region; holes come from low mask probabilities in its interior.
    2. remove connected components (8-connectivity) of fewer than ``min_size`` pixels
       (``skimage.morphology.remove_small_objects``): isolated specks are not lesions.
    3. ``keep_largest`` — keep only the largest component.

    A non-empty mask is never emptied: when every component is below ``min_size``, the largest one is kept.
    Returns a ``bool`` array of the same shape.
    """
    from scipy import ndimage
    from skimage.morphology import remove_small_objects

    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"refine_mask expects a 2-D mask, got shape {m.shape}")
    if not m.any():
        return m.copy()
    if fill_holes:
        m = ndimage.binary_fill_holes(m)
    labels, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    if keep_largest:
        return largest
    if min_size > 1:
        m = remove_small_objects(m, max_size=min_size - 1, connectivity=2)
        if not m.any():
            m = largest
    return m


def refined_predictions(preds: Sequence[Mapping], **refine_kwargs) -> list[dict]:
    out = []
    for p in preds:
        q = dict(p)
        q["masks"] = [encode_mask(refine_mask(decode_mask(m), **refine_kwargs)) for m in p.get("masks", [])]
        out.append(q)
    return out

