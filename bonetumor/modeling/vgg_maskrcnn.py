"""The paper's detector: Mask R-CNN (torchvision) on a VGG-19 feature extractor, 3 classes
(background, benign, malignant). Paper section 3.3, equations (5)–(13).

How each equation maps onto the parts built here:

* (5) ``C_i = ReLU(W_i * C_{i-1} + b_i)`` — the VGG-19 convolutional layers, :func:`vgg19_features`.
* (6) box regression and (7) objectness of the Region Proposal Network — torchvision's ``RPNHead``: one
  3×3 conv, then two sibling 1×1 convs. Two honest differences from the paper's formulas: the regression
  branch predicts *linear* box deltas (decoded by a box coder), not a sigmoid of coordinates; objectness
  is one sigmoid logit per anchor, which is the two-way softmax of (7) with one logit fixed at zero
  (trained with a focal loss instead of cross-entropy when ``rpn_objectness_loss="focal"``, :mod:`.rpn`).
  With ``lesion_map_weight > 0`` the RPN also trains a dense lesion map on the backbone's features, a
  training-only addition the paper does not have (:mod:`.lesion_map`).
* (8) RoI pooling ``MaxPool(C[R])`` — :class:`.roi_ops.RoIMaxPool` when ``roi_op="pool"``; the default ``"align"``
  uses RoIAlign (bilinear sampling), which Mask R-CNN introduced because max pooling's quantisation
  misaligns masks.
* (9) class probabilities and (10) box offsets — ``TwoMLPHead`` (the ``W_f`` layers with ReLU) followed by
  ``FastRCNNPredictor`` (``W_c`` and ``W_b``); the softmax is applied at inference.
* (11) mask logits ``M`` — ``MaskRCNNHeads`` (conv layers on RoI features) and ``MaskRCNNPredictor``
  (transposed-conv upsampling, then a per-class 1×1 conv); the sigmoid is applied at inference.
* (12)–(13) the modified output layer — the predictors are built with ``N = 3`` outputs
  (background, benign, malignant) and a softmax over them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import typing
import warnings
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn
from torchvision.models import VGG19_BN_Weights, VGG19_Weights
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.vgg import cfgs as VGG_CONFIGS
from torchvision.models.vgg import make_layers

from bonetumor import CLASSES
from bonetumor.config import ModelSettings
from bonetumor.modeling.lesion_map import with_lesion_map
from bonetumor.modeling.roi_ops import roi_op
from bonetumor.modeling.rpn import with_focal_objectness

log = logging.getLogger(__name__)

#: The loss terms torchvision's Mask R-CNN returns in training, in its order.
LOSS_TERMS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
#: Loss terms that only some settings add (``model.lesion_map_weight``), recorded when present.
AUXILIARY_LOSS_TERMS = ("loss_lesion_map",)
#: Input normalisation of torchvision's ImageNet weights — right only when those weights are loaded.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Grayscale radiographs replicated to 3 channels, when no statistics of the training images are given:
#: mid-grey centre, and a spread that maps [0, 1] to about [-2, 2].
NEUTRAL_MEAN = (0.5, 0.5, 0.5)
NEUTRAL_STD = (0.25, 0.25, 0.25)


def scaled(channels: int, width: float, minimum: int = 8) -> int:
    """``channels × width``, rounded, never below ``minimum`` (width 1 leaves the paper's numbers)."""
    return max(minimum, int(round(channels * width)))


#: The backbones ``model.backbone`` names (the config's one list): plain VGG-19 (the paper's), with batch norm
#: after every convolution, or with group norm there (per-image statistics, so independent of the batch size).
BACKBONES = typing.get_args(ModelSettings.model_fields["backbone"].annotation)


def group_norm_groups(channels: int) -> int:
    """Groups of the group norm after a convolution with ``channels`` outputs: 32 (Wu & He's default) where
    there are at least 4 channels a group, else ``channels // 4`` (never below 1), so the narrow
    quick-profile layers (8-64 channels) keep 4 or more channels in each group."""
    return max(1, min(32, channels // 4))


def vgg19_features(width: float = 1.0, backbone: str = "vgg19", pretrained: bool = False) -> tuple[nn.Sequential, str]:
    """VGG-19's convolutional part without its last max-pool: 16 layers of equation (5), one map of
    ``512·width`` channels at stride 16. ``backbone`` (one of :data:`BACKBONES`) chooses the normalisation
    after each convolution: none (``vgg19``), batch norm (``vgg19_bn``) or group norm (``vgg19_gn``, see
    :func:`group_norm_groups`). Returns ``(features, init)`` where ``init`` is ``"imagenet"`` when
    ImageNet weights were loaded and ``"random"`` otherwise.

    ImageNet weights exist only for width 1. They are taken from torchvision's cache
    (``$TORCH_HOME/hub/checkpoints``) or downloaded; when neither works, a warning says so and how to fix it,
    and the backbone starts from random initialisation.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    cfg = [v if v == "M" else scaled(v, width) for v in VGG_CONFIGS["E"]]
    features = make_layers(cfg, batch_norm=backbone != "vgg19")
    if backbone == "vgg19_gn":
        features = nn.Sequential(*(nn.GroupNorm(group_norm_groups(m.num_features), m.num_features)
                                   if isinstance(m, nn.BatchNorm2d) else m for m in features.children()))
    init = "random"
    if pretrained:
        if backbone == "vgg19_gn":
            warnings.warn("no ImageNet weights exist for VGG-19 with group norm: random initialisation", stacklevel=2)
        elif width != 1:
            warnings.warn(f"ImageNet weights exist only for width 1, not {width:g}: random initialisation", stacklevel=2)
        else:
            weights = VGG19_BN_Weights.IMAGENET1K_V1 if backbone == "vgg19_bn" else VGG19_Weights.IMAGENET1K_V1
            try:
                state = weights.get_state_dict(progress=True)
            except Exception as exc:  # no network, proxy, corrupt cache: all mean "not available here"
                warnings.warn(
                    f"ImageNet weights for {backbone} are not available ({exc}); "
                    f"starting from random initialisation. To use them offline, put {weights.url.rsplit('/', 1)[-1]} "
                    "in $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints).", stacklevel=2)
            else:
                prefix = "features."
                features.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
                init = "imagenet"
    # Drop the fifth max-pool: stride 16 keeps small lesions a few cells wide on the feature map.
    features = nn.Sequential(*list(features.children())[:-1])
    return features, init


class VGGBackbone(nn.Module):
    """The feature extractor Mask R-CNN sees: ``out_channels`` and an ordered dict with one map ``"0"``.

    With ``bf16`` set (see :func:`bf16_backbone`) the convolutions run under bfloat16 autocast on the
    input's device (CUDA, or a CPU that :func:`cpu_bf16_supported`) and hand float32 features on. Only the
    backbone: under autocast the heads' box decoding would run in bfloat16, whose 8-bit mantissa puts box
    corners on a 2-pixel grid between 256 and 512 px. With ``channels_last`` (``model.channels_last``) the
    input and the convolutions use the NHWC memory format; the features handed on are plain NCHW again."""

    def __init__(self, features: nn.Sequential, channels_last: bool = False):
        super().__init__()
        self.body = features
        self.out_channels = [m for m in features.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        self.bf16 = False
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.body.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.bf16 and (x.is_cuda or x.device.type == "cpu"):
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                out = self.body(x).float()
        else:
            out = self.body(x)
        return OrderedDict([("0", out.contiguous() if self.channels_last else out)])


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN with AVX-512 BF16 or AMX). Without it,
    bfloat16 on CPU is emulated and many times slower than float32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_wanted(settings, device: torch.device | str) -> bool:
    """Whether training and validation on ``device`` run the backbone under bfloat16 autocast: on CUDA when
    ``train.amp`` is set and the GPU supports bfloat16; on CPU when ``train.cpu_bf16`` is set and
    :func:`cpu_bf16_supported` (elsewhere the setting is ignored, so one profile runs on any machine).
    ``settings`` is a :class:`bonetumor.config.Settings`."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(settings.train.amp and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(getattr(settings.train, "cpu_bf16", False) and cpu_bf16_supported())
    return False


@contextlib.contextmanager
def bf16_backbone(model: nn.Module, enabled: bool = True):
    """Run ``model``'s backbone under bfloat16 autocast (CUDA or CPU) inside the ``with`` block. Whether to
    enable it is the caller's choice (:func:`autocast_wanted`)."""
    backbone = model.backbone
    previous = getattr(backbone, "bf16", False)
    backbone.bf16 = bool(enabled)
    try:
        yield model
    finally:
        backbone.bf16 = previous


class RadiographTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform (normalise, resize, batch), except that in training it leaves the
    images' size alone when ``resize_in_training`` is off: crops (``train.crop_size``) are then seen at the
    scale of the whole images they come from, which inference resizes as usual (a no-op for images already
    at ``data.image_size``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resize_in_training = True

    def resize(self, image, target=None):
        if self.training and not self.resize_in_training:
            return image, target
        return super().resize(image, target)


def build_model(settings: ModelSettings, image_size: int, image_mean: Sequence[float] | None = None,
                image_std: Sequence[float] | None = None) -> MaskRCNN:
    """Mask R-CNN on VGG-19 with ``len(CLASSES) == 3`` outputs (equations 5–13, see the module docstring).

    ``image_size`` is the longest side of the (already resized) images; the model's own transform is set not
    to resize them again. ``image_mean``/``image_std`` normalise the 3-channel radiographs (grey replicated)
    of a randomly initialised model: pass the training images' grey-level statistics; when omitted,
    :data:`NEUTRAL_MEAN`/:data:`NEUTRAL_STD`. When ImageNet weights were loaded, ImageNet's statistics
    (:data:`IMAGENET_MEAN`/:data:`IMAGENET_STD`) are used instead, given ones or not: they are what the
    weights expect. The choice is stored on the
    model as ``model.normalisation``; ``model.init`` says ``"imagenet"`` or ``"random"``.
    """
    features, init = vgg19_features(settings.width, settings.backbone, settings.pretrained)
    backbone = VGGBackbone(features, channels_last=settings.channels_last)
    channels = backbone.out_channels
    num_classes = len(CLASSES)

    anchors = AnchorGenerator(sizes=(tuple(settings.anchor_sizes),), aspect_ratios=((0.5, 1.0, 2.0),))
    representation = scaled(1024, settings.width, minimum=64)
    mask_layers = tuple(scaled(256, settings.width) for _ in range(4))

    if init == "imagenet":
        # the ImageNet weights expect ImageNet's per-channel statistics on RGB input: the grey radiograph is
        # replicated to 3 channels and normalised as those weights were trained, whatever statistics are given
        source, image_mean, image_std = "imagenet", IMAGENET_MEAN, IMAGENET_STD
    elif image_mean is None or image_std is None:
        source = "imagenet" if init == "imagenet" else "neutral"
        image_mean, image_std = (IMAGENET_MEAN, IMAGENET_STD) if init == "imagenet" else (NEUTRAL_MEAN, NEUTRAL_STD)
    else:
        source = "given"
        image_mean, image_std = _three(image_mean), _three(image_std)

    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=image_size,
        max_size=image_size,
        image_mean=list(image_mean),
        image_std=list(image_std),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=settings.rpn_proposals_train,
        rpn_post_nms_top_n_train=settings.rpn_proposals_train,
        rpn_pre_nms_top_n_test=settings.rpn_proposals_test,
        rpn_post_nms_top_n_test=settings.rpn_proposals_test,
        rpn_fg_iou_thresh=settings.rpn_fg_iou_thresh,
        rpn_batch_size_per_image=settings.rpn_batch_size_per_image,
        box_batch_size_per_image=settings.box_batch_size_per_image,
        box_roi_pool=roi_op(settings.roi_op, 7, settings.separable_roi_align),
        box_head=TwoMLPHead(channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, num_classes),
        box_detections_per_img=settings.box_detections_per_img,
        mask_roi_pool=roi_op(settings.roi_op, 14, settings.separable_roi_align),
        mask_head=MaskRCNNHeads(channels, mask_layers, dilation=1),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], mask_layers[-1], num_classes),
    )
    if settings.rpn_objectness_loss == "focal":
        model.rpn = with_focal_objectness(model.rpn)
    if settings.lesion_map_weight > 0:
        model.rpn = with_lesion_map(model.rpn, channels, settings.lesion_map_weight)
    model.transform = RadiographTransform(image_size, image_size, list(image_mean), list(image_std))
    model.init = init
    model.normalisation = {"source": source, "mean": list(image_mean), "std": list(image_std)}
    log.info("built %s Mask R-CNN, width %g, RoI %s, %s init, %s normalisation",
             settings.backbone, settings.width, settings.roi_op, init, source)
    return model


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"normalisation needs 1 or 3 finite values, got {values}")
    return values


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
