"""The Region Proposal Network's objectness loss as a focal loss (``model.rpn_objectness_loss: focal``).

torchvision's RPN scores objectness (the paper's equation 7) with binary cross-entropy on a sample of anchors
per image, at most half of them positive. A small lesion matches one or two anchors, so on radiographs the
sampled loss is dominated by easy background and the RPN can settle on "background everywhere" (issue 12's
experiment log). The focal loss of Lin et al. (2017, RetinaNet) instead weighs *every* labelled anchor by
``alpha_t (1 - p_t)^gamma`` — easy negatives count almost nothing — and is normalised by the number of
positive anchors. Box regression (equation 6) is left as torchvision computes it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import sigmoid_focal_loss

#: RetinaNet's prior: objectness logits start at the log-odds of 1 % foreground, so the many background
#: anchors do not swamp the first steps of a from-scratch network.
PRIOR_FOREGROUND = 0.01


class FocalObjectnessRPN(RegionProposalNetwork):
    """An RPN whose objectness loss is the sigmoid focal loss over all anchors that are not ignored."""

    alpha: float = 0.25
    gamma: float = 2.0

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        _, box_loss = super().compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)
        labels = torch.cat(labels, dim=0)
        labelled = labels >= 0  # -1: between the IoU thresholds, -2: discarded; neither trains objectness
        positives = (labels[labelled] == 1).sum().clamp(min=1)
        loss = sigmoid_focal_loss(objectness.flatten()[labelled], labels[labelled], alpha=self.alpha,
                                  gamma=self.gamma, reduction="sum") / positives
        return loss, box_loss


def with_focal_objectness(rpn: RegionProposalNetwork) -> FocalObjectnessRPN:
    """The same RPN (anchors, head, sampler, NMS settings, weights) with the focal objectness loss and the
    objectness logits' bias set to :data:`PRIOR_FOREGROUND`."""
    focal = FocalObjectnessRPN(
        rpn.anchor_generator, rpn.head,
        fg_iou_thresh=rpn.proposal_matcher.high_threshold, bg_iou_thresh=rpn.proposal_matcher.low_threshold,
        batch_size_per_image=rpn.fg_bg_sampler.batch_size_per_image,
        positive_fraction=rpn.fg_bg_sampler.positive_fraction,
        pre_nms_top_n=dict(rpn._pre_nms_top_n), post_nms_top_n=dict(rpn._post_nms_top_n),
        nms_thresh=rpn.nms_thresh, score_thresh=rpn.score_thresh)
    torch.nn.init.constant_(focal.head.cls_logits.bias, -math.log((1 - PRIOR_FOREGROUND) / PRIOR_FOREGROUND))
    return focal
