"""model.lesion_map_weight — a dense, training-only lesion-map loss on the backbone's features."""

import math

import pytest
import torch

from bonetumor import config
from bonetumor.modeling import lesion_map
from bonetumor.modeling.rpn import FocalObjectnessRPN
from bonetumor.modeling.vgg_maskrcnn import build_model


def _model(weight: float, **update):
    settings = config.load("smoke").model.model_copy(update={"lesion_map_weight": weight, "width": 0.0625, **update})
    return build_model(settings, image_size=96)


def _target(label: int = 2):
    masks = torch.zeros(1, 96, 96, dtype=torch.uint8)
    masks[0, 20:60, 10:50] = 1
    return {"boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]), "labels": torch.tensor([label]), "masks": masks}


def test_lesion_cells_mark_every_cell_a_lesion_pixel_falls_in():
    masks = torch.zeros(2, 40, 48, dtype=torch.uint8)
    masks[0, 0:1, 0:1] = 1      # one pixel, cell (0, 0)
    masks[1, 17:33, 33:40] = 1  # rows 17-32 → cells 1-2, columns 33-39 → cell 2
    cells = lesion_map.lesion_cells(masks, (4, 4), (64, 64))
    expected = torch.zeros(4, 4)
    expected[0, 0] = 1
    expected[1:3, 2] = 1
    assert torch.equal(cells, expected)
    empty = lesion_map.lesion_cells(torch.zeros(0, 40, 48, dtype=torch.uint8), (4, 4), (64, 64))
    assert torch.equal(empty, torch.zeros(4, 4))


def test_balanced_bce_weighs_lesion_and_background_cells_equally():
    logits = torch.tensor([[2.0, -1.0], [0.5, -3.0]])
    cells = torch.tensor([[1.0, 0.0], [0.0, 0.0]])

    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    lesion = bce(2.0, 1)
    background = (bce(-1.0, 0) + bce(0.5, 0) + bce(-3.0, 0)) / 3
    assert lesion_map.balanced_bce(logits, cells).item() == pytest.approx(0.5 * (lesion + background), rel=1e-6)
    assert lesion_map.balanced_bce(logits, torch.zeros_like(cells)).item() == pytest.approx(
        (bce(2.0, 0) + 3 * background) / 4, rel=1e-6)


def test_detector_with_a_lesion_map_trains_the_backbone_through_it_and_predicts_as_before():
    torch.manual_seed(0)
    model = _model(0.5)
    assert type(model.rpn) is lesion_map.LesionMapRPN
    bias = model.rpn.lesion_map[-1].bias
    assert torch.allclose(bias, torch.full_like(bias, -math.log(99)))
    normal = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros(0, 96, 96, dtype=torch.uint8)}
    losses = model([torch.rand(3, 96, 96), torch.rand(3, 96, 96)], [_target(), normal])
    assert set(losses) >= {"loss_objectness", "loss_lesion_map"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_lesion_map"].backward()
    assert model.rpn.lesion_map[0].weight.grad.abs().sum() > 0
    assert next(model.backbone.parameters()).grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (output,) = model([torch.rand(3, 96, 96)])
    assert set(output) == {"boxes", "labels", "scores", "masks"}


def test_lesion_map_weight_scales_the_loss_and_zero_adds_nothing():
    torch.manual_seed(0)
    heavy = _model(2.0)
    light = _model(1.0)
    light.load_state_dict(heavy.state_dict())
    image = torch.rand(3, 96, 96)
    torch.manual_seed(1)
    a = heavy([image], [_target()])["loss_lesion_map"]
    torch.manual_seed(1)
    b = light([image], [_target()])["loss_lesion_map"]
    assert a.item() == pytest.approx(2 * b.item(), rel=1e-5)
    plain = _model(0.0)
    assert "loss_lesion_map" not in plain([image], [_target()])
    assert not hasattr(plain.rpn, "lesion_map")


def test_lesion_map_combines_with_focal_objectness():
    model = _model(1.0, rpn_objectness_loss="focal")
    assert isinstance(model.rpn, FocalObjectnessRPN) and isinstance(model.rpn, lesion_map.LesionMapFocalRPN)
    assert "loss_lesion_map" in model([torch.rand(3, 96, 96)], [_target()])


def test_lesion_map_weight_at_its_default_keeps_run_names():
    quick = config.load("quick")
    assert config.load("quick", {"model": {"lesion_map_weight": 0.0}}).run_name == quick.run_name
    assert config.load("quick", {"model": {"lesion_map_weight": 1.0}}).run_name != quick.run_name
