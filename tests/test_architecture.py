import json
import warnings

import pandas as pd
import pytest
import torch

from bonetumor import architecture, cli, config
from bonetumor.modeling import vgg_maskrcnn
from bonetumor.modeling.roi_ops import RoIMaxPool
from bonetumor.modeling.vgg_maskrcnn import build_model, parameter_count


@pytest.fixture(scope="module")
def table1():
    return architecture.table1()


def test_table1_equals_the_paper_row_by_row(table1):
    comparison = architecture.compare_with_paper(table1)
    assert comparison["match"].all(), comparison[~comparison["match"]]
    params = table1["parameters"].dropna()
    assert len(params) == 19
    assert params.iloc[0] == 1_792 and params.iloc[-1] == 4_097_000
    assert int(params.sum()) == 143_667_240


def test_compare_detects_a_wrong_row(table1):
    broken = table1.copy()
    broken.loc[1, "parameters"] = 1_793
    comparison = architecture.compare_with_paper(broken)
    assert comparison["match"].sum() == len(broken) - 1 and not comparison.loc[1, "match"]


def test_cli_prints_table1_as_json(capsys):
    assert cli.main(["architecture", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["table1"]
    assert len(rows) == 26 and sum(r["parameters"] or 0 for r in rows) == 143_667_240
    assert all(r["matches_paper"] for r in rows)


def _targets():
    masks = torch.zeros(1, 96, 80, dtype=torch.uint8)
    masks[0, 20:60, 10:50] = 1
    return [{"boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]), "labels": torch.tensor([2]), "masks": masks},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 72, 96, dtype=torch.uint8)}]


@pytest.mark.parametrize("roi_op", ["align", "pool"])
def test_detector_trains_and_predicts(roi_op):
    torch.manual_seed(0)
    settings = config.load("smoke").model.model_copy(update={"roi_op": roi_op, "width": 0.0625})
    model = build_model(settings, image_size=96)
    images = [torch.rand(3, 96, 80), torch.rand(3, 72, 96)]
    losses = model(images, _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.body[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out[0]["masks"].shape[-2:] == (96, 80) and out[1]["masks"].shape[-2:] == (72, 96)
    pool = model.roi_heads.box_roi_pool
    assert isinstance(pool, RoIMaxPool) == (roi_op == "pool")


def test_roi_max_pool_is_max_pooling():
    features = {"0": torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)}
    pool = RoIMaxPool(output_size=2, spatial_scale=1.0)
    out = pool(features, [torch.tensor([[0.0, 0.0, 7.0, 7.0]])], [(8, 8)])
    assert out.flatten().tolist() == [27.0, 31.0, 59.0, 63.0]


def test_backbone_is_vgg19_without_last_pool():
    features, init = vgg_maskrcnn.vgg19_features(width=1.0)
    assert init == "random"
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 16 and len(pools) == 4
    assert parameter_count(features) == 20_024_384  # Table 1's 16 conv rows
    out = features(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 512, 4, 4)


def test_width_multiplier_scales_channels():
    features, _ = vgg_maskrcnn.vgg19_features(width=0.25)
    assert features[-2].out_channels == 128


@pytest.mark.parametrize("backbone, norm", [("vgg19_bn", torch.nn.BatchNorm2d), ("vgg19_gn", torch.nn.GroupNorm)])
def test_normalised_backbones_put_one_norm_after_each_conv(backbone, norm):
    features, init = vgg_maskrcnn.vgg19_features(width=0.125, backbone=backbone)
    layers = list(features)
    convs = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and init == "random"
    assert all(isinstance(layers[i + 1], norm) for i in convs)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) and not isinstance(m, norm) for m in layers)
    if backbone == "vgg19_gn":
        # 8-channel layers: 2 groups of 4; 64 channels: 16 groups; the paper's 512: 32 groups
        assert [layers[i + 1].num_groups for i in convs][:2] == [2, 2]
        assert layers[convs[-1] + 1].num_groups == 16
        assert vgg_maskrcnn.group_norm_groups(512) == 32 and vgg_maskrcnn.group_norm_groups(3) == 1


def test_group_norm_output_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    features, _ = vgg_maskrcnn.vgg19_features(width=0.125, backbone="vgg19_gn")
    features.train()
    images = torch.rand(3, 3, 64, 64)
    alone = features(images[:1])
    together = features(images)[:1]
    assert torch.allclose(alone, together, atol=1e-5)


def test_group_norm_backbone_has_no_imagenet_weights():
    with pytest.warns(UserWarning, match="no ImageNet weights.*group norm"):
        _, init = vgg_maskrcnn.vgg19_features(width=1.0, backbone="vgg19_gn", pretrained=True)
    assert init == "random"


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="vgg16.*vgg19_gn"):
        vgg_maskrcnn.vgg19_features(backbone="vgg16")


def test_imagenet_weights_unavailable_warns_and_falls_back(monkeypatch):
    def offline(self, progress=True):
        raise OSError("no network")

    monkeypatch.setattr(vgg_maskrcnn.VGG19_Weights, "get_state_dict", offline)
    with pytest.warns(UserWarning, match="not available.*random initialisation"):
        _, init = vgg_maskrcnn.vgg19_features(width=1.0, pretrained=True)
    assert init == "random"


def test_imagenet_weights_are_loaded_when_available(monkeypatch):
    from torchvision.models import vgg19

    reference = vgg19(weights=None).state_dict()
    monkeypatch.setattr(vgg_maskrcnn.VGG19_Weights, "get_state_dict", lambda self, progress=True: reference)
    settings = config.load("full").model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_model(settings, image_size=128)
    assert model.init == "imagenet"
    assert torch.equal(model.backbone.body[0].weight, reference["features.0.weight"])
    assert model.normalisation["source"] == "imagenet"
    # the training images' grey statistics never replace what the ImageNet weights expect (issue 12)
    given = build_model(settings, image_size=128, image_mean=[0.3], image_std=[0.2])
    assert given.normalisation == {"source": "imagenet", "mean": list(vgg_maskrcnn.IMAGENET_MEAN),
                                   "std": list(vgg_maskrcnn.IMAGENET_STD)}
    assert given.transform.image_mean == list(vgg_maskrcnn.IMAGENET_MEAN)


def test_normalisation_is_explicit():
    settings = config.load("smoke").model
    neutral = build_model(settings, image_size=64)
    assert neutral.normalisation["source"] == "neutral" and neutral.transform.image_mean == [0.5] * 3
    given = build_model(settings, image_size=64, image_mean=[0.4], image_std=[0.2])
    assert given.normalisation["source"] == "given" and given.transform.image_std == [0.2] * 3
    with pytest.raises(ValueError, match="normalisation"):
        build_model(settings, image_size=64, image_mean=[0.1, 0.2], image_std=[0.2])


def test_detector_summary_adds_up():
    model = build_model(config.load("smoke").model, image_size=64)
    summary = architecture.detector_summary(model)
    assert summary["parameters"].iloc[:-1].sum() == summary["parameters"].iloc[-1] == parameter_count(model)


def test_trace_shows_every_part():
    model = build_model(config.load("smoke").model.model_copy(update={"width": 0.0625}), image_size=96)
    trace = architecture.trace_detector(model, torch.rand(3, 96, 64))
    assert isinstance(trace, pd.DataFrame)
    assert (trace["output shape"] != "not run").all()
    assert trace.loc[0, "output shape"] == f"0: (1, {model.backbone.out_channels}, 6, 4)"
