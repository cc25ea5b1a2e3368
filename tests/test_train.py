"""The training loop: exact resume, determinism, weights-only checkpoints, non-finite stop, Ctrl-C,
history, a loss that falls when overfitting, validation mask MSE, and the ``bonetumor train`` command.

Everything runs a tiny model (width 1/16) on a handful of 64–80 px synthetic images, on CPU."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from bonetumor import cli, config, pipeline
from bonetumor.devices import device_for
from bonetumor.engine.loop import NonFiniteLossError, make_loader
from bonetumor.engine.schedule import WARMUP_START, lr_factor
from bonetumor.engine.trainer import train
from bonetumor.engine.validation import mask_mse, probability_map, validate
from bonetumor.modeling.checkpoints import (CHECKPOINT_FORMAT, load_checkpoint, load_model, read_run_info,
                                            resolve_run)
from bonetumor.modeling.vgg_maskrcnn import LOSS_TERMS, build_model

MEAN, STD = [0.3], [0.2]


class Ellipses(torch.utils.data.Dataset):
    """The Dataset contract (image float32 [3,H,W] in [0,1]; boxes XYXY, labels 1/2, masks uint8 [N,H,W],
    image_id): dark noisy images with 0–2 bright ellipse lesions; ``normal`` images have none."""

    def __init__(self, n: int = 6, seed: int = 0, normal_every: int = 3, fail_at: int | None = None):
        self.items = [self._make(i, seed, normal_every) for i in range(n)]
        self.fail_at, self.calls = fail_at, 0

    @staticmethod
    def _make(i: int, seed: int, normal_every: int):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        h, w = 64, 64 + 8 * (i % 3)
        image = torch.rand(1, h, w, generator=g) * 0.25
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        masks, boxes, labels = [], [], []
        if normal_every and i % normal_every == normal_every - 1:
            pass  # a normal image
        else:
            for _ in range(1 + i % 2):
                cx, cy = (torch.rand(2, generator=g) * torch.tensor([w - 30, h - 30]) + 15).tolist()
                ax, ay = (torch.rand(2, generator=g) * 6 + 7).tolist()
                m = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1
                image[0][m] += 0.6 if i % 2 else 0.45
                ys, xs = torch.where(m)
                masks.append(m.to(torch.uint8))
                boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
                labels.append(1 + i % 2)
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.uint8),
            "image_id": i + 1,
        }
        return image.clamp(0, 1).expand(3, h, w).contiguous(), target

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt
        # augmentation drawing from torch's, numpy's and Python's global generators, as a Dataset may:
        # an exact resume must restore all three
        flip = torch.rand(()).item() < 0.5
        gain = 0.9 + 0.1 * np.random.rand() + 0.1 * random.random()
        image, target = self.items[index]
        image = (image * gain).clamp(0, 1)
        if not flip:
            return image, target
        w = image.shape[-1]
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
        return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def tiny_settings(epochs: int = 3, seed: int = 0, **train) -> config.Settings:
    return config.Settings.model_validate({
        "profile": "test", "seed": seed,
        "data": {"image_size": 64},
        "model": {"width": 0.0625, "pretrained": False, "anchor_sizes": [16, 32]},
        "train": {"epochs": epochs, "batch_size": 2, "lr": 0.01, "warmup_iters": 2, "num_workers": 0, **train},
    })


def run(tmp_path, name, settings=None, train_set=None, val_set="default", **kwargs):
    settings = settings or tiny_settings()
    train_set = train_set if train_set is not None else Ellipses(6)
    val_set = Ellipses(3, seed=1) if val_set == "default" else val_set
    summary = train(settings, train_set, val_set, tmp_path / name, MEAN, STD, device="cpu",
                       progress="off", **kwargs)
    return summary


def weights(path):
    return load_checkpoint(path)["model"]


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A complete 3-epoch run with validation, never interrupted."""
    root = tmp_path_factory.mktemp("reference")
    summary = run(root, "ref")
    return root / "ref", summary


