"""Run a trained detector on one's own radiographs (the paper's algorithm step 4, "visualise the detected
tumours, segmented regions and predicted classes"): ``bonetumor predict RUN IMAGE... --out DIR``.

Each image is read as the training data were (8-bit grayscale, EXIF orientation applied — the reader of
:mod:`bonetumor.data.btxrd`), resized so that its longest side is the run's ``image_size`` (aspect kept,
Lanczos, as the resize cache does) and given to the model as grey replicated on 3 channels (the models
here are trained on unprocessed images; ``predict_images(preprocess=...)`` serves one that was not). Boxes and masks are mapped back to the original pixels. For every
image an overlay PNG is written (mask filled semi-transparent, box, class and score), and one
``detections.csv`` lists all detections — each file written atomically.

An image that cannot be read does not stop the others: its error names the file, is printed to stderr and
becomes a CSV row with status ``error: …``; :mod:`bonetumor.commands.predict` then exits with status 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from bonetumor import CLASSES
from bonetumor.data.btxrd import IMAGE_SUFFIXES, resized_size

#: Overlay colours (RGB) per class name.
COLOURS = {"benign": (40, 200, 80), "malignant": (230, 40, 40)}
OVERLAY_SUFFIX = "_overlay.png"
CSV_COLUMNS = ["file", "status", "detection", "class", "score", "x0", "y0", "x1", "y1", "mask_area", "overlay"]


def collect_images(paths: Iterable[str | os.PathLike], outputs: str | os.PathLike | None = None) -> list[Path]:
    """The given files, and the image files (by suffix, sorted) directly inside any given folder. Paths that
    do not exist are kept, so that they are reported as errors rather than silently dropped. Overlays this
    command wrote before (``*_overlay.png`` inside the ``outputs`` folder) are never taken as inputs."""
    outputs = Path(outputs).resolve() if outputs is not None else None

    def is_output(f: Path) -> bool:
        return outputs is not None and f.name.endswith(OVERLAY_SUFFIX) and f.resolve().parent == outputs

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                              and not f.name.startswith(".") and not is_output(f)))
        else:
            out.append(p)
    return out


def read_image(file: str | os.PathLike):
    """An 8-bit grayscale PIL image (colour → luma, EXIF orientation applied); ``ValueError`` naming the file
    when it cannot be decoded."""
    from bonetumor.data.btxrd import load_image

    file = Path(file)
    if not file.is_file():
        raise ValueError(f"{file}: no such file")
    try:
        return load_image(file)
    except Exception as exc:  # DatasetError (a ValueError) names the file already; anything else: say so
        msg = str(exc)
        raise ValueError(msg if str(file) in msg else f"{file}: cannot read the image ({exc})") from exc


def _model_input(image, image_size: int, preprocess: bool | Callable):
    """Resize a grayscale PIL image and return ``(tensor [3, h, w] in [0, 1], (w, h))``."""
    import torch
    from PIL import Image

    w, h = resized_size(image.width, image.height, image_size)
    small = image.resize((w, h), Image.Resampling.LANCZOS) if (w, h) != image.size else image
    gray = np.asarray(small, dtype=np.float32) / 255.0
    if preprocess:
        from bonetumor.preprocess import preprocess_radiograph

        fn = preprocess_radiograph if preprocess is True else preprocess
        gray = np.asarray(fn(gray), dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(gray)).clamp(0, 1)[None].expand(3, -1, -1).contiguous()
    return tensor, (w, h)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow without a scalable default font
        return ImageFont.load_default()


def draw_overlay(image, detections: Sequence[dict], masks: Sequence[np.ndarray]):
    """RGB PIL image: ``image`` (grayscale PIL) with each detection's mask filled semi-transparent, its box
    and ``"<class> <score>"``. ``detections``: dicts with ``class``, ``score``, ``box`` (original pixels)."""
    from PIL import Image, ImageDraw

    base = image.convert("RGBA")
    width = max(2, round(max(image.size) / 300))
    font = _font(max(12, round(max(image.size) / 40)))
    for det, mask in zip(detections, masks):
        colour = COLOURS.get(det["class"], (255, 200, 0))
        layer = Image.new("RGBA", base.size, colour + (0,))
        alpha = Image.fromarray((np.asarray(mask, bool) * 96).astype(np.uint8), mode="L")
        layer.putalpha(alpha)
        base = Image.alpha_composite(base, layer)
    draw = ImageDraw.Draw(base)
    for det in detections:
        colour = COLOURS.get(det["class"], (255, 200, 0))
        x0, y0, x1, y1 = det["box"]
        draw.rectangle([x0, y0, x1, y1], outline=colour + (255,), width=width)
        text = f"{det['class']} {det['score']:.2f}"
        tx, ty = x0, max(0, y0 - font.size - 2 * width) if hasattr(font, "size") else max(0, y0 - 14)
        bbox = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle(bbox, fill=(0, 0, 0, 170))
        draw.text((tx, ty), text, fill=colour + (255,), font=font)
    return base.convert("RGB")


def _overlay_name(file: Path, used: set[str]) -> str:
    name = f"{file.stem}_overlay.png"
    k = 2
    while name in used:
        name = f"{file.stem}_{file.suffix.lstrip('.')}_overlay.png" if k == 2 else f"{file.stem}_{k}_overlay.png"
        k += 1
    used.add(name)
    return name


def predict_images(model, image_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, image_size: int,
                   score_threshold: float = 0.5, mask_threshold: float = 0.5, device="cpu",
                   preprocess: bool | Callable = False, progress: bool = False) -> pd.DataFrame:
    """Detect, segment and classify tumours in ``image_paths`` (files, or folders of images) and write
    ``out_dir/<name>_overlay.png`` per readable image and ``out_dir/detections.csv``.

    ``image_size``: longest side the model was trained at (``settings.data.image_size``); ``preprocess``: what
    the run's Dataset applied (``True`` → :func:`bonetumor.preprocess.preprocess_radiograph`, or a callable).
    Detections with score < ``score_threshold`` are not reported; masks are binarised at ``mask_threshold``
    after being resized back to the original image.

    Returns the CSV as a DataFrame, columns :data:`CSV_COLUMNS`: one row per detection (``status`` ``ok``),
    one row with ``status`` ``no detection`` for an image without any, and one row with ``status``
    ``error: <message>`` for an image that could not be processed. Coordinates ``x0, y0, x1, y1`` and
    ``mask_area`` are in pixels of the original file; ``class`` is benign/malignant. ``df.attrs["errors"]``
    lists ``(file, message)`` pairs.
    """
    from bonetumor.io import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = collect_images(image_paths, outputs=out_dir)
    rows: list[dict] = []
    errors: list[tuple[str, str]] = []
    used_names: set[str] = set()
    iterator: Iterable[Path] = files
    if progress:
        from bonetumor.progress import progress_bar

        iterator = progress_bar(files, desc="predict", unit="image")
    for file in iterator:
        try:
            image, dets, masks = detect_in_file(model, file, image_size, score_threshold, mask_threshold, device,
                                                preprocess)
            name = _write_overlay(image, dets, masks, out_dir, _overlay_name(file, used_names))
        except Exception as exc:  # one bad image must not stop the others
            message = str(exc) if str(file) in str(exc) else f"{file}: {exc}"
            errors.append((str(file), message))
            print(f"bonetumor predict: error: {message}", file=sys.stderr)
            rows.append({"file": str(file), "status": f"error: {message}"})
            continue
        rows.extend(_csv_rows(file, dets, masks, name))
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    df["detection"] = df["detection"].astype("Int64")
    df["mask_area"] = df["mask_area"].astype("Int64")
    write_text(out_dir / "detections.csv", df.to_csv(index=False))
    if errors:
        print(f"bonetumor predict: {len(errors)} of {len(files)} image(s) failed:", file=sys.stderr)
        for _, message in errors:
            print(f"  {message}", file=sys.stderr)
    df.attrs["errors"] = errors
    return df


def detect_in_file(model, file: Path, image_size: int, score_threshold: float, mask_threshold: float, device,
                   preprocess: bool | Callable = False):
    """``(image, detections, masks)`` of one radiograph file: the grayscale PIL image, the detections at or
    above ``score_threshold`` (``class``, ``score``, ``box`` in original pixels) and their binary masks
    resized back to the original image."""
    import torch.nn.functional as F

    from bonetumor.engine.inference import inference_mode

    image = read_image(file)
    tensor, (w, h) = _model_input(image, image_size, preprocess)
    with inference_mode(model, device):
        res = model([tensor.to(device)])[0]
    keep = (res["scores"] >= score_threshold).nonzero().flatten()
    W, H = image.size
    sx, sy = W / w, H / h
    dets, masks = [], []
    for i in keep.tolist():
        x0, y0, x1, y1 = res["boxes"][i].cpu().tolist()
        box = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
        prob = F.interpolate(res["masks"][i:i + 1].float().cpu(), size=(H, W), mode="bilinear",
                             align_corners=False)[0, 0]
        mask = (prob >= mask_threshold).numpy()
        label = int(res["labels"][i])
        dets.append({"class": CLASSES[label] if 0 <= label < len(CLASSES) else str(label),
                     "score": float(res["scores"][i]), "box": box})
        masks.append(mask)
    return image, dets, masks


def _write_overlay(image, dets, masks, out_dir: Path, name: str) -> str:
    from bonetumor.io import atomic_path

    with atomic_path(out_dir / name) as tmp:
        draw_overlay(image, dets, masks).save(tmp, format="PNG")
    return name


def _csv_rows(file: Path, dets, masks, overlay: str) -> list[dict]:
    if not dets:
        return [{"file": str(file), "status": "no detection", "overlay": overlay}]
    rows = []
    for k, (det, mask) in enumerate(zip(dets, masks)):
        x0, y0, x1, y1 = (round(v, 1) for v in det["box"])
        rows.append({"file": str(file), "status": "ok", "detection": k, "class": det["class"],
                     "score": round(det["score"], 4), "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                     "mask_area": int(mask.sum()), "overlay": overlay})
    return rows
