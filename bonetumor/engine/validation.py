"""Per-epoch validation: Mask R-CNN's losses on the validation images and the lesion-mask quality of the
paper's Figure 6 ("MSE performance"), made measurable as a pixel mean squared error (plus Dice)."""

from __future__ import annotations

import time
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from bonetumor.engine.determinism import isolated_rng
from bonetumor.engine.loop import to_device
from bonetumor.modeling.vgg_maskrcnn import LOSS_TERMS, bf16_backbone

#: Detections at or above this score make up the probability map of :func:`validate`'s mask MSE
#: (torchvision's own ``box_score_thresh``).
MSE_SCORE_THRESHOLD = 0.05
#: Seed offset for validation's own RNG stream, so validation never draws from the training stream.
VAL_SEED_OFFSET = 7919


def _as_tensor(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))


def _mask_squared_error(prob_map, gt_mask) -> tuple[float, int]:
    prob = _as_tensor(prob_map).detach().to("cpu", torch.float64)
    gt = _as_tensor(gt_mask).detach().to("cpu")
    if gt.ndim == 3:  # one mask per lesion: their union
        gt = gt.any(0) if gt.shape[0] else torch.zeros(gt.shape[1:], dtype=torch.bool)
    gt = gt.to(torch.float64)
    if gt.ndim == 3 and gt.shape[0] == 1:
        gt = gt[0]
    if prob.ndim == 3 and prob.shape[0] == 1:
        prob = prob[0]
    if prob.shape != gt.shape:
        raise ValueError(f"probability map {tuple(prob.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    return float(((prob - gt.clamp(0, 1)) ** 2).sum()), prob.numel()


def mask_mse(prob_map, gt_mask) -> float:
    """Pixel mean squared error ``mean((P − G)²)`` between a lesion-probability map ``P`` ([H, W], values
    in [0, 1]) and the ground truth ``G`` ([H, W], or [N, H, W] per-lesion masks whose union is taken;
    N = 0 for a normal image). Tensors or arrays. The paper's Figure 6 "MSE performance", made measurable;
    see :func:`probability_map` for ``P`` from a detection output."""
    total, count = _mask_squared_error(prob_map, gt_mask)
    return total / count


def probability_map(output: Mapping[str, torch.Tensor], shape: Sequence[int],
                    score_threshold: float = MSE_SCORE_THRESHOLD) -> torch.Tensor:
    """``P(x)`` = max over detections with score ≥ ``score_threshold`` of their pasted mask probability at
    pixel x; 0 where there is none. ``output`` is one element of Mask R-CNN's eval-mode output."""
    masks, scores = output.get("masks"), output.get("scores")
    if masks is None or scores is None or len(scores) == 0:
        return torch.zeros(tuple(shape), dtype=torch.float32)
    keep = scores >= score_threshold
    if not bool(keep.any()):
        return torch.zeros(tuple(shape), dtype=torch.float32)
    return masks[keep][:, 0].float().amax(0).cpu()


def _batchnorm_eval(model: nn.Module) -> list[nn.Module]:
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in bns:
        m.eval()
    return bns


@torch.no_grad()
def validate(model: nn.Module, loader: Iterable, device: torch.device, mask_threshold: float = 0.5,
             amp: bool = False, seed: int = 0) -> dict:
    """Validation losses and mask quality on ``loader``'s images.

    * ``val_<term>`` and ``val_loss_total``: Mask R-CNN's losses, computed in train mode (the only mode in
      which torchvision returns them) under ``no_grad``, with any BatchNorm layers kept in eval mode so the
      validation images never touch their running statistics. Proposal sampling is random, so it runs in
      its own RNG streams (:func:`isolated_rng`, seeded by ``seed``): the numbers are comparable between epochs, and validating
      draws nothing from the training stream (the weights do not depend on whether validation ran).
    * ``val_mask_mse``: mean over all pixels of all images of ``(P − G)²`` (:func:`mask_mse`, pooled:
      large images weigh more), ``P`` from :func:`probability_map`, ``G`` the union of the lesion masks.
    * ``val_mask_dice``: pooled Dice of ``P ≥ mask_threshold`` against ``G`` over all pixels (NaN when
      neither has any pixel).
    """
    was_training = model.training
    sums = dict.fromkeys(LOSS_TERMS + ("loss_total",), 0.0)
    pixels = dict.fromkeys(("squared_error", "count", "intersection", "predicted", "truth"), 0.0)
    n_images = 0
    start = time.perf_counter()
    try:
        with isolated_rng(seed + VAL_SEED_OFFSET, device):
            for images, targets in loader:
                images, targets = to_device(images, targets, device)
                n_images += _add_losses(model, images, targets, amp, sums)
                model.eval()
                with bf16_backbone(model, amp):
                    outputs = model(images)
                for image, target, output in zip(images, targets, outputs):
                    _add_mask_pixels(output, target["masks"], image.shape[-2:], mask_threshold, pixels)
    finally:
        model.train(was_training)
    if n_images == 0:
        return {}
    out = {f"val_{k}": v / n_images for k, v in sums.items()}
    out["val_mask_mse"] = pixels["squared_error"] / pixels["count"]
    dice_denominator = pixels["predicted"] + pixels["truth"]
    out["val_mask_dice"] = 2 * pixels["intersection"] / dice_denominator if dice_denominator else float("nan")
    out["val_seconds"] = time.perf_counter() - start
    return out


def _add_losses(model: nn.Module, images, targets, amp: bool, sums: dict) -> int:
    """Add one batch's losses (train mode, BatchNorm in eval mode), weighted by its images, to ``sums``;
    return the batch size."""
    model.train()
    _batchnorm_eval(model)
    with bf16_backbone(model, amp):
        loss_dict = model(images, targets)
    batch = len(images)
    for k, v in loss_dict.items():
        sums[k] = sums.get(k, 0.0) + float(v) * batch
    sums["loss_total"] += float(sum(loss_dict.values())) * batch
    return batch


def _add_mask_pixels(output: Mapping[str, torch.Tensor], masks: torch.Tensor, shape: Sequence[int],
                     mask_threshold: float, pixels: dict) -> None:
    """Add one image's squared error and Dice pixel counts (its :func:`probability_map` against the union
    of its lesion masks) to ``pixels``."""
    prob = probability_map(output, shape)
    gt = masks.cpu()
    gt = gt.any(0) if gt.shape[0] else torch.zeros(tuple(shape), dtype=torch.bool)
    se, count = _mask_squared_error(prob, gt)
    pixels["squared_error"] += se
    pixels["count"] += count
    pred = prob >= mask_threshold
    pixels["intersection"] += float((pred & gt).sum())
    pixels["predicted"] += float(pred.sum())
    pixels["truth"] += float(gt.sum())



#: Validation box AP50 under which a run counts as stalled: fewer than one lesion in twenty found at a useful
#: rank is no detector at all, and a stray true positive in one early epoch (AP50 0.0002) must not hide that.
STALL_AP50 = 0.05


def stall_warning(history, floor: float = STALL_AP50) -> str | None:
    """A plain sentence when training stalled — validation box AP50 (``val_ap50``) below ``floor`` or
    undefined at every epoch, as on real radiographs with a recipe that does not learn — else ``None``.
    ``history``: the rows of ``history.csv`` (a DataFrame or a list of dicts)."""
    import pandas as pd

    table = pd.DataFrame(history)
    if "val_ap50" not in table or table.empty:
        return None
    ap50 = pd.to_numeric(table["val_ap50"], errors="coerce").fillna(0.0)
    if (ap50 >= floor).any():
        return None
    return (f"training stalled: validation box AP50 stayed below {floor:g} for all {len(table)} epochs (best "
            f"{ap50.max():.4f}), so the model did not learn to find lesions; the metrics below are those of a "
            "detector that finds nothing useful")
