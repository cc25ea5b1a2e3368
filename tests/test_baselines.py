"""Table 2's comparators re-measured (issue 13): whole-image classifiers trained on the detector's splits
and scored by the detector's image-level metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bonetumor import baselines, config, paths, pipeline
from bonetumor.data.image_classes import ImageClassDataset, letterbox
from bonetumor.engine.classifier import ClassifierRecipe, class_weights, macro_auc, train_classifier
from bonetumor.evaluation import evaluate_image_classifier, metrics_table
from bonetumor.evaluation.classification import classifier_image_table
from bonetumor.modeling.classifiers import IMAGENET_MEAN, build_classifier


def test_class_weights_are_inverse_frequency_with_mean_one():
    weights = class_weights([0, 0, 0, 0, 1, 1, 2])
    assert weights.tolist() == pytest.approx([3 / (1 / 4 + 1 / 2 + 1) / 4, 3 / (1 / 4 + 1 / 2 + 1) / 2,
                                              3 / (1 / 4 + 1 / 2 + 1)])
    assert class_weights([0, 0, 1]).tolist()[2] == 0.0  # an absent class gets no weight


def test_macro_auc_by_hand():
    labels = np.array([0, 0, 1, 2])
    perfect = np.eye(3)[labels]
    assert macro_auc(perfect, labels) == 1.0
    # images 0, 1 are normal, 2 benign, 3 malignant; count positive-above-negative pairs (a tie counts half)
    p = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.95, 0.0, 0.05]])
    auc_normal = 1 / 4      # 0.9 > 0.2 only, of (0.9, 0.1) × (0.2, 0.95)
    auc_benign = 2 / 3      # 0.7 above 0.05 and 0.0, below 0.8
    auc_malignant = 1 / 6   # 0.05 ties 0.05 (half), below 0.1 and 0.1
    assert macro_auc(p, labels) == pytest.approx((auc_normal + auc_benign + auc_malignant) / 3)
    assert math.isnan(macro_auc(np.ones((2, 3)) / 3, np.array([1, 1])))


def test_classifier_rules_give_the_detectors_metrics():
    records = [{"image_id": i, "label": label, "patient": f"p{i}"}
               for i, label in enumerate(["normal", "normal", "benign", "benign", "malignant"])]
    p = np.array([[0.8, 0.1, 0.1],   # normal, right
                  [0.2, 0.7, 0.1],   # normal called benign: a false positive
                  [0.1, 0.6, 0.3],   # benign, right
                  [0.5, 0.3, 0.2],   # benign called normal: missed
                  [0.1, 0.2, 0.7]])  # malignant, right
    table = classifier_image_table(p, records)
    assert table["pred_class"].tolist() == ["normal", "benign", "benign", "normal", "malignant"]
    assert table["tumour_score"].tolist() == pytest.approx([0.2, 0.8, 0.9, 0.5, 0.9])
    result = evaluate_image_classifier(p, records, n_boot=0)
    metrics = metrics_table(result).set_index(["task", "metric"])["value"]
    assert metrics["tumour_vs_normal", "accuracy"] == pytest.approx(3 / 5)
    assert metrics["benign_vs_malignant", "accuracy"] == pytest.approx(2 / 3)  # the missed benign is wrong
    assert metrics["three_class", "balanced_accuracy"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert metrics["normal_images", "fp_image_rate"] == pytest.approx(1 / 2)
    assert "detection" not in metrics.index.get_level_values(0)  # a classifier has no boxes
    assert result["counts"] == {"images": 5, "patients": 5, "normal": 2, "benign": 2, "malignant": 1}
    with pytest.raises(ValueError, match="shape"):
        classifier_image_table(p[:3], records)


def test_letterbox_keeps_the_aspect_and_pads_black():
    image = torch.ones(1, 60, 30)
    out = letterbox(image, 40)
    assert out.shape == (1, 40, 40)
    assert out[0, :, :20].min() == pytest.approx(1.0, abs=1e-5) and out[0, :, 20:].abs().max() == 0


@pytest.mark.parametrize("arch", ["vgg19", "resnet50", "densenet121"])
def test_classifiers_take_grey_images_and_normalise_themselves(arch):
    model = build_classifier(arch, width=0.125, train_mean=(0.3,), train_std=(0.2,))
    assert model.init == "random" and model.mean.flatten().tolist() == pytest.approx([0.3] * 3)
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown classifier"):
        build_classifier("alexnet")
    assert len(IMAGENET_MEAN) == 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines") / "BTXRD"
    settings = config.load("smoke", overrides={
        "data": {"phantom_images": 24, "phantom_size": 96, "image_size": 96, "path": str(root)},
        "comparators": {"architectures": ["vgg19"], "epochs": 2, "batch_size": 4, "image_size": 64,
                        "pretrained": False},
        "evaluate": {"bootstrap": 20}})
    settings = settings.model_copy(update={"data": settings.data.model_copy(update={"source": "phantom"})})
    return settings, pipeline.prepare(settings, progress=False)


def test_a_killed_classifier_run_resumes_to_the_same_weights(tiny, tmp_path):
    settings, prepared = tiny
    train_set = ImageClassDataset(prepared.split("train"), 64, train=True)
    val_set = ImageClassDataset(prepared.split("val"), 64)
    recipe = ClassifierRecipe(epochs=2, batch_size=4, lr=1e-3, weight_decay=1e-4, seed=0)

    def model():
        torch.manual_seed(0)
        return build_classifier("vgg19", width=0.125)

    whole = model()
    train_classifier(whole, train_set, val_set, tmp_path / "whole", recipe)

    def kill(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(model(), train_set, val_set, tmp_path / "killed", recipe, progress=kill)
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["status"] == "running"
    resumed = model()
    info = train_classifier(resumed, train_set, val_set, tmp_path / "killed", recipe)
    assert info["status"] == "complete" and info["done"] == 2
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_comparator_is_trained_once_and_scored_on_the_detectors_test_split(tiny, tmp_path, monkeypatch):
    settings, prepared = tiny
    monkeypatch.setattr(paths, "RUNS", tmp_path)
    result = baselines.classifier_metrics(settings, "vgg19", prepared)
    assert result["counts"]["images"] == len(prepared.split("test"))
    assert result["meta"]["init"] == "random" and result["meta"]["epochs"] == 2
    folder = tmp_path / baselines.run_name(settings, "vgg19")
    assert (folder / "best.pt").is_file() and (folder / "metrics-test.json").is_file()
    monkeypatch.setattr("bonetumor.engine.classifier.train_classifier",
                        lambda *a, **k: pytest.fail("retrained a complete classifier run"))
    assert baselines.classifier_metrics(settings, "vgg19", prepared) == result
    other = settings.model_copy(update={"comparators": settings.comparators.model_copy(update={"epochs": 3})})
    assert baselines.run_name(other, "vgg19") != folder.name


def test_comparator_weights_do_not_depend_on_what_drew_random_numbers_before(tiny, tmp_path, monkeypatch):
    settings, prepared = tiny
    weights = []
    for draws in (0, 7):
        monkeypatch.setattr(paths, "RUNS", tmp_path / str(draws))
        torch.manual_seed(1234)
        torch.rand(draws)  # a notebook kernel's earlier cells draw however many numbers they draw
        folder = baselines.ensure_classifier(settings, "vgg19", prepared)
        weights.append(torch.load(folder / "best.pt", weights_only=True)["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
