# TRANSITIONAL SHIM: the model moved to bonetumor.modeling.vgg_maskrcnn; the lead removes this module.
"""Old import path of :mod:`bonetumor.modeling.vgg_maskrcnn` (re-exports only)."""

from bonetumor.modeling.vgg_maskrcnn import *  # noqa: F401,F403
from bonetumor.modeling.vgg_maskrcnn import (BACKBONE_STRIDE, IMAGENET_MEAN, IMAGENET_STD, LOSS_TERMS,  # noqa: F401
                                             NEUTRAL_MEAN, NEUTRAL_STD, VGG19_BN_Weights, VGG19_Weights, RoIMaxPool,
                                             VGGBackbone, _roi_op, _three, bf16_backbone, build_model,
                                             parameter_count, scaled, vgg19_features)
