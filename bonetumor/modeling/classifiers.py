"""Whole-image classifiers (normal / benign / malignant) for the comparators of the paper's Table 2,
re-measured on the detector's own splits: DenseNet-121 ("DenseNet [19]"), ResNet-50 ("ResNet50 [13]"),
ResNet-101 ("ResNet101 [12]") from torchvision, and VGG-19 — the detector's own backbone
(:func:`bonetumor.modeling.vgg_maskrcnn.vgg19_features`, same depth, width and batch norm) under global
average pooling and one linear layer — the baseline the detector must beat to justify its boxes and masks.

Every classifier takes the detector's input (grey radiographs in [0, 1] replicated to 3 channels) and
normalises it itself: with ImageNet weights, by ImageNet's mean and std (what those weights expect); from
random initialisation, by the training images' grey-level mean and std.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn
from torchvision import models

from bonetumor.modeling.vgg_maskrcnn import vgg19_features

#: ImageNet's per-channel statistics, which torchvision's pretrained weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The row each architecture stands for in the paper's Table 2.
TABLE2_NAMES = {"densenet121": "DenseNet [19]", "resnet50": "ResNet50 [13]", "resnet101": "ResNet101 [12]",
                "vgg19": "VGG-19 classifier (the detector's backbone)"}
_TORCHVISION = {"densenet121": (models.densenet121, models.DenseNet121_Weights.IMAGENET1K_V1),
                "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V2),
                "resnet101": (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V2)}


class ImageClassifier(nn.Module):
    """``network`` behind a fixed normalisation: ``(B, 1 or 3, H, W)`` in [0, 1] → ``(B, classes)`` logits."""

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float], init: str):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(_three(mean)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_three(std)).view(1, 3, 1, 1))
        self.init = init

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.network((images - self.mean) / self.std)


class _VGGClassifier(nn.Module):
    def __init__(self, features: nn.Sequential, classes: int):
        super().__init__()
        self.features = features
        channels = [m.out_channels for m in features if isinstance(m, nn.Conv2d)][-1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        return values * 3
    if len(values) != 3:
        raise ValueError(f"expected 1 or 3 normalisation values, got {len(values)}")
    return values  # type: ignore[return-value]


def _torchvision_network(arch: str, pretrained: bool, classes: int) -> tuple[nn.Module, str]:
    """A torchvision classifier with ImageNet weights when they load (else random, with a warning naming
    the file to put in torch's cache), its last layer replaced by one with ``classes`` outputs."""
    build, weights = _TORCHVISION[arch]
    network, init = build(weights=None), "random"
    if pretrained:
        try:
            network.load_state_dict(weights.get_state_dict(progress=True))
            init = "imagenet"
        except Exception as exc:  # no network, proxy, corrupt cache: all mean "not available here"
            warnings.warn(f"ImageNet weights for {arch} are not available ({exc}); random initialisation. To use "
                          f"them offline, put {weights.url.rsplit('/', 1)[-1]} in $TORCH_HOME/hub/checkpoints",
                          stacklevel=3)
    if arch == "densenet121":
        network.classifier = nn.Linear(network.classifier.in_features, classes)
    else:
        network.fc = nn.Linear(network.fc.in_features, classes)
    return network, init


def build_classifier(arch: str, classes: int = 3, pretrained: bool = False, width: float = 1.0,
                     backbone: str = "vgg19_bn", train_mean: Sequence[float] = (0.5,),
                     train_std: Sequence[float] = (0.25,)) -> ImageClassifier:
    """The classifier ``arch`` (a key of :data:`TABLE2_NAMES`) with ``classes`` outputs. ``width`` and
    ``backbone`` (``vgg19``, ``vgg19_bn`` or ``vgg19_gn``) apply to ``vgg19`` only (the detector's backbone
    settings). ``train_mean``/``train_std``:
    the training images' grey-level statistics, used unless ImageNet weights were loaded. The model's
    ``init`` says which (``"imagenet"`` or ``"random"``)."""
    if arch == "vgg19":
        features, init = vgg19_features(width=width, backbone=backbone, pretrained=pretrained)
        network: nn.Module = _VGGClassifier(features, classes)
    elif arch in _TORCHVISION:
        network, init = _torchvision_network(arch, pretrained, classes)
    else:
        raise ValueError(f"unknown classifier {arch!r}; choose from {', '.join(TABLE2_NAMES)}")
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if init == "imagenet" else (train_mean, train_std)
    return ImageClassifier(network, mean, std, init)
