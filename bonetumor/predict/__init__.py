"""Run a trained detector on one's own radiographs (the paper's algorithm step 4, "visualise the detected
tumours, segmented regions and predicted classes"): ``bonetumor predict RUN IMAGE... --out DIR``.

Each image is read as the training data were — the reader of :mod:`bonetumor.data.btxrd` (8-bit grayscale,
EXIF orientation applied) and the resize cache's own function (a JPEG decoded at a reduced scale when that
still serves the model, then Lanczos to the longest side ``image_size``, aspect kept; :mod:`.images`) — and
given to the model as grey replicated on 3 channels (the models here are trained on unprocessed images;
``predict_images(preprocess=...)`` serves one that was not). Images are read by a torch DataLoader
(``workers`` processes) and run ``batch_size`` at a time. Boxes and masks are mapped back to the original
pixels. For every image an overlay PNG may be written (mask filled semi-transparent, box, class and score;
:mod:`.overlay`), and ``detections.csv`` (:mod:`.table`) gets its rows as soon as its batch is done, so a
killed run continues with ``resume=True`` without repeating or duplicating an image.

An image that cannot be read does not stop the others: its error names the file, is printed to stderr and
becomes a CSV row with status ``error: …``; :mod:`bonetumor.commands.predict` then exits with status 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from bonetumor import CLASSES
from bonetumor.predict.images import (OVERLAY_SUFFIX, LoadedImage, collect_images, image_loader, load_for_model,
                                      read_image)
from bonetumor.predict.overlay import COLOURS, draw_overlay, overlay_name, write_overlay
from bonetumor.predict.table import (CSV_COLUMNS, CSV_NAME, DetectionsCsv, detection_rows, error_row,
                                     read_detections)

__all__ = ["COLOURS", "CSV_COLUMNS", "CSV_NAME", "OVERLAY_SUFFIX", "collect_images", "detect_in_file",
           "detections_of", "draw_overlay", "predict_images", "read_image"]


def predict_images(model, image_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, image_size: int,
                   score_threshold: float = 0.5, mask_threshold: float = 0.5, device="cpu",
                   preprocess: bool | Callable = False, progress: bool = False, *, batch_size: int = 1,
                   workers: int = 0, overlays: bool = True, resume: bool = False) -> pd.DataFrame:
    """Detect, segment and classify tumours in ``image_paths`` (files, or folders of images) and write
    ``out_dir/detections.csv`` and, with ``overlays``, ``out_dir/<name>_overlay.png`` per readable image.

    ``image_size``: longest side the model was trained at (``settings.data.image_size``); ``preprocess``: what
    the run's Dataset applied (``True`` → :func:`bonetumor.preprocess.preprocess_radiograph`, or a callable).
    Detections with score < ``score_threshold`` are not reported; masks are binarised at ``mask_threshold``
    after being resized back to the original image. ``batch_size`` images go through the model at once,
    read by ``workers`` DataLoader processes (0: in this one); ``progress`` shows a bar with its ETA.
    ``resume``: keep the rows of an earlier (killed) run into the same ``out_dir`` and predict only the
    images it has no rows for — and those it recorded as errors, whose rows are replaced.

    Returns the CSV as a DataFrame, columns :data:`CSV_COLUMNS`: one row per detection (``status`` ``ok``),
    one row with ``status`` ``no detection`` for an image without any, and one row with ``status``
    ``error: <message>`` for an image that could not be processed. Coordinates ``x0, y0, x1, y1`` and
    ``mask_area`` are in pixels of the original file; ``class`` is benign/malignant; ``overlay`` is empty
    without overlays. ``df.attrs["errors"]`` lists this call's ``(file, message)`` pairs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = collect_images(image_paths, outputs=out_dir)
    errors: list[tuple[str, str]] = []
    with DetectionsCsv(out_dir / CSV_NAME) as table:
        kept = table.start(resume)
        done = {row["file"] for row in kept}
        todo = [f for f in files if str(f) not in done]
        used_names = {row["overlay"] for row in kept if row["overlay"]}
        loader = image_loader(todo, image_size, preprocess, keep_full=overlays, batch_size=batch_size,
                              workers=workers)
        from bonetumor.engine.inference import inference_mode
        from bonetumor.progress import progress_bar

        with inference_mode(model, device), progress_bar(total=len(todo), desc="predict", unit="image",
                                                         enabled=progress) as bar:
            for batch in loader:
                table.append(_batch_rows(model, batch, device, score_threshold, mask_threshold,
                                         out_dir if overlays else None, used_names, errors))
                bar.update(len(batch))
    _report_errors(errors, len(todo))
    df = read_detections(out_dir / CSV_NAME)
    df.attrs["errors"] = errors
    return df


