"""``bonetumor bench`` and the fast-path settings it measures: it runs and reports sane structure (not timings:
these machines are noisy); the separable RoIAlign is torchvision's op; the fast path leaves old runs' names."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.ops import roi_align

from bonetumor import benchmark, cli, config
from bonetumor.benchmark.workload import copy_weights
from bonetumor.modeling import vgg_maskrcnn
from bonetumor.modeling.roi_ops import separable_roi_align
from bonetumor.modeling.vgg_maskrcnn import build_model

TINY = ["--repeats", "1", "--warmup", "0", "--iters", "1", "--infer-batch", "2", "--set", "data.image_size=96"]


def _boxes(n: int, size: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * (size + 40) - 20
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size / 2
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[0] = torch.tensor([3.0, 4.0, 3.2, 4.1])  # thinner than one cell
    boxes[1] = torch.tensor([-40.0, -40.0, -20.0, -18.0])  # wholly outside
    boxes[2] = torch.tensor([size - 10, size - 12, size + 30, size + 25])  # over the last row and column
    return boxes


@pytest.mark.parametrize("output_size", [7, 14])
def test_separable_roi_align_is_torchvisions_op(output_size):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)
    boxes = [_boxes(13, 160.0, 1), _boxes(6, 160.0, 2)]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), dtype=torch.float64), b], 1)
                      for i, b in enumerate(boxes)])
    ours = separable_roi_align(features, boxes, output_size, 1 / 16, 2)
    theirs = roi_align(features, rois, output_size, 1 / 16, 2, aligned=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    grad = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(ours, features, grad)[0],
                               torch.autograd.grad(theirs, features, grad)[0], rtol=1e-12, atol=1e-12)
    small = features[:1, :1, :4, :5].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda f: separable_roi_align(f, [boxes[0][:4] / 2], 2, 1 / 16, 2), (small,))


def test_fast_path_model_gives_the_same_losses_and_features():
    settings = config.load("smoke")
    plain = build_model(settings.model, 96)
    fast = build_model(settings.model.model_copy(update={"separable_roi_align": True, "channels_last": True}), 96)
    fast.load_state_dict(plain.state_dict())
    images, targets = benchmark.synthetic_batch(2, 96, seed=3)
    x = torch.stack(images)
    torch.testing.assert_close(fast.backbone(x)["0"], plain.backbone(x)["0"], rtol=1e-3, atol=1e-3)
    assert fast.backbone(x)["0"].is_contiguous()
    separable = build_model(settings.model.model_copy(update={"separable_roi_align": True}), 96)
    separable.load_state_dict(plain.state_dict())
    torch.manual_seed(0)
    want = plain(images, targets)
    torch.manual_seed(0)
    got = separable(images, targets)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_cpu_bf16_is_wanted_only_where_native(monkeypatch):
    on = config.load("smoke", {"train": {"cpu_bf16": True}})
    off = config.load("smoke")
    monkeypatch.setattr(vgg_maskrcnn, "cpu_bf16_supported", lambda: True)
    assert vgg_maskrcnn.autocast_wanted(on, "cpu") and not vgg_maskrcnn.autocast_wanted(off, "cpu")
    monkeypatch.setattr(vgg_maskrcnn, "cpu_bf16_supported", lambda: False)
    assert not vgg_maskrcnn.autocast_wanted(on, "cpu")
    model = build_model(off.model, 64)
    with vgg_maskrcnn.bf16_backbone(model, True):  # the CPU autocast path itself, wherever it runs
        assert model.backbone(torch.rand(1, 3, 64, 64))["0"].dtype == torch.float32
    assert model.backbone.bf16 is False


def test_fast_path_settings_at_their_defaults_keep_old_fingerprints():
    # the quick profile as it was before these fields existed (it now sets some of them)
    before = {"model": {"separable_roi_align": False, "rpn_batch_size_per_image": 256}, "data": {"phantom_version": 1}}
    settings = config.load("quick", before)
    assert settings.run_name == "quick-phantom-9180b585"  # the run name from before the fields existed
    dumped = settings.model_dump(mode="json")
    for section, names in {"model": ("channels_last", "separable_roi_align", "rpn_batch_size_per_image"),
                           "train": ("cpu_bf16",), "data": ("phantom_version",)}.items():
        for name in names:
            dumped[section].pop(name)
    assert config.Settings.model_validate(dumped).training_fingerprint() == settings.training_fingerprint()
    for override in ({"model": {"channels_last": True}}, {"model": {"separable_roi_align": True}},
                     {"train": {"cpu_bf16": True}}, {"model": {"rpn_batch_size_per_image": 32}},
                     {"data": {"phantom_version": 2}}):
        merged = {section: {**before.get(section, {}), **override.get(section, {})} for section in {*before, *override}}
        assert config.load("quick", merged).training_fingerprint() != settings.training_fingerprint()


def test_rpn_samples_the_anchors_the_settings_ask_for():
    model = build_model(config.load("smoke").model.model_copy(update={"rpn_batch_size_per_image": 32}), 96)
    assert model.rpn.fg_bg_sampler.batch_size_per_image == 32 and model.rpn.fg_bg_sampler.positive_fraction == 0.5
    assert build_model(config.load("smoke").model, 96).rpn.fg_bg_sampler.batch_size_per_image == 256


def test_stock_composition_is_the_same_network():
    settings = config.load("smoke")
    project = build_model(settings.model, 96)
    stock = benchmark.stock_model(settings.model, 96, project.normalisation["mean"], project.normalisation["std"])
    copy_weights(project, stock)
    assert sum(p.numel() for p in stock.parameters()) == sum(p.numel() for p in project.parameters())
    images, targets = benchmark.synthetic_batch(2, 96, seed=1)
    torch.manual_seed(0)
    want = project(images, targets)
    torch.manual_seed(0)
    got = stock(images, targets)
    assert {k: float(v.detach()) for k, v in got.items()} == {k: float(v.detach()) for k, v in want.items()}


def test_bench_runs_and_reports(tmp_path, capsys):
    assert cli.main(["bench", "--profile", "smoke", "--fast", "--device", "cpu", "--json", "--out", str(tmp_path),
                     *TINY]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["environment"]["threads"] >= 1 and result["environment"]["torch"] == torch.__version__
    assert result["settings"]["separable_roi_align"] and result["settings"]["profile"] == "smoke"
    res = result["results"]
    for case, measures in (("stock", 3), ("project", 3), ("bound", 1)):
        assert len(res[case]) == measures + 2 and res[case]["peak_memory_mib"] > 0
        assert 0 <= res[case]["memory_increase_mib"] <= res[case]["peak_memory_mib"]
        assert all(stats["median"] > 0 for key, stats in res[case].items() if not key.endswith("_mib"))
    ratio = result["ratios"]["train_project_over_stock"]["median_of_medians"]
    assert ratio == pytest.approx(res["project"]["train_images_per_s"]["median"]
                                  / res["stock"]["train_images_per_s"]["median"])
    csv = (tmp_path / "benchmark.csv").read_text()
    assert csv.startswith("case,measure,median") and "(b)/(a) training images/s" in csv.splitlines()[-1]
    assert "| case |" in (tmp_path / "benchmark.md").read_text()


def test_loader_rate_counts_images():
    images, targets = benchmark.synthetic_batch(6, 32, seed=0)
    out = benchmark.loader_rate(list(zip(images, targets)), config.load("smoke"), "cpu", batches=2, repeats=1)
    assert out["images_per_s"]["median"] > 0 and out["num_workers"] == 0