# ---- the run and its files ---------------------------------------------------------------------------

def test_run_writes_history_checkpoints_and_run_json(reference):
    run_dir, summary = reference
    assert summary["status"] == "complete" and summary["epochs_done"] == 3
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    expected = {"epoch", *LOSS_TERMS, "loss_total", "lr", "grad_norm", *(f"val_{t}" for t in LOSS_TERMS),
                "val_loss_total", "val_mask_mse", "val_mask_dice", "seconds", "train_seconds", "val_seconds",
                "images_per_s"}
    assert expected <= set(history.columns), expected - set(history.columns)
    np.testing.assert_allclose(history[list(LOSS_TERMS)].sum(axis=1), history["loss_total"], rtol=1e-5)
    assert (history[["loss_total", "val_loss_total", "seconds", "images_per_s"]] > 0).all().all()
    assert history["val_mask_mse"].between(0, 1).all()
    # the cosine schedule over 3 epochs × 3 iterations decays: each epoch ends at a lower rate
    assert history["lr"].is_monotonic_decreasing and history["lr"].iloc[0] <= 0.01

    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["epochs_done"] == 3
    assert info["normalisation"] == {"mean": MEAN * 3, "std": STD * 3}
    assert info["init"] == "random" and info["deterministic"] is True
    # one process (no torchrun): no process group, the profile's batch and learning rate as they are
    assert (info["world_size"], info["global_batch_size"], info["lr_applied"]) == (1, 2, 0.01)
    assert info["best"]["metric"] == "val_loss_total"
    best_epoch = int(history["val_loss_total"].idxmin()) + 1
    assert info["best"]["epoch"] == summary["best_epoch"] == best_epoch
    assert not (run_dir / "interrupted.pt").exists()


def test_every_checkpoint_loads_weights_only(reference):
    run_dir, _ = reference
    for name in ("last.pt", "best.pt"):
        raw = torch.load(run_dir / name, weights_only=True)
        assert raw["format"] == CHECKPOINT_FORMAT
        assert isinstance(raw["settings"], str)
        assert {"model", "optimizer", "scheduler", "rng", "normalisation", "history", "best"} <= raw.keys()
        assert {"torch", "numpy", "python", "loader"} <= raw["rng"].keys()
    last, best = load_checkpoint(run_dir / "last.pt"), load_checkpoint(run_dir / "best.pt")
    assert last["epoch"] == 3 and best["epoch"] == last["best"]["epoch"]
    assert config.Settings.model_validate(last["settings"]) == tiny_settings()
    # model.safetensors holds the best epoch's weights; load_model rebuilds that model
    safe = load_file(str(run_dir / "model.safetensors"))
    assert_same_weights(safe, best["model"])
    model, info = load_model(run_dir)
    assert not model.training and info["weights"].endswith("model.safetensors")
    assert_same_weights(model.state_dict(), best["model"])
    model, _ = load_model(run_dir, which="last")
    assert_same_weights(model.state_dict(), last["model"])
    with torch.no_grad():
        out = model([Ellipses(1)[0][0]])
    assert out[0]["masks"].shape[-2:] == (64, 64)


def test_read_run_info_validates_run_json(reference, tmp_path):
    run_dir, _ = reference
    run = read_run_info(run_dir)
    assert run.settings == tiny_settings() and run.status == "complete" and run.init == "random"
    assert run.normalisation == {"mean": MEAN * 3, "std": STD * 3} and run.raw["epochs_done"] == 3
    with pytest.raises(FileNotFoundError, match="no run.json"):
        read_run_info(tmp_path)
    good = json.loads((run_dir / "run.json").read_text())
    broken = {"not JSON": "{", "not a run": json.dumps({**good, "format": "other/1"}),
              "no settings": json.dumps({k: v for k, v in good.items() if k != "settings"}),
              "bad settings": json.dumps({**good, "settings": {**good["settings"], "seed": "x"}}),
              "bad normalisation": json.dumps({**good, "normalisation": {"mean": [0.1, 0.2], "std": [0.2]}})}
    messages = {"not JSON": "not valid JSON", "not a run": "format", "no settings": "no 'settings'",
                "bad settings": "invalid settings", "bad normalisation": "'normalisation'"}
    for name, text in broken.items():
        (tmp_path / "run.json").write_text(text)
        with pytest.raises(ValueError, match=messages[name]):
            read_run_info(tmp_path)


