"""RoI feature extraction on the backbone's stride-16 map: equation (8)'s RoI max pooling
(:class:`RoIMaxPool`, ``model.roi_op="pool"``) and RoIAlign, optionally as the separable matrix products
of :func:`separable_roi_align` on CPU (``model.separable_roi_align``)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.ops import MultiScaleRoIAlign, roi_pool

#: VGG-19 ("configuration E") keeps four of its five 2×2 max pools: its feature map has stride 16.
FEATURE_STRIDE = 16


class RoIMaxPool(MultiScaleRoIAlign):
    """Equation (8): ``RoI pooling(C, R) = MaxPool(C[R])`` — each proposal's window of the stride-16 map is
    divided into ``output_size × output_size`` cells and each cell max-pooled (Fast R-CNN's RoI pooling).

    It subclasses ``MultiScaleRoIAlign`` only because torchvision's ``MaskRCNN`` accepts nothing else; the
    forward pass is RoI max pooling on the single stride-16 map."""

    def __init__(self, output_size: int, featmap_name: str = "0", spatial_scale: float = 1.0 / FEATURE_STRIDE):
        super().__init__(featmap_names=[featmap_name], output_size=output_size, sampling_ratio=0)
        self.pool_size = output_size
        self.featmap_name = featmap_name
        self.spatial_scale = spatial_scale

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes) -> torch.Tensor:
        return roi_pool(x[self.featmap_name], boxes, self.pool_size, self.spatial_scale)


def _axis_weights(start: torch.Tensor, size: torch.Tensor, pooled: int, grid: int, length: int) -> torch.Tensor:
    """``(R, pooled, length)``: per RoI and output bin, the bilinear weights along one axis, averaged over
    the bin's ``grid`` samples — placed, clamped and zeroed exactly as torchvision's ``roi_align`` kernel
    does with ``aligned=False`` (sample outside ``[-1, length]``: weight 0; below 0: clamped to 0; at or
    beyond ``length - 1``: the last row)."""
    bin_size = size.clamp(min=1.0) / pooled
    steps = torch.arange(pooled, dtype=start.dtype, device=start.device)[:, None]
    offsets = (torch.arange(grid, dtype=start.dtype, device=start.device) + 0.5) / grid
    pos = start[:, None, None] + (steps + offsets)[None] * bin_size[:, None, None]  # (R, pooled, grid)
    inside = ((pos >= -1.0) & (pos <= length)).to(pos.dtype)
    pos = pos.clamp(min=0.0)
    low = pos.floor().long()
    last = low >= length - 1
    low = low.clamp(max=length - 1)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(pos), pos - low.to(pos.dtype))
    weights = torch.zeros(*pos.shape, length, dtype=pos.dtype, device=pos.device)
    weights.scatter_add_(3, low[..., None], ((1 - frac) * inside)[..., None])
    weights.scatter_add_(3, high[..., None], (frac * inside)[..., None])
    return weights.sum(2) / grid


def separable_roi_align(features: torch.Tensor, boxes: Sequence[torch.Tensor], output_size: int,
                        spatial_scale: float, sampling_ratio: int) -> torch.Tensor:
    """torchvision's ``roi_align`` (``aligned=False``, ``sampling_ratio > 0``) as two matrix products per
    image: bilinear sampling and the average over a bin's samples are separable in y and x, so each RoI's
    output is ``W_y · F · W_xᵀ``. The same linear map, so the same values and gradients (to rounding); its
    backward is a batched matrix product, which runs on every core, where torchvision's CPU backward loops
    over the RoIs on one. ``boxes``: one ``(R_i, 4)`` tensor per image, in image pixels."""
    outs = []
    for image, b in zip(features, boxes):
        s = b.to(torch.promote_types(b.dtype, torch.float32)) * spatial_scale
        wy = _axis_weights(s[:, 1], s[:, 3] - s[:, 1], output_size, sampling_ratio, image.shape[-2])
        wx = _axis_weights(s[:, 0], s[:, 2] - s[:, 0], output_size, sampling_ratio, image.shape[-1])
        rows = torch.einsum("rph,chw->rcpw", wy.to(image.dtype), image)
        outs.append(torch.einsum("rcpw,rqw->rcpq", rows, wx.to(image.dtype)))
    return torch.cat(outs) if outs else features.new_zeros(0, features.shape[1], output_size, output_size)


class SeparableRoIAlign(MultiScaleRoIAlign):
    """RoIAlign on the stride-16 map that uses :func:`separable_roi_align` for CPU features (the values of
    torchvision's op, a faster backward on several cores) and torchvision's op elsewhere
    (``model.separable_roi_align``)."""

    def __init__(self, output_size: int, sampling_ratio: int = 2, featmap_name: str = "0",
                 spatial_scale: float = 1.0 / FEATURE_STRIDE):
        super().__init__(featmap_names=[featmap_name], output_size=output_size, sampling_ratio=sampling_ratio)
        self.pool_size, self.featmap_name, self.spatial_scale = output_size, featmap_name, spatial_scale

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes) -> torch.Tensor:
        features = x[self.featmap_name]
        if features.device.type != "cpu":
            return super().forward(x, boxes, image_shapes)
        return separable_roi_align(features, boxes, self.pool_size, self.spatial_scale, self.sampling_ratio)


def roi_op(kind: str, output_size: int, separable: bool = False) -> nn.Module:
    """The RoI feature extractor ``model.roi_op`` names, for a head of ``output_size`` bins: equation (8)'s
    max pooling (``"pool"``), or RoIAlign — separable on CPU when ``separable``."""
    if kind == "pool":
        return RoIMaxPool(output_size)
    if separable:
        return SeparableRoIAlign(output_size, sampling_ratio=2)
    return MultiScaleRoIAlign(featmap_names=["0"], output_size=output_size, sampling_ratio=2)