def _batch_rows(model, batch: list[LoadedImage], device, score_threshold: float, mask_threshold: float,
                overlay_dir: Path | None, used_names: set[str], errors: list) -> list[dict]:
    """The CSV rows of one batch, in its order: the readable images through the model at once, each one's
    overlay written to ``overlay_dir`` (unless ``None``); errors appended to ``errors`` and printed."""
    results = _model_outputs(model, [item for item in batch if item.error is None], device)
    rows: list[dict] = []
    for item in batch:
        try:
            if item.error is not None:
                raise ValueError(item.error)
            if isinstance(results[item.index], Exception):
                raise results[item.index]
            dets, masks = detections_of(results[item.index], item.original_size, item.model_size,
                                        score_threshold, mask_threshold)
            name = None
            if overlay_dir is not None:
                name = write_overlay(item.full, dets, masks, overlay_dir, overlay_name(item.file, used_names))
        except Exception as exc:  # one bad image must not stop the others
            message = str(exc) if str(item.file) in str(exc) else f"{item.file}: {exc}"
            errors.append((str(item.file), message))
            print(f"bonetumor predict: error: {message}", file=sys.stderr)
            rows.append(error_row(item.file, message))
            continue
        rows.extend(detection_rows(item.file, dets, masks, name))
    return rows


def _model_outputs(model, items: list[LoadedImage], device) -> dict:
    """``{item.index: output}`` of ``items`` run through ``model`` at once; when the batch fails, each image is
    run alone, and an image that fails alone maps to its exception (its error, not the whole run's)."""
    if not items:
        return {}
    try:
        return {item.index: out for item, out in zip(items, model([item.tensor.to(device) for item in items]))}
    except Exception as exc:
        if len(items) == 1:
            return {items[0].index: exc}
    results = {}
    for item in items:
        try:
            results[item.index] = model([item.tensor.to(device)])[0]
        except Exception as exc:
            results[item.index] = exc
    return results


def _report_errors(errors: list[tuple[str, str]], n_images: int) -> None:
    if errors:
        print(f"bonetumor predict: {len(errors)} of {n_images} image(s) failed:", file=sys.stderr)
        for _, message in errors:
            print(f"  {message}", file=sys.stderr)


def detections_of(output: dict, original_size: tuple[int, int], model_size: tuple[int, int],
                  score_threshold: float, mask_threshold: float) -> tuple[list[dict], list]:
    """``(detections, masks)`` of one image's model output (torchvision's ``boxes``, ``labels``, ``scores``,
    ``masks`` in the frame of the ``model_size`` ``(w, h)`` input): those at or above ``score_threshold``
    (``class``, ``score``, ``box`` in pixels of the ``original_size`` ``(W, H)`` image) and their masks,
    resized back (bilinear) to the original image and binarised at ``mask_threshold``."""
    import torch.nn.functional as F

    keep = (output["scores"] >= score_threshold).nonzero().flatten()
    (W, H), (w, h) = original_size, model_size
    sx, sy = W / w, H / h
    probs = F.interpolate(output["masks"][keep].float().cpu(), size=(H, W), mode="bilinear",
                          align_corners=False)[:, 0] if len(keep) else []
    dets, masks = [], []
    for j, i in enumerate(keep.tolist()):
        x0, y0, x1, y1 = output["boxes"][i].cpu().tolist()
        label = int(output["labels"][i])
        dets.append({"class": CLASSES[label] if 0 <= label < len(CLASSES) else str(label),
                     "score": float(output["scores"][i]), "box": [x0 * sx, y0 * sy, x1 * sx, y1 * sy]})
        masks.append((probs[j] >= mask_threshold).numpy())
    return dets, masks


def detect_in_file(model, file: Path, image_size: int, score_threshold: float, mask_threshold: float, device,
                   preprocess: bool | Callable = False):
    """``(image, detections, masks)`` of one radiograph file: the grayscale PIL image, the detections at or
    above ``score_threshold`` (``class``, ``score``, ``box`` in original pixels) and their binary masks
    resized back to the original image. ``ValueError`` naming the file when it cannot be read."""
    from bonetumor.engine.inference import inference_mode

    item = load_for_model(file, image_size, preprocess, keep_full=True)
    with inference_mode(model, device):
        output = model([item.tensor.to(device)])[0]
    dets, masks = detections_of(output, item.original_size, item.model_size, score_threshold, mask_threshold)
    return item.full, dets, masks