def test_resolve_run_takes_a_folder_or_a_name_under_runs(reference, tmp_path, monkeypatch):
    from bonetumor import paths

    run_dir, _ = reference
    assert resolve_run(run_dir) == run_dir.resolve()
    monkeypatch.setattr(paths, "RUNS", run_dir.parent)
    monkeypatch.chdir(tmp_path)
    assert resolve_run(run_dir.name) == run_dir
    with pytest.raises(FileNotFoundError, match="no run 'missing'"):
        resolve_run("missing")


def test_same_seed_same_weights_other_seed_not(tmp_path, reference):
    run_dir, _ = reference
    run(tmp_path, "again")
    assert_same_weights(weights(tmp_path / "again" / "last.pt"), weights(run_dir / "last.pt"))
    run(tmp_path, "seed1", settings=tiny_settings(epochs=3, seed=1), stop_after_epoch=1)
    a, b = weights(tmp_path / "seed1" / "last.pt"), weights(run_dir / "last.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_stopped_and_resumed_run_ends_with_identical_weights(tmp_path, reference):
    ref_dir, _ = reference
    first = run(tmp_path, "resumed", stop_after_epoch=1)
    assert first["status"] == "stopped" and first["epochs_done"] == 1
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["status"] == "stopped"
    # the schedule spans the 3 configured epochs, not the 1 trained: same rates as the reference
    ref_history = pd.read_csv(ref_dir / "history.csv")
    assert pd.read_csv(tmp_path / "resumed" / "history.csv")["lr"].iloc[0] == ref_history["lr"].iloc[0]
    with pytest.raises(ValueError, match="already holds a run"):
        run(tmp_path, "resumed")
    second = run(tmp_path, "resumed", resume=True)
    assert second["status"] == "complete" and second["epochs_done"] == 3
    assert_same_weights(weights(tmp_path / "resumed" / "last.pt"), weights(ref_dir / "last.pt"))
    history = pd.read_csv(tmp_path / "resumed" / "history.csv")
    cols = [*LOSS_TERMS, "loss_total", "lr", "val_loss_total", "val_mask_mse"]
    pd.testing.assert_frame_equal(history[cols], ref_history[cols])
    info = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert [r["from_epoch"] for r in info["resumed"]] == [1]
    # resuming a complete run does nothing; resuming with other settings is refused
    assert run(tmp_path, "resumed", resume=True)["epochs_done"] == 3
    with pytest.raises(ValueError, match="train.lr"):
        run(tmp_path, "resumed", settings=tiny_settings(epochs=4, lr=0.02), resume=True)


def test_ctrl_c_saves_interrupted_checkpoint_and_resume_matches(tmp_path, reference):
    ref_dir, _ = reference
    # 6 images, batch 2: epoch 1 reads images 1-6; epoch 2's first step 7-8; the 9th read is Ctrl-C
    data = Ellipses(6, fail_at=9)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "ctrlc", train_set=data)
    folder = tmp_path / "ctrlc"
    raw = torch.load(folder / "interrupted.pt", weights_only=True)
    assert raw["partial"] is True and raw["epoch"] == 1 and raw["step_in_epoch"] == 1
    assert raw["iteration"] == 3 + 1
    assert load_checkpoint(folder / "last.pt")["epoch"] == 1  # untouched: the last complete epoch
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "interrupted" and info["interrupted"]["epoch"] == 2
    # the interrupted weights moved on from last.pt (one more step was taken)
    assert any(not torch.equal(a, b) for a, b in zip(raw["model"].values(), weights(folder / "last.pt").values()))
    data.fail_at = None
    run(tmp_path, "ctrlc", train_set=data, resume=True)
    assert_same_weights(weights(folder / "last.pt"), weights(ref_dir / "last.pt"))
    assert not (folder / "interrupted.pt").exists()


