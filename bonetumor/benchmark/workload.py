"""What the benchmark runs: a seeded synthetic batch, and the stock composition of the project's network."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from bonetumor import CLASSES
from bonetumor.config import ModelSettings
from bonetumor.modeling.vgg_maskrcnn import scaled, vgg19_features

def fast_path(device: torch.device | str) -> dict:
    """The speed settings this project adds, as ``bonetumor bench --fast`` lays them over a profile on
    ``device``: the separable RoIAlign (used on the CPU only), CPU bfloat16 autocast (used only where the CPU
    runs it natively) and, on CUDA only, the channels-last backbone (on the 2-core CPU it measured about
    +7 % for ``vgg19`` and slower for ``vgg19_bn``, whose batch norm is slower in NHWC there)."""
    out = {"model": {"separable_roi_align": True}, "train": {"cpu_bf16": True}}
    if torch.device(device).type == "cuda":
        out["model"]["channels_last"] = True
    return out


def synthetic_batch(batch: int, image_size: int, lesions: int = 1, seed: int = 0) -> tuple[list, list]:
    """``(images, targets)`` as the training loader yields them: ``batch`` grey radiograph-like images
    (3 × ``image_size``², values in [0, 1]) with ``lesions`` elliptical lesions each (boxes, labels 1 or 2,
    uint8 masks), all drawn from ``torch.Generator().manual_seed(seed)``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    images, targets = [], []
    for _ in range(batch):
        image = 0.3 + 0.2 * torch.rand(1, image_size, image_size, generator=g)
        boxes, masks = [], []
        for _ in range(lesions):
            w, h = (image_size * (0.1 + 0.2 * torch.rand(2, generator=g))).tolist()
            x0, y0 = ((image_size - max(w, h) - 2) * torch.rand(2, generator=g)).tolist()
            cx, cy = x0 + w / 2, y0 + h / 2
            mask = (((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1).to(torch.uint8)
            image[0][mask.bool()] += 0.3
            ys, xs = mask.nonzero(as_tuple=True)
            boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1.0, ys.max().item() + 1.0])
            masks.append(mask)
        images.append(image.clamp(0, 1).expand(3, -1, -1).contiguous())
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.randint(1, len(CLASSES), (lesions,), generator=g),
                        "masks": torch.stack(masks)})
    return images, targets


def stock_model(settings: ModelSettings, image_size: int, image_mean, image_std) -> MaskRCNN:
    """The project's network composed as torchvision's documentation composes a Mask R-CNN on a custom
    backbone (a plain ``nn.Sequential`` with ``out_channels``, ``AnchorGenerator``, ``MultiScaleRoIAlign``),
    with the profile's widths, anchors and proposal/RoI counts and torchvision's ops, float32."""
    backbone, _ = vgg19_features(settings.width, settings.backbone, pretrained=False)
    backbone.out_channels = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
    channels, representation = backbone.out_channels, scaled(1024, settings.width, minimum=64)
    mask_layers = tuple(scaled(256, settings.width) for _ in range(4))
    return MaskRCNN(
        backbone, num_classes=None, min_size=image_size, max_size=image_size,
        image_mean=list(image_mean), image_std=list(image_std),
        rpn_anchor_generator=AnchorGenerator(sizes=(tuple(settings.anchor_sizes),), aspect_ratios=((0.5, 1.0, 2.0),)),
        rpn_pre_nms_top_n_train=settings.rpn_proposals_train, rpn_post_nms_top_n_train=settings.rpn_proposals_train,
        rpn_pre_nms_top_n_test=settings.rpn_proposals_test, rpn_post_nms_top_n_test=settings.rpn_proposals_test,
        rpn_fg_iou_thresh=settings.rpn_fg_iou_thresh, rpn_batch_size_per_image=settings.rpn_batch_size_per_image,
        box_batch_size_per_image=settings.box_batch_size_per_image,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, len(CLASSES)),
        box_detections_per_img=settings.box_detections_per_img,
        mask_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(channels, mask_layers, dilation=1),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], mask_layers[-1], len(CLASSES)),
    )


def copy_weights(project: nn.Module, stock: nn.Module) -> None:
    """Load the project model's weights into the stock one (the backbone's keys lose ``body.``), so that both
    start equal and see the same proposals and RoIs."""
    state = {k.replace("backbone.body.", "backbone.", 1): v.detach().clone().contiguous()
             for k, v in project.state_dict().items()}
    stock.load_state_dict(state)
