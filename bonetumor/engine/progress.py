"""How training reports progress: tqdm bars with an ETA, one line per epoch, or nothing."""

from __future__ import annotations

import sys
from typing import Mapping


def resolve_progress(progress) -> str:
    """``"bar"``, ``"line"`` or ``"off"`` from ``train``'s ``progress`` argument. None follows
    ``BONETUMOR_PROGRESS`` (:func:`bonetumor.progress.mode`) as every other bar does: ``off`` shows nothing,
    ``final`` one line per epoch, ``live`` (the default) a bar when stderr is a terminal, else lines."""
    if progress is None:
        from bonetumor.progress import mode

        wanted = mode()
        if wanted != "live":
            return "off" if wanted == "off" else "line"
        return "bar" if sys.stderr.isatty() else "line"
    if progress is True:
        return "bar"
    if progress is False:
        return "line"
    if progress not in ("bar", "line", "off"):
        raise ValueError(f"progress must be None, True, False, 'bar', 'line' or 'off', not {progress!r}")
    return progress


def progress_bar(show: str, total: int):
    """A bar (:func:`bonetumor.progress.progress_bar`) over ``total`` iterations when ``show`` is ``"bar"``,
    else ``None``."""
    if show != "bar":
        return None
    from bonetumor.progress import progress_bar as bar

    return bar(total=total, unit="it")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def epoch_line(row: Mapping, epochs: int, eta: float | None) -> str:
    """One line on an epoch: losses, learning rate, validation numbers, speed and the time left."""
    parts = [f"epoch {row['epoch']}/{epochs}",
             f"loss {row['loss_total']:.4f} (cls {row['loss_classifier']:.3f} box {row['loss_box_reg']:.3f} "
             f"mask {row['loss_mask']:.3f} obj {row['loss_objectness']:.3f} rpn {row['loss_rpn_box_reg']:.3f}"
             + (f" lesion map {row['loss_lesion_map']:.3f}" if "loss_lesion_map" in row else "") + ")",
             f"lr {row['lr']:.2e}"]
    if "val_loss_total" in row:
        parts.append(f"val loss {row['val_loss_total']:.4f} mse {row['val_mask_mse']:.4f}")
    if "val_ap50" in row:
        parts.append(f"AP50 {row['val_ap50']:.3f}")
    parts.append(f"{row['seconds']:.1f}s {row['images_per_s']:.1f} img/s")
    if eta is not None:
        parts.append(f"eta {duration(eta)}")
    return "  ".join(parts)