def test_non_finite_loss_stops_with_epoch_step_and_terms(tmp_path, monkeypatch):
    from torchvision.models.detection import roi_heads

    real = roi_heads.maskrcnn_loss
    calls = {"n": 0}

    def loss_goes_nan(*args):
        calls["n"] += 1
        value = real(*args)
        return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setattr(roi_heads, "maskrcnn_loss", loss_goes_nan)
    with pytest.raises(NonFiniteLossError) as err:
        run(tmp_path, "nan", val_set=None)
    message = str(err.value)
    # 3 steps per epoch, no validation: the 5th mask loss is epoch 2, step 2, iteration 5
    assert "epoch 2, step 2/3 (iteration 5)" in message
    assert "loss_mask=nan" in message and "loss_classifier=" in message
    assert err.value.epoch == 2 and err.value.step == 2
    info = json.loads((tmp_path / "nan" / "run.json").read_text())
    assert info["status"] == "failed" and "NonFiniteLossError" in info["error"]
    assert load_checkpoint(tmp_path / "nan" / "last.pt")["epoch"] == 1


def test_loss_falls_when_overfitting_four_images(tmp_path):
    data = Ellipses(4, normal_every=0)
    summary = run(tmp_path, "overfit", settings=tiny_settings(epochs=12, lr=0.02), train_set=data, val_set=None)
    history = pd.read_csv(summary["history"])
    first, last = history.iloc[0], history.iloc[-1]
    # measured: 2.54 -> 1.76 (-31 %); the classifier and mask terms fall too
    assert last["loss_total"] < 0.8 * first["loss_total"], history[["epoch", "loss_total"]]
    assert last["loss_classifier"] < first["loss_classifier"] and last["loss_mask"] < first["loss_mask"]
    # no validation split: the best model is the last one
    assert summary["best_epoch"] == 12 and summary["best_metric"] == "epoch"


def test_training_crops_are_not_resized_but_inference_images_are():
    """model.transform (RadiographTransform): with resize_in_training off (train.crop_size), a training crop
    keeps its size; at inference, and in training by default, images are resized to image_size as in
    torchvision."""
    model = build_model(tiny_settings().model, image_size=64, image_mean=MEAN, image_std=STD)
    crop = [torch.rand(3, 40, 40)]
    assert model.transform.resize_in_training
    model.train()
    assert model.transform(crop)[0].image_sizes == [(64, 64)]
    model.transform.resize_in_training = False
    assert model.transform(crop)[0].image_sizes == [(40, 40)]
    model.eval()
    assert model.transform(crop)[0].image_sizes == [(64, 64)]


def test_crop_size_switches_resizing_off_in_the_training_session(tmp_path, monkeypatch):
    from bonetumor.engine import trainer

    seen = []
    real = trainer._start_session

    def spy(*args, **kwargs):
        session = real(*args, **kwargs)
        seen.append(session.model.transform.resize_in_training)
        return session

    monkeypatch.setattr(trainer, "_start_session", spy)
    run(tmp_path, "crops", settings=tiny_settings(epochs=1, crop_size=48), train_set=Ellipses(2), val_set=None)
    run(tmp_path, "whole", settings=tiny_settings(epochs=1), train_set=Ellipses(2), val_set=None)
    assert seen == [False, True]


