"""Run profiles (``smoke``, ``quick``, ``full``) as typed, validated settings read from ``params/<name>.yaml``.

Every table and figure names the profile, data and model width that produced it; :func:`Settings.tag`
gives that one-line description.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bonetumor import paths

#: ``ablations`` is the quick profile's recipe on a reduced schedule with every comparator and ablation, for
#: ``make ablations`` (notebook 07 alone, into reports/ablations/).
PROFILES = ("smoke", "quick", "full", "ablations")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(_Strict):
    source: Literal["phantom", "btxrd"] = "phantom"
    #: BTXRD folder (source ``btxrd``); for the phantom, where it is written (default ``data/phantom-<profile>``).
    path: Path | None = None
    phantom_images: int = Field(200, ge=4)
    #: 1: idealised long bones, conspicuous lesions; 2: BTXRD's site mix (hands, feet, pelvis), overlapping
    #: bones, distractors, lesion sizes as measured on BTXRD, explicit conspicuity (:mod:`bonetumor.data.phantom`).
    phantom_version: Literal[1, 2] = 1
    #: Longest side, in pixels, of the phantom radiographs as written to disk.
    phantom_size: int = Field(512, ge=64)
    #: Longest side, in pixels, of the images the model sees (originals resized once and cached).
    image_size: int = Field(512, ge=64)
    #: ``grouped`` by pseudo-patient and duplicate group (leak-free); ``centre``: train on centre 1, test on
    #: the others; ``random``: by image, stratified by class — leaky (views of one patient and duplicate
    #: images can land on both sides), as most published BTXRD results split; for measuring the leak only.
    split_kind: Literal["grouped", "centre", "random"] = "grouped"
    #: Feed the model the paper's image preprocessing (Figure 4b: percentile normalisation, non-local-means
    #: denoising, CLAHE; :func:`bonetumor.preprocess.preprocess_radiograph`) instead of the raw radiograph,
    #: computed once per image and cached like the resize.
    preprocess: bool = False
    train_fraction: float = Field(0.7, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _fractions_sum_to_one(self):
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train/val/test fractions sum to {total}, not 1")
        return self


class ModelSettings(_Strict):
    #: ``vgg19`` (the paper's), ``vgg19_bn`` (batch norm after every convolution) or ``vgg19_gn`` (group norm
    #: there: per-image statistics, for small batches; random initialisation only).
    backbone: Literal["vgg19", "vgg19_bn", "vgg19_gn"] = "vgg19"
    #: Channel-width multiplier of the VGG-19 backbone and heads; 1.0 is the paper's network.
    width: float = Field(1.0, gt=0, le=1)
    #: ``align`` (RoIAlign, torchvision's default) or ``pool`` (RoI max pooling, the paper's equation 8).
    roi_op: Literal["align", "pool"] = "align"
    #: Start from ImageNet weights when they are available (width 1 only).
    pretrained: bool = True
    #: Anchor sizes in pixels at the model's input size.
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256)
    box_detections_per_img: int = 20
    #: Proposals kept after NMS per image in training / at inference (torchvision: 2000 / 1000). Fewer make
    #: the RoI heads — the cost of Mask R-CNN, not the backbone — cheaper on a CPU.
    rpn_proposals_train: int = Field(2000, ge=16)
    rpn_proposals_test: int = Field(1000, ge=16)
    #: IoU from which an anchor counts as a lesion for the RPN (torchvision: 0.7). Lower suits lesions only a
    #: few stride-16 cells wide, which few anchors overlap that well.
    rpn_fg_iou_thresh: float = Field(0.7, gt=0.3, le=1)
    #: Anchors sampled per image for the RPN's objectness loss, at most half of them lesions (torchvision:
    #: 256). A small lesion matches one or two anchors, so among 256 samples its positives weigh almost
    #: nothing and the RPN settles on "background everywhere"; fewer samples give them their weight back.
    rpn_batch_size_per_image: int = Field(256, ge=4)
    #: RoIs sampled per image to train the box head (torchvision: 512).
    box_batch_size_per_image: int = Field(512, ge=16)
    #: The RPN's objectness loss: ``bce`` on the sampled anchors (torchvision's) or ``focal`` over every
    #: labelled anchor (RetinaNet's focal loss, :mod:`bonetumor.modeling.rpn`).
    rpn_objectness_loss: Literal["bce", "focal"] = "bce"
    #: Weight of a dense, training-only lesion-map loss on the backbone's features (0: none; see
    #: :mod:`bonetumor.modeling.lesion_map`): every feature-map cell of every image is labelled lesion or not.
    lesion_map_weight: float = Field(0.0, ge=0)
    #: Speed only (same network, same values to rounding): the backbone's convolutions in the NHWC memory
    #: format, and RoIAlign on CPU as two matrix products whose backward uses every core.
    channels_last: bool = False
    separable_roi_align: bool = False


class TrainSettings(_Strict):
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(4, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = Field(100, ge=0)
    #: Decay after the warm-up: ``cosine`` to zero, or ``multistep`` (÷10 at 16/26 and 22/26 of the run, torchvision's).
    schedule: Literal["cosine", "multistep"] = "cosine"
    grad_clip: float | None = 10.0
    num_workers: int = Field(0, ge=0)
    augment: bool = True
    #: ``standard``: flip, ±10° rotation, scale 0.9-1.1, 5 % shift, brightness/contrast ±0.2; ``strong``: ±20°,
    #: scale 0.7-1.4, 10 % shift, brightness/contrast ±0.4 (:data:`bonetumor.data.dataset.AUGMENT_STRENGTHS`).
    augment_strength: Literal["standard", "strong"] = "standard"
    #: Draw training images (with replacement, as many per epoch as there are) so that normal, benign and
    #: malignant images come equally often (:func:`bonetumor.data.dataset.class_balanced_sampler`); one process only.
    balanced_sampling: bool = False
    #: Train on square crops of this many pixels (at ``data.image_size``, not resized) instead of whole
    #: images: a tumour image's crop holds one of its lesions, chosen at random, at a random place in the
    #: crop; a normal image's crop lies anywhere (:class:`bonetumor.data.dataset.LesionCentredCrop`).
    #: Validation and test always see whole images. ``None``: whole images.
    crop_size: int | None = Field(None, ge=32)
    #: bfloat16 autocast of the backbone on CUDA (ignored on CPU).
    amp: bool = True
    #: bfloat16 autocast of the backbone on CPU, where the CPU runs it natively (AVX-512 BF16 or AMX; ignored
    #: elsewhere, see :func:`bonetumor.modeling.vgg_maskrcnn.autocast_wanted`).
    cpu_bf16: bool = False


#: Settings added after runs were already named by their fingerprint: left out of it while at their default.
_FINGERPRINT_AT_DEFAULT_OMITTED = {"model": ("channels_last", "separable_roi_align", "rpn_batch_size_per_image",
                                             "rpn_objectness_loss", "lesion_map_weight"),
                                   "train": ("cpu_bf16", "crop_size", "augment_strength", "balanced_sampling"),
                                   "data": ("preprocess", "phantom_version")}


class EvalSettings(_Strict):
    #: Detections below this score are dropped before lesion-level and image-level metrics. With
    #: ``threshold_from: val`` this is only the fallback: the threshold is chosen on the validation split.
    score_threshold: float = Field(0.5, ge=0, le=1)
    threshold_from: Literal["val", "fixed"] = "val"
    mask_threshold: float = Field(0.5, ge=0, le=1)
    bootstrap: int = Field(1000, ge=0)
    refine_masks: bool = False


class Target(_Strict):
    """A number a profile's run is expected to reach (notebook 05 shows it beside the measured one; measured,
    not enforced): ``metric`` of ``task`` in the long metrics table of
    :func:`bonetumor.evaluation.metrics_table`, at least ``target``."""

    name: str
    task: str
    metric: str
    target: float


class CentreHoldoutSettings(_Strict):
    """The centre hold-out run that notebook 05 shows beside the grouped split whenever the data has more
    than one centre: trained on centre 1 (``data.split_kind: centre``), tested on the other centres."""

    #: Epochs of the hold-out run; ``None``: the profile's own schedule. A shorter schedule is named as such
    #: wherever its numbers appear.
    epochs: int | None = Field(None, ge=1)


COMPARATORS = ("vgg19", "resnet50", "resnet101", "densenet121")


class ComparatorSettings(_Strict):
    """The image classifiers Table 2 compares against, re-measured on the detector's own splits (notebook 07):
    normal / benign / malignant from the whole image, chosen on the validation split like the detector."""

    #: ``vgg19`` is the detector's own backbone (``model.backbone`` at ``model.width``) with a classification
    #: head — the baseline the detector must beat; the others are torchvision's networks at full width.
    architectures: tuple[Literal["vgg19", "resnet50", "resnet101", "densenet121"], ...] = COMPARATORS
    #: Longest side the classifiers see (images are padded to a square); ``None``: ``data.image_size``.
    image_size: int | None = Field(None, ge=32)
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    #: ImageNet weights where torchvision can load them (``vgg19`` only at width 1); random otherwise.
    pretrained: bool = True


ABLATIONS = ("roi_max_pool", "preprocessed_input", "imagenet_init", "random_split")


class AblationSettings(_Strict):
    """The paper's choices ablated (notebook 07): each an extra detector run with one thing changed —
    ``roi_max_pool`` (equation 8 instead of RoIAlign), ``preprocessed_input`` (Figure 4b's preprocessing as
    the input), ``imagenet_init`` (random instead of ImageNet initialisation; only where the weights load)
    and ``random_split`` (the leaky split by image instead of by pseudo-patient)."""

    names: tuple[Literal["roi_max_pool", "preprocessed_input", "imagenet_init", "random_split"], ...] = ABLATIONS
    #: Epochs of every ablation run and of its reference run; ``None``: the profile's own schedule (the
    #: reference is then the main run). A shorter schedule is named as such wherever its numbers appear.
    epochs: int | None = Field(None, ge=1)


class Settings(_Strict):
    profile: str
    seed: int = 0
    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvalSettings = EvalSettings()
    #: ``make paper``'s per-cell timeout for the work that does not train, seconds; training's own budget is
    #: added, scaled with the data (:func:`bonetumor.paper.cell_timeout`).
    notebook_timeout: int = Field(3600, ge=10)
    #: What this profile's numbers should reach (shown, not enforced); none by default.
    targets: tuple[Target, ...] = ()
    centre_holdout: CentreHoldoutSettings = CentreHoldoutSettings()
    comparators: ComparatorSettings = ComparatorSettings()
    ablations: AblationSettings = AblationSettings()

    @property
    def data_path(self) -> Path:
        """The dataset folder: the given path, else the profile's phantom folder under ``data/``."""
        if self.data.path is not None:
            return Path(self.data.path).expanduser().resolve()
        if self.data.source == "btxrd":
            raise ValueError("data.source is 'btxrd' but no data.path was given (make paper DATA=/path/to/BTXRD)")
        version = "" if self.data.phantom_version == 1 else f"-v{self.data.phantom_version}"
        return paths.DATA / (f"phantom-{self.profile}-{self.data.phantom_images}-{self.data.phantom_size}px-"
                             f"seed{self.seed}{version}")

    def training_fingerprint(self) -> str:
        """Short hash of the settings that decide what a training run learns (not the worker count, the
        notebook timeout, the evaluation settings, the targets, the comparators, the ablations or the
        centre hold-out's schedule, which reaches a run only as its own ``train.epochs``)."""
        relevant = self.model_dump(mode="json", exclude={"notebook_timeout": True, "evaluate": True,
                                                         "targets": True, "centre_holdout": True,
                                                         "comparators": True, "ablations": True,
                                                         "train": {"num_workers"}})
        for section, fields in _FINGERPRINT_AT_DEFAULT_OMITTED.items():  # runs from before they existed keep theirs
            for name in fields:
                if relevant[section][name] == type(getattr(self, section)).model_fields[name].default:
                    del relevant[section][name]
        return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def run_name(self) -> str:
        """``<profile>-<source>-<fingerprint>``: other settings train into another folder, never over a run."""
        return f"{self.profile}-{self.data.source}-{self.training_fingerprint()}"

    def tag(self) -> str:
        """One line naming profile, data and model, printed beside every result."""
        data = "synthetic phantom" if self.data.source == "phantom" else "BTXRD"
        width = "" if self.model.width == 1 else f", width ×{self.model.width:g}"
        return (f"profile {self.profile}; data: {data}, {self.data.image_size}px; "
                f"model: {self.model.backbone} Mask R-CNN{width}, RoI {self.model.roi_op}")


