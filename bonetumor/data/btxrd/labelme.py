"""LabelMe JSON → lesions, by the reader's rules (see :mod:`bonetumor.data.btxrd`).

Shapes that carry a ``group_id`` form one lesion per ``group_id``. Every rectangle without a ``group_id``
starts a lesion of its own. Each polygon without a ``group_id`` joins the lesion (with a rectangle) that
covers the largest fraction of the polygon's bounding box (within 0.05 of the largest, e.g. nested
rectangles, the one whose IoU with that bounding box is highest); a polygon that overlaps no rectangle is a
lesion of its own. A lesion's ``box`` is its rectangle (the union, if a group holds several), else the
bounds of its polygons. Coordinates outside the image are clipped to it; polygons with fewer than 3 points
or no area, unsupported shape types and malformed points are skipped, and so is a shape that repeats an
earlier one exactly (same type, points, label and group: a copy-paste, which would otherwise add a second,
box-only lesion). Each of these is reported. A file that is not readable JSON — also one nested too deeply
to parse — gives no lesion, reported.
"""

from __future__ import annotations

import json
import reprlib
from pathlib import Path

import numpy as np

from bonetumor.data.coco import box_union, polygon_area, polygon_bounds
from bonetumor.data.layout import SUBTYPE_CLASS

_EPS = 1e-6


def read_labelme(path: Path, width: int, height: int, row: dict, report) -> list[dict]:
    """The lesions (``category``, ``subtype``, ``box``, ``polygons``) of the LabelMe file ``path`` for an image
    of ``width`` × ``height`` whose sheet row (``label``, ``subtype``) is ``row``; ``report(reason)`` for each
    problem. The sheet's class and subtype are used; a label that disagrees with them is reported."""
    data = _load(path, width, height, report)
    if data is None:
        return []
    try:
        rects, polys = _shapes(data["shapes"], width, height, report)
    except RecursionError:  # a value nested too deeply for Python to handle
        report("values nested too deeply to read; no lesion read")
        return []
    lesions = _group(rects, polys)
    return [_lesion(lesion, row, report) for lesion in lesions]