def test_val_metrics_fn_joins_history_and_picks_best(tmp_path):
    ap50 = iter([0.2, 0.5, 0.4])
    seen = []

    def metrics(model, loader):
        seen.append((model.training, len(loader.dataset)))
        return {"AP50": next(ap50), "mask_dice": 0.1}

    summary = run(tmp_path, "metrics", val_metrics_fn=metrics)
    history = pd.read_csv(summary["history"])
    assert list(history["val_ap50"]) == [0.2, 0.5, 0.4] and "val_mask_dice" in history
    assert summary["best_epoch"] == 2 and summary["best_metric"] == "val_ap50"
    assert load_checkpoint(tmp_path / "metrics" / "best.pt")["epoch"] == 2
    assert seen == [(True, 3)] * 3  # the function gets the validation loader; it sets the model's mode itself


# ---- pieces ------------------------------------------------------------------------------------------

def test_mask_mse_and_probability_map():
    gt = torch.zeros(2, 4, 4, dtype=torch.uint8)
    gt[0, 0, :2] = 1
    gt[1, 3, 3] = 1  # union: 3 lesion pixels of 16
    assert mask_mse(torch.zeros(4, 4), gt) == pytest.approx(3 / 16)
    assert mask_mse(gt.any(0).float(), gt) == 0
    assert mask_mse(np.full((4, 4), 0.5), gt.any(0).numpy()) == pytest.approx(0.25)
    assert mask_mse(torch.ones(4, 4), torch.zeros(0, 4, 4)) == 1.0  # a normal image, all false positive
    with pytest.raises(ValueError, match="shape"):
        mask_mse(torch.zeros(4, 5), gt)
    masks = torch.zeros(3, 1, 4, 4)
    masks[0, 0, 0, 0], masks[1, 0, 0, 0], masks[2, 0, 1, 1] = 0.3, 0.9, 0.8
    output = {"masks": masks, "scores": torch.tensor([0.9, 0.5, 0.01])}
    prob = probability_map(output, (4, 4))
    assert prob[0, 0] == pytest.approx(0.9) and prob[1, 1] == 0  # third detection is under 0.05
    assert probability_map({"masks": masks[:0], "scores": torch.zeros(0)}, (4, 4)).sum() == 0


def test_validate_does_not_disturb_training_rng_or_mode():
    settings = tiny_settings()
    torch.manual_seed(0)
    model = build_model(settings.model, 64, MEAN, STD)
    loader = make_loader(Ellipses(3, seed=1), 2, False, 0, torch.device("cpu"))
    state = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    a = validate(model, loader, torch.device("cpu"), 0.5, seed=3)
    assert torch.equal(torch.get_rng_state(), state[0]) and model.training
    assert (np.random.get_state()[1] == state[1]).all() and random.getstate() == state[2]
    model.eval()
    b = validate(model, loader, torch.device("cpu"), 0.5, seed=3)
    assert not model.training
    a.pop("val_seconds"), b.pop("val_seconds")
    assert a == b and 0 <= a["val_mask_mse"] <= 1 and math.isfinite(a["val_loss_total"])


def test_schedule_warmup_then_cosine_or_multistep():
    f = [lr_factor(i, 100, 10) for i in range(100)]
    assert f[0] == pytest.approx(WARMUP_START) and f[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:10], f[1:11])) and all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[55] == pytest.approx(0.5) and f[99] < 0.001
    m = [lr_factor(i, 26, 0, "multistep") for i in range(26)]
    assert m[15] == 1 and m[16] == pytest.approx(0.1) and m[22] == pytest.approx(0.01)


def test_device_for():
    assert device_for("cpu").type == "cpu"
    assert device_for().type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            device_for("cuda")


# ---- command line ------------------------------------------------------------------------------------