def load(profile: str = "quick", overrides: dict | None = None, data: str | Path | None = None) -> Settings:
    """Read ``params/<profile>.yaml`` and apply nested ``overrides`` (e.g. ``{"train": {"epochs": 3}}``).

    ``data``, when given (``make paper DATA=...``), is a BTXRD-layout folder: it sets ``data.source`` to
    ``btxrd`` and ``data.path`` to it. Empty string or ``None`` keeps the profile's phantom. A ``data.path``
    (given so, in an override or in the profile) is stored absolute and resolved against the current
    directory, so that a run records the folder it really read, whatever directory it is used from later.
    """
    if data:
        overrides = merge_overrides(overrides or {}, {"data": {"source": "btxrd", "path": _absolute(data)}})
    file = paths.PARAMS / f"{profile}.yaml"
    if not file.is_file():
        raise FileNotFoundError(f"no profile {profile!r}: {file} does not exist (profiles: {', '.join(PROFILES)})")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{file}: not valid YAML: {exc}") from exc
    raw = merge_overrides(raw, overrides or {})
    if isinstance(raw.get("data"), dict) and isinstance(raw["data"].get("path"), (str, Path)) and raw["data"]["path"]:
        raw["data"] = {**raw["data"], "path": _absolute(raw["data"]["path"])}
    raw.setdefault("profile", profile)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        given = " with the overrides given" if overrides else ""
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']} (got {e.get('input')!r:.60})"
                           for e in exc.errors()[:3])
        more = f"; and {exc.error_count() - 3} more" if exc.error_count() > 3 else ""
        raise ValueError(f"{file}{given}: invalid settings: {errors}{more}") from exc


def _absolute(path: str | Path) -> str:
    """``path`` with ``~`` expanded, made absolute against the current directory and resolved."""
    return str(Path(path).expanduser().resolve())


def default_profile() -> str:
    """``full`` when CUDA is available, else ``quick`` (the Makefile's rule too)."""
    import torch

    return "full" if torch.cuda.is_available() else "quick"


def merge_overrides(base: dict, extra: dict) -> dict:
    """``base`` with the nested ``extra`` laid over it (a new dict; neither argument is changed): a dict
    value is merged key by key into ``base``'s dict at the same key, anything else replaces it. E.g.
    ``merge_overrides({"train": {"lr": 0.01, "epochs": 3}}, {"train": {"epochs": 5}})`` gives
    ``{"train": {"lr": 0.01, "epochs": 5}}``."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: list[str]) -> dict:
    """Nested overrides from ``KEY=VALUE`` strings (``--set``), each value read as YAML: e.g.
    ``["train.lr=0.005", "model.anchor_sizes=[8,16]"]`` gives ``{"train": {"lr": 0.005}, "model": {...}}``."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (e.g. train.lr=0.01), got {item!r}")
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out
