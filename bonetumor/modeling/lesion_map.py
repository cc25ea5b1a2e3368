"""A dense, training-only lesion-map loss on the backbone's features (``model.lesion_map_weight``).

Mask R-CNN learns where lesions are only through the RPN's few sampled anchors and the RoI heads' few sampled
proposals: a small lesion matches one or two anchors, so each step carries little signal about it (issue 12's
experiment log: the recipe memorises 32 phantom images only after thousands of steps). This adds a second,
dense signal: a small head (3×3 conv, ReLU, 1×1 conv) predicts, for every cell of the stride-16 feature map,
whether a lesion touches it, and its class-balanced binary cross-entropy is added to the detector's losses as
``loss_lesion_map``. Every cell of every image, normal images included, is labelled, so every step teaches
the backbone something about lesions. The head is used in training only; inference is Mask R-CNN's as before.
Auxiliary dense losses of this kind are an established addition to detectors (e.g. Zhang et al., 2018,
"Single-shot object detection with enriched semantics"); the paper has none.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.rpn import RegionProposalNetwork

from bonetumor.modeling.rpn import FocalObjectnessRPN

#: Lesion-map logits start at the log-odds of 1 % lesion cells, so the first steps are not spent unlearning
#: a 50 % guess on a map that is mostly background.
PRIOR_LESION = 0.01


def lesion_cells(masks: Tensor, shape: tuple[int, int], padded: tuple[int, int]) -> Tensor:
    """``(h, w)`` float map: 1 where any pixel of any of ``masks`` (``(N, H, W)``, an image's lesions at its
    size ``H × W`` inside the padded batch of size ``padded``) falls in the feature-map cell, 0 elsewhere;
    ``shape`` is the feature map's ``(h, w)``."""
    union = masks.amax(0).float() if len(masks) else masks.new_zeros(masks.shape[-2:], dtype=torch.float32)
    union = F.pad(union, (0, padded[1] - union.shape[-1], 0, padded[0] - union.shape[-2]))
    return F.adaptive_max_pool2d(union[None, None], shape)[0, 0]


def balanced_bce(logits: Tensor, cells: Tensor) -> Tensor:
    """Class-balanced binary cross-entropy: the mean over lesion cells and the mean over background cells,
    averaged (background only when the batch has no lesion cell), so that a lesion's few cells weigh as much
    as the background around it."""
    losses = F.binary_cross_entropy_with_logits(logits, cells, reduction="none")
    lesion = cells > 0.5
    background_loss = losses[~lesion].mean() if (~lesion).any() else logits.new_zeros(())
    if not lesion.any():
        return background_loss
    return 0.5 * (losses[lesion].mean() + background_loss)


class LesionMapHead(nn.Sequential):
    """3×3 conv (``channels`` → ``channels``), ReLU, 1×1 conv to one lesion logit per cell."""

    def __init__(self, channels: int):
        super().__init__(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, 1, 1))
        nn.init.constant_(self[-1].bias, -math.log((1 - PRIOR_LESION) / PRIOR_LESION))


class _LesionMapLoss:
    """Mixed into the RPN's class by :func:`with_lesion_map`: the RPN is the one module of torchvision's
    Mask R-CNN that sees both the backbone's features and the (resized) targets in training."""

    lesion_map: LesionMapHead
    lesion_map_weight: float

    def forward(self, images, features, targets=None):
        boxes, losses = super().forward(images, features, targets)
        if self.training and targets is not None:
            feature = next(iter(features.values()))
            logits = self.lesion_map(feature)[:, 0]
            padded = tuple(images.tensors.shape[-2:])
            cells = torch.stack([lesion_cells(t["masks"], logits.shape[-2:], padded) for t in targets])
            losses = {**losses, "loss_lesion_map": self.lesion_map_weight * balanced_bce(logits, cells.to(logits))}
        return boxes, losses


class LesionMapRPN(_LesionMapLoss, RegionProposalNetwork):
    """torchvision's RPN plus the lesion-map loss."""


class LesionMapFocalRPN(_LesionMapLoss, FocalObjectnessRPN):
    """The focal-objectness RPN plus the lesion-map loss."""


_WITH_LESION_MAP = {RegionProposalNetwork: LesionMapRPN, FocalObjectnessRPN: LesionMapFocalRPN}


def with_lesion_map(rpn: RegionProposalNetwork, channels: int, weight: float) -> RegionProposalNetwork:
    """The same RPN object (settings, weights, objectness loss) that in training also returns
    ``loss_lesion_map``, ``weight`` × :func:`balanced_bce` of a :class:`LesionMapHead` on ``channels``-channel
    features (added as ``rpn.lesion_map``)."""
    if type(rpn) not in _WITH_LESION_MAP:
        raise TypeError(f"no lesion-map variant of {type(rpn).__name__}")
    rpn.__class__ = _WITH_LESION_MAP[type(rpn)]
    rpn.add_module("lesion_map", LesionMapHead(channels))
    rpn.lesion_map_weight = float(weight)
    return rpn