def test_cli_train(tmp_path, monkeypatch, capsys):
    calls = []

    def training_data(settings, progress=True):
        assert progress is False  # --no-progress: no bars while the data is written either
        calls.append(settings)
        return Ellipses(4), Ellipses(2, seed=1), MEAN, STD

    ap50 = iter([0.0, 0.0])  # a tie, as early in training: the lower validation loss decides
    monkeypatch.setattr(pipeline, "training_data", training_data)
    monkeypatch.setattr(pipeline, "validation_metrics", lambda settings: lambda model, loader: {"val_ap50": next(ap50)})
    out = tmp_path / "cli-run"

    def argv(epochs, *extra):
        return ["train", "--profile", "smoke", "--out", str(out), "--epochs", str(epochs), "--device", "cpu",
                "--no-progress", "--set", "model.width=0.0625", "--set", "data.image_size=64",
                "--set", "model.anchor_sizes=[16, 32]", *extra]

    assert cli.main(argv(1)) == 0
    settings = calls[0]
    assert settings.profile == "smoke" and settings.train.epochs == 1 and settings.model.width == 0.0625
    stdout = capsys.readouterr().out
    assert "epoch 1/1" in stdout and "complete: 1/1 epochs" in stdout
    assert len(pd.read_csv(out / "history.csv")) == 1
    assert json.loads((out / "run.json").read_text())["settings"]["profile"] == "smoke"
    # an existing run without --resume is an error (exit 2); with --resume and more epochs it continues
    assert cli.main(argv(1)) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main(argv(2, "--resume")) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    history = pd.read_csv(out / "history.csv")
    assert list(history["val_ap50"]) == [0.0, 0.0]
    best = json.loads((out / "run.json").read_text())["best"]
    assert best["metric"] == "val_ap50" and best["epoch"] == int(history["val_loss_total"].idxmin()) + 1


def test_a_stalled_training_is_named_in_plain_words():
    from bonetumor.engine.validation import stall_warning

    assert stall_warning([{"epoch": 1, "val_ap50": 0.0}, {"epoch": 2, "val_ap50": float("nan")}]).startswith(
        "training stalled: validation box AP50 stayed below 0.05 for all 2 epochs (best 0.0000)")
    # a stray hit in one epoch, or AP50 0.013 as on real BTXRD, is still a stall; 0.05 is not
    assert "(best 0.0130)" in stall_warning([{"epoch": 1, "val_ap50": 0.0002}, {"epoch": 2, "val_ap50": 0.013}])
    assert stall_warning([{"epoch": 1, "val_ap50": 0.0}, {"epoch": 2, "val_ap50": 0.05}]) is None
    assert stall_warning([{"epoch": 1, "loss_total": 1.0}]) is None  # no validation: nothing to judge


def test_balanced_sampling_draws_through_a_class_weighted_sampler(tmp_path, monkeypatch):
    """``train.balanced_sampling``: the training loader draws through :func:`class_balanced_sampler` (from the
    loader's saved generator), over the dataset's records, and the run completes."""
    from torch.utils.data import WeightedRandomSampler

    from bonetumor.engine import trainer

    samplers = []
    real = trainer._start_session

    def spy(*args, **kwargs):
        session = real(*args, **kwargs)
        samplers.append(session.train_loader.sampler)
        return session

    monkeypatch.setattr(trainer, "_start_session", spy)
    data = Ellipses(6)
    data.records = [{"label": "normal" if not len(t["labels"]) else "benign"} for _, t in data.items]
    run(tmp_path, "balanced", settings=tiny_settings(epochs=1, balanced_sampling=True), train_set=data, val_set=None)
    run(tmp_path, "plain", settings=tiny_settings(epochs=1), train_set=Ellipses(6), val_set=None)
    assert isinstance(samplers[0], WeightedRandomSampler) and samplers[0].num_samples == 6
    # 4 lesion images, 2 normal: weights 1/4 and 1/2, so both classes weigh 1 in all
    assert sorted(samplers[0].weights.tolist()) == [0.25] * 4 + [0.5] * 2
    assert not isinstance(samplers[1], WeightedRandomSampler)
