"""The model and its files: the VGG-19 Mask R-CNN of the paper (:mod:`~bonetumor.modeling.vgg_maskrcnn`,
equations 5–13; its RoI pooling, equation 8, in :mod:`~bonetumor.modeling.roi_ops`) and checkpoints, trained runs and loading a trained model
(:mod:`~bonetumor.modeling.checkpoints`)."""

from bonetumor.modeling.checkpoints import (CHECKPOINT_FORMAT, RUN_FORMAT, RunInfo, checkpoint_state,
                                            load_checkpoint, load_model, read_run_info, resolve_run,
                                            save_checkpoint, save_safetensors)
from bonetumor.modeling.roi_ops import RoIMaxPool
from bonetumor.modeling.vgg_maskrcnn import (LOSS_TERMS, VGGBackbone, bf16_backbone, build_model,
                                             parameter_count, vgg19_features)

__all__ = ["CHECKPOINT_FORMAT", "RUN_FORMAT", "RunInfo", "checkpoint_state", "load_checkpoint", "load_model",
           "read_run_info", "resolve_run", "save_checkpoint", "save_safetensors", "LOSS_TERMS", "RoIMaxPool",
           "VGGBackbone", "bf16_backbone", "build_model", "parameter_count", "vgg19_features"]