def _load(path: Path, width: int, height: int, report) -> dict | None:
    """The LabelMe document, or ``None`` (reported) when it is not readable JSON with a ``shapes`` list."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        report(f"not UTF-8 text ({exc}); no lesion read")
        return None
    except json.JSONDecodeError as exc:
        report(f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); no lesion read")
        return None
    except RecursionError:
        report("JSON nested too deeply to parse; no lesion read")
        return None
    except OSError as exc:
        report(f"cannot read ({exc}); no lesion read")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        report("not a LabelMe file (no 'shapes' list); no lesion read")
        return None
    image_path = data.get("imagePath")
    if isinstance(image_path, str) and image_path.strip():
        stem = Path(image_path.replace("\\", "/")).stem
        if stem != path.stem:
            report(f"imagePath {image_path!r} names another image; ignored (images are found by file name)")
    jw, jh = data.get("imageWidth"), data.get("imageHeight")
    if isinstance(jw, (int, float)) and isinstance(jh, (int, float)) and (int(jw), int(jh)) != (width, height):
        report(f"imageWidth x imageHeight {int(jw)}x{int(jh)} differs from the image's {width}x{height}; "
               "coordinates are read as pixels of the image on disk")
    return data


def _shapes(shapes: list, width: int, height: int, report) -> tuple[list, list]:
    """The usable rectangles ``(index, group, label, xyxy)`` and polygons ``(index, group, label, flat)``."""
    rects, polys = [], []
    clipped = 0
    seen: dict = {}  # (type, group, label, points) of each shape kept → its index
    for i, shape in enumerate(shapes):
        where = f"shape {i}"
        if not isinstance(shape, dict):
            report(f"{where} is not an object; skipped")
            continue
        kind = shape.get("shape_type") or "polygon"
        if not isinstance(kind, str):
            report(f"{where}: shape_type {_short(kind)} is not text; skipped")
            continue
        label = shape.get("label")
        if label is not None and not isinstance(label, str):
            report(f"{where}: label {_short(label)} is not text; treated as none")
            label = None
        group = shape.get("group_id")
        if group is not None and (not isinstance(group, (int, str)) or isinstance(group, bool)):
            report(f"{where}: group_id {_short(group)} is not a number; treated as none")
            group = None
        points = _points(shape.get("points"))
        if points is None:
            report(f"{where} ({kind}): points are not a list of [x, y] number pairs; skipped")
            continue
        if kind not in ("rectangle", "polygon"):
            report(f"{where}: shape_type {_short(kind)} is not supported (rectangle or polygon); skipped")
            continue
        key = (kind, group, label, points.tobytes())
        if key in seen:
            report(f"{where} repeats shape {seen[key]} exactly (same {kind}, points, label and group); skipped")
            continue
        seen[key] = i
        outside = ((points[:, 0] < -_EPS) | (points[:, 0] > width + _EPS)
                   | (points[:, 1] < -_EPS) | (points[:, 1] > height + _EPS))
        if outside.any():
            clipped += 1
            points = np.column_stack([np.clip(points[:, 0], 0, width), np.clip(points[:, 1], 0, height)])
        if kind == "rectangle":
            box = _rectangle(points, where, report)
            if box is not None:
                rects.append((i, group, label, box))
        else:
            flat = _polygon(points, where, report)
            if flat is not None:
                polys.append((i, group, label, flat))
    if clipped:
        report(f"{clipped} shape(s) reach outside the {width}x{height} image; clipped to it")
    return rects, polys


def _short(value) -> str:
    """``repr`` of a value from the file, shortened (and safe for deeply nested values)."""
    return reprlib.repr(value)


def _rectangle(points: np.ndarray, where: str, report) -> list[float] | None:
    if len(points) < 2:
        report(f"{where}: rectangle with {len(points)} point(s); skipped")
        return None
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    if x1 - x0 <= _EPS or y1 - y0 <= _EPS:
        report(f"{where}: rectangle has no area (after clipping to the image); skipped")
        return None
    return [float(x0), float(y0), float(x1), float(y1)]


def _polygon(points: np.ndarray, where: str, report) -> list[float] | None:
    if len(points) < 3:
        report(f"{where}: polygon with {len(points)} point(s) (needs 3); skipped")
        return None
    if polygon_area(points) <= _EPS:
        report(f"{where}: polygon has no area (after clipping to the image); skipped")
        return None
    return [float(v) for v in points.reshape(-1)]


def _points(raw) -> np.ndarray | None:
    if not isinstance(raw, list) or not raw:
        return None
    out = []
    for p in raw:
        if (not isinstance(p, (list, tuple)) or len(p) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
            return None
        out.append((float(p[0]), float(p[1])))
    arr = np.asarray(out, dtype=float)
    return arr if np.isfinite(arr).all() else None


def _group(rects, polys) -> list[dict]:
    """Shapes → lesions (the rule in the module docstring). Each lesion: rects, polys, labels, order."""
    lesions: dict = {}
    for i, group, label, box in rects:
        key = ("g", group) if group is not None else ("r", i)
        lesion = lesions.setdefault(key, {"order": i, "rects": [], "polys": [], "labels": []})
        lesion["rects"].append(box)
        lesion["labels"].append(label)
    loose = []
    for i, group, label, flat in polys:
        if group is not None:
            lesion = lesions.setdefault(("g", group), {"order": i, "rects": [], "polys": [], "labels": []})
            lesion["polys"].append(flat)
            lesion["labels"].append(label)
        else:
            loose.append((i, label, flat))
    boxed = [lesion for lesion in lesions.values() if lesion["rects"]]
    for i, label, flat in loose:
        best = _best_rectangle(flat, boxed)
        if best is None:
            lesions[("p", i)] = {"order": i, "rects": [], "polys": [flat], "labels": [label]}
        else:
            best["polys"].append(flat)
            best["labels"].append(label)
    return sorted(lesions.values(), key=lambda lesion: lesion["order"])


def _best_rectangle(flat: list[float], boxed: list[dict]) -> dict | None:
    """The lesion of ``boxed`` a loose polygon joins (largest coverage of its bounds, then IoU), or ``None``."""
    px0, py0, px1, py1 = polygon_bounds(flat)
    parea = max((px1 - px0) * (py1 - py0), _EPS)
    scored = []  # (coverage of the polygon's bounds, IoU of bounds and rectangle, lesion)
    for lesion in boxed:
        x0, y0, x1, y1 = box_union(lesion["rects"])
        inter = max(0.0, min(x1, px1) - max(x0, px0)) * max(0.0, min(y1, py1) - max(y0, py0))
        if inter > 0:
            union = parea + (x1 - x0) * (y1 - y0) - inter
            scored.append((inter / parea, inter / union, lesion))
    if not scored:
        return None
    top = max(c for c, _, _ in scored)
    # near-equal coverage (nested rectangles): the rectangle that fits the polygon best
    return max((s for s in scored if s[0] >= top - 0.05), key=lambda s: s[1])[2]


def _lesion(lesion: dict, row: dict, report) -> dict:
    label, subtype = row["label"], row["subtype"]
    first = lesion["order"]
    if len(lesion["rects"]) > 1:
        report(f"lesion of shape {first}: {len(lesion['rects'])} rectangles in one group; using their union")
    if lesion["rects"]:
        box = box_union(lesion["rects"])
        if not lesion["polys"]:
            report(f"lesion of shape {first}: rectangle without polygon; box only, no mask")
    else:
        box = box_union([polygon_bounds(p) for p in lesion["polys"]])
    checked = sorted({str(x) for x in lesion["labels"]}) if label != "normal" else []  # normal: reported once
    for raw in checked:
        _check_label(raw, first, label, subtype, report)
    return {"category": label, "subtype": subtype, "box": [float(v) for v in box],
            "polygons": [list(p) for p in lesion["polys"]]}


def _check_label(raw: str, first: int, label: str, subtype: str | None, report) -> None:
    """Report a shape label that disagrees with the sheet's class or subtype, or is no BTXRD subtype."""
    name = " ".join(raw.strip().lower().replace("_", " ").split())
    if name in SUBTYPE_CLASS:
        if subtype is not None and name != subtype:
            what = "class and subtype" if SUBTYPE_CLASS[name] != label else "subtype"
            report(f"lesion of shape {first}: label {raw!r} ({SUBTYPE_CLASS[name]}) disagrees with the sheet's "
                   f"{what} ({subtype!r}, {label}); the sheet is used")
        elif subtype is None and SUBTYPE_CLASS[name] != label:
            report(f"lesion of shape {first}: label {raw!r} ({SUBTYPE_CLASS[name]}) disagrees with the sheet's "
                   f"class ({label}); the sheet is used")
    elif name in ("benign", "malignant"):
        if name != label:
            report(f"lesion of shape {first}: label {raw!r} disagrees with the sheet's class ({label}); "
                   "the sheet is used")
    else:
        report(f"lesion of shape {first}: unknown label {raw!r} (not a BTXRD subtype); "
               f"the sheet's {label} is used")
