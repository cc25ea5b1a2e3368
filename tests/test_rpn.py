"""model.rpn_objectness_loss: focal — the RPN's objectness trained with RetinaNet's focal loss."""

import math

import pytest
import torch

from bonetumor import config
from bonetumor.modeling import rpn as focal_rpn
from bonetumor.modeling.vgg_maskrcnn import build_model


def _model(loss: str, **update):
    settings = config.load("smoke").model.model_copy(update={"rpn_objectness_loss": loss, "width": 0.0625, **update})
    return build_model(settings, image_size=96)


def test_focal_rpn_keeps_every_setting_of_the_rpn_it_replaces():
    torch.manual_seed(0)
    bce, focal = _model("bce", rpn_batch_size_per_image=32).rpn, _model("focal", rpn_batch_size_per_image=32).rpn
    assert type(bce) is not focal_rpn.FocalObjectnessRPN and isinstance(focal, focal_rpn.FocalObjectnessRPN)
    assert focal.fg_bg_sampler.batch_size_per_image == 32 and focal.fg_bg_sampler.positive_fraction == 0.5
    assert focal.proposal_matcher.high_threshold == bce.proposal_matcher.high_threshold
    assert focal.proposal_matcher.low_threshold == bce.proposal_matcher.low_threshold
    assert focal._pre_nms_top_n == bce._pre_nms_top_n and focal._post_nms_top_n == bce._post_nms_top_n
    assert focal.nms_thresh == bce.nms_thresh and focal.anchor_generator.sizes == bce.anchor_generator.sizes
    assert torch.allclose(focal.head.cls_logits.bias, torch.full_like(focal.head.cls_logits.bias, -math.log(99)))


def test_focal_objectness_loss_is_retinanets_over_labelled_anchors():
    torch.manual_seed(0)
    rpn = _model("focal").rpn
    logits = torch.randn(10)
    labels = [torch.tensor([1.0, 0.0, 0.0, -1.0, 0.0]), torch.tensor([0.0, 1.0, -2.0, 0.0, 0.0])]
    deltas, targets = torch.randn(10, 4), [torch.randn(5, 4), torch.randn(5, 4)]
    loss, box_loss = rpn.compute_loss(logits, deltas, labels, targets)
    flat = torch.cat(labels)
    expected = 0.0
    for x, y in zip(logits.tolist(), flat.tolist()):
        if y < 0:
            continue  # ignored anchors train nothing
        p = 1 / (1 + math.exp(-x))
        p_t, alpha_t = (p, 0.25) if y == 1 else (1 - p, 0.75)
        expected += -alpha_t * (1 - p_t) ** 2 * math.log(p_t)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-5)  # two positive anchors
    bce = _model("bce").rpn
    torch.manual_seed(1)
    _, bce_box = bce.compute_loss(logits, deltas, labels, targets)
    torch.manual_seed(1)
    _, focal_box = rpn.compute_loss(logits, deltas, labels, targets)
    assert focal_box.item() == pytest.approx(bce_box.item())  # box regression as torchvision computes it


def test_detector_with_focal_objectness_trains():
    torch.manual_seed(0)
    model = _model("focal")
    masks = torch.zeros(1, 96, 96, dtype=torch.uint8)
    masks[0, 20:60, 10:50] = 1
    target = {"boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]), "labels": torch.tensor([2]), "masks": masks}
    losses = model([torch.rand(3, 96, 96)], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.rpn.head.cls_logits.weight.grad.abs().sum() > 0


def test_objectness_loss_at_its_default_keeps_run_names():
    quick = config.load("quick")
    assert config.load("quick", {"model": {"rpn_objectness_loss": "bce"}}).run_name == quick.run_name
    assert config.load("quick", {"model": {"rpn_objectness_loss": "focal"}}).run_name != quick.run_name
