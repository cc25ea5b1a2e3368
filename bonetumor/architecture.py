"""Table 1 of the paper (VGG-19's layers, output shapes and parameter counts) computed from a live
``torchvision.models.vgg19``, and a parameter summary of the whole detector.

Output shapes come from forward hooks on a 224×224×3 input and are written channels-last, ``(H, W, C)``,
as the paper prints them. ReLU and dropout layers (no parameters, shape unchanged) are not rows of the
paper's table and are left out; torchvision's adaptive average pool is the identity at 224×224 input and is
left out too. The flatten, which torchvision does functionally, is recorded from the classifier's input.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from torchvision.models import vgg19

from bonetumor import paths
from bonetumor.modeling.vgg_maskrcnn import parameter_count

PAPER_TABLE1 = paths.RESOURCES / "table1_paper.csv"


def _shape(t: torch.Tensor) -> str:
    dims = tuple(t.shape[1:])
    if len(dims) == 3:  # (C, H, W) -> the paper's (H, W, C)
        dims = (dims[1], dims[2], dims[0])
    return str(dims) if len(dims) > 1 else f"({dims[0]},)"


def table1(input_size: int = 224) -> pd.DataFrame:
    """One row per layer of VGG-19 as in the paper's Table 1: ``layer``, ``output_shape``, ``parameters``
    (``<NA>`` for layers without parameters). Computed from the live model with forward hooks."""
    net = vgg19(weights=None).eval()
    rows: list[dict] = []

    def record(name: str):
        def hook(module: nn.Module, inputs, output):
            if name == "flatten":
                rows.append({"layer": "Flatten", "output_shape": _shape(inputs[0]), "parameters": pd.NA})
                return
            if isinstance(module, nn.Conv2d):
                label = f"Convolutional (Conv{module.kernel_size[0]}-{module.out_channels})"
            elif isinstance(module, nn.MaxPool2d):
                label = "Max Pooling"
            else:
                label = "Fully Connected (Dense)"
            count = parameter_count(module)
            rows.append({"layer": label, "output_shape": _shape(output), "parameters": count or pd.NA})
        return hook

    handles = []
    for index, module in enumerate(net.features):
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            handles.append(module.register_forward_hook(record(f"features.{index}")))
    first_linear = True
    for module in net.classifier:
        if isinstance(module, nn.Linear):
            if first_linear:
                handles.append(module.register_forward_hook(record("flatten")))
                first_linear = False
            handles.append(module.register_forward_hook(record("dense")))
    x = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad():
        net(x)
    for handle in handles:
        handle.remove()
    rows.insert(0, {"layer": "Input", "output_shape": _shape(x), "parameters": pd.NA})
    table = pd.DataFrame(rows)
    table["parameters"] = table["parameters"].astype("Int64")
    return table


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1, transcribed into ``bonetumor/resources/table1_paper.csv``."""
    table = pd.read_csv(PAPER_TABLE1, dtype={"layer": str, "output_shape": str})
    table["parameters"] = table["parameters"].astype("Int64")
    return table


def compare_with_paper(measured: pd.DataFrame | None = None) -> pd.DataFrame:
    """Row-by-row comparison of :func:`table1` with the paper: both tables side by side and a ``match``
    column (layer, shape and parameter count all equal)."""
    measured = table1() if measured is None else measured
    paper = paper_table1()
    if len(measured) != len(paper):
        raise ValueError(f"Table 1 has {len(measured)} rows here and {len(paper)} in the paper")
    both = measured.join(paper.add_suffix("_paper"))
    same_params = (both["parameters"].fillna(-1) == both["parameters_paper"].fillna(-1))
    both["match"] = (both["layer"] == both["layer_paper"]) & (both["output_shape"] == both["output_shape_paper"]) & same_params
    return both


def detector_summary(model: nn.Module) -> pd.DataFrame:
    """Trainable parameters of each part of a torchvision Mask R-CNN (backbone, RPN, box head, mask head)
    with the paper equations each part implements."""
    heads = model.roi_heads
    parts = [
        ("backbone (VGG-19 conv layers)", "(5)", model.backbone),
        ("region proposal network", "(6), (7)", model.rpn),
        ("box head: RoI pool + two FC layers", "(8), (9), (10)", heads.box_head),
        ("box predictor: class scores + box offsets", "(9), (10), (12), (13)", heads.box_predictor),
        ("mask head: RoI pool + conv layers", "(8), (11)", heads.mask_head),
        ("mask predictor: upsampling + per-class masks", "(11)", heads.mask_predictor),
    ]
    rows = [{"part": name, "equations": eqs, "parameters": parameter_count(module)} for name, eqs, module in parts]
    rows.append({"part": "total", "equations": "", "parameters": parameter_count(model)})
    return pd.DataFrame(rows)


def trace_detector(model: nn.Module, image: torch.Tensor) -> pd.DataFrame:
    """Run ``model`` (eval mode) on one ``[3, H, W]`` image and record the output shape of each part, with
    the paper equation it implements. The box score threshold is set to 0 for the trace, so that the mask
    branch runs even for an untrained model (whose scores are all low)."""
    heads = model.roi_heads
    parts = [
        ("(5)", "backbone: VGG-19 conv layers", model.backbone),
        ("(6), (7)", "RPN head: objectness logits, box deltas", model.rpn.head),
        ("(8)", "RoI pooling for the box branch", heads.box_roi_pool),
        ("(9), (10)", "box head: two FC layers + ReLU (W_f)", heads.box_head),
        ("(9), (10), (12)", "box predictor: class logits (W_c), offsets (W_b)", heads.box_predictor),
        ("(8)", "RoI pooling for the mask branch", heads.mask_roi_pool),
        ("(11)", "mask head: conv layers", heads.mask_head),
        ("(11)", "mask predictor: upsampling + per-class mask logits (W_m)", heads.mask_predictor),
    ]
    shapes: dict[int, str] = {}

    def describe(output) -> str:
        if isinstance(output, torch.Tensor):
            return str(tuple(output.shape))
        if isinstance(output, dict):
            return ", ".join(f"{k}: {describe(v)}" for k, v in output.items())
        if isinstance(output, (list, tuple)):
            return "[" + "; ".join(describe(v) for v in output) + "]"
        return type(output).__name__

    handles = [module.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, describe(o)))
               for k, (_, _, module) in enumerate(parts)]
    threshold, heads.score_thresh = heads.score_thresh, 0.0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            detections = model([image])[0]
    finally:
        heads.score_thresh = threshold
        model.train(was_training)
        for handle in handles:
            handle.remove()
    rows = [{"equations": eqs, "part": name, "output shape": shapes.get(k, "not run")}
            for k, (eqs, name, _) in enumerate(parts)]
    rows.append({"equations": "(13)", "part": "softmax scores of the kept detections",
                 "output shape": str(tuple(detections["scores"].shape))})
    return pd.DataFrame(rows)
