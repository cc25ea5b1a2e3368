"""Inference: the one place a trained detector is run on images (eval mode, no gradients, training mode
restored afterwards). :func:`run_model` yields the model's raw outputs batch by batch; :func:`predict`
turns them into saved-prediction dicts for the evaluation, and ``bonetumor predict`` maps them back to the
pixels of one's own radiographs (:mod:`bonetumor.predict`)."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import numpy as np

from bonetumor.data.coco import encode_mask


def _as_int(value) -> int:
    if hasattr(value, "item"):
        value = value.item()
    return int(value)


def _batches(data, batch_size: int):
    """Yield ``(images, targets)`` lists from a torch DataLoader (batches of ``(images, targets)``) or from a
    Dataset (items ``(image, target)``)."""
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader):
        for images, targets in data:
            yield list(images), list(targets)
        return
    images, targets = [], []
    for i in range(len(data)):
        image, target = data[i]
        images.append(image)
        targets.append(target)
        if len(images) == batch_size:
            yield images, targets
            images, targets = [], []
    if images:
        yield images, targets


@contextlib.contextmanager
def inference_mode(model, device="cpu"):
    """``model`` on ``device`` in eval mode under ``torch.no_grad`` for the block; its training mode is
    restored afterwards."""
    import torch

    was_training = model.training
    model.eval()
    model.to(device)
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def run_model(model, batches: Iterable, device="cpu") -> Iterator[tuple[list, list, list[dict]]]:
    """``(images, targets, outputs)`` for each ``(images, targets)`` batch: torchvision's detection outputs
    (``boxes``, ``labels``, ``scores``, ``masks`` as probabilities in the image frame) of ``model`` under
    :func:`inference_mode`."""
    with inference_mode(model, device):
        for images, targets in batches:
            yield images, targets, model([img.to(device) for img in images])


def prediction_record(image, target, output, mask_threshold: float = 0.5) -> dict:
    """One saved prediction (see :func:`predict`) of one image's model output."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    masks = (output["masks"][:, 0] >= mask_threshold).cpu().numpy() if "masks" in output else \
        np.zeros((len(output["boxes"]), height, width), bool)
    return {
        "image_id": _as_int(target["image_id"]),
        "height": height,
        "width": width,
        "boxes": [[round(float(v), 3) for v in box] for box in output["boxes"].cpu().tolist()],
        "labels": [int(v) for v in output["labels"].cpu().tolist()],
        "scores": [round(float(v), 6) for v in output["scores"].cpu().tolist()],
        "masks": [encode_mask(m) for m in masks],
    }


def predict(model, dataset_or_loader, device="cpu", mask_threshold: float = 0.5, batch_size: int = 2,
            progress: bool = False) -> list[dict]:
    """Run ``model`` on every image of a detection Dataset or DataLoader (torchvision contract:
    ``(image, target)`` with ``target["image_id"]``).

    Returns one dict per image, in the data's order::

        {"image_id": 3, "height": 512, "width": 384,          # frame of the image the model saw
         "boxes": [[x0, y0, x1, y1], ...], "labels": [1 | 2, ...], "scores": [...],
         "masks": [RLE, ...]}                                  # masks pasted into the image, binarised at
                                                               # mask_threshold, COCO RLE with str counts

    All detections the model returns are kept (torchvision's own ``box_score_thresh``, 0.05 by default,
    already applies); the evaluation's ``score_threshold`` is applied later, so it can change without
    predicting again.
    """
    batches = _batches(dataset_or_loader, batch_size)
    if progress:
        from bonetumor.progress import progress_bar

        batches = progress_bar(batches, desc="predict", unit="batch")
    out: list[dict] = []
    for images, targets, outputs in run_model(model, batches, device):
        for image, target, output in zip(images, targets, outputs):
            out.append(prediction_record(image, target, output, mask_threshold))
    return out
