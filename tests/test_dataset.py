"""BoneTumourDataset: torchvision's detection contract, masks from polygons, paired augmentation,
DataLoader workers and seeding — on tiny radiograph-like PNGs written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from bonetumor.data.dataset import (AUGMENT_STRENGTHS, BoneTumourDataset, LesionCentredCrop, PairedAugment,
                                    boxes_from_masks, class_balanced_sampler, collate_fn, seed_worker)

H, W = 80, 96


def _ellipse_polygon(cx, cy, rx, ry, n=24):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [float(v) for pair in zip(cx + rx * np.cos(t), cy + ry * np.sin(t)) for v in pair]


def _box(poly):
    xs, ys = poly[0::2], poly[1::2]
    return [min(xs), min(ys), max(xs), max(ys)]


def _write_image(path, lesions, seed):
    """A dim 'bone' band with bright lesions drawn where the polygons are, plus noise."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (W, H), 30)
    draw = ImageDraw.Draw(img)
    draw.rectangle([30, 0, 66, H - 1], fill=90)
    for lesion in lesions:
        for poly in lesion["polygons"]:
            draw.polygon(list(zip(poly[0::2], poly[1::2])), fill=220)
    arr = np.clip(np.asarray(img, dtype=np.int16) + rng.integers(-8, 9, (H, W)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    ellipse = _ellipse_polygon(48, 30, 12, 8)
    square = [60.0, 50.0, 75.0, 50.0, 75.0, 68.0, 60.0, 68.0]
    part_a = [20.0, 10.0, 30.0, 10.0, 30.0, 20.0, 20.0, 20.0]
    part_b = [28.0, 18.0, 36.0, 18.0, 36.0, 26.0, 28.0, 26.0]
    specs = [
        ("benign", [{"category": "benign", "subtype": "osteochondroma", "box": _box(ellipse), "polygons": [ellipse]}]),
        ("malignant", [{"category": "malignant", "subtype": "osteosarcoma", "box": _box(square), "polygons": [square]},
                       {"category": "malignant", "subtype": "other mt", "box": [20.0, 10.0, 36.0, 26.0],
                        "polygons": [part_a, part_b]}]),
        ("normal", []),
        ("benign", [{"category": "benign", "subtype": "other bt", "box": [2.0, 30.0, 12.0, 44.0],  # at the left edge
                     "polygons": [[2.0, 30.0, 12.0, 30.0, 12.0, 44.0, 2.0, 44.0]]}]),
    ]
    recs = []
    for k, (label, lesions) in enumerate(specs, start=1):
        file = root / f"IMG{k:06d}.png"
        _write_image(file, lesions, seed=k)
        recs.append({"image_id": k, "name": file.stem, "file": str(file), "width": W, "height": H, "label": label,
                     "subtype": lesions[0]["subtype"] if lesions else None, "centre": 1, "age": 20 + k,
                     "gender": "F", "site": "femur", "view": "frontal", "patient": f"P{k:05d}", "lesions": lesions})
    return recs


def _check_contract(image, target, n):
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 4)
    assert target["labels"].dtype == torch.int64 and target["labels"].shape == (n,)
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (n, H, W)
    assert target["area"].shape == (n,) and target["iscrowd"].shape == (n,)
    assert target["iscrowd"].dtype == torch.int64 and int(target["iscrowd"].sum()) == 0
    assert isinstance(target["image_id"], int)
    assert type(image) is torch.Tensor and type(target["boxes"]) is torch.Tensor  # plain tensors out


def test_contract_and_masks(records):
    ds = BoneTumourDataset(records)
    assert len(ds) == 4 and ds.augment is None
    image, target = ds[0]
    _check_contract(image, target, 1)
    assert target["image_id"] == 1 and target["labels"].tolist() == [1]
    raw = np.asarray(Image.open(records[0]["file"]), dtype=np.float32) / 255
    np.testing.assert_allclose(image[0].numpy(), raw, atol=1e-6)  # no resizing, no preprocessing
    mask = target["masks"][0].numpy().astype(bool)
    # the mask is the drawn lesion: bright inside, and its box matches the record's rectangle within a pixel
    assert raw[mask].mean() > 0.75 and raw[~mask].mean() < 0.45
    np.testing.assert_allclose(boxes_from_masks(target["masks"])[0].numpy(), records[0]["lesions"][0]["box"], atol=1.5)
    assert target["boxes"][0].tolist() == pytest.approx(records[0]["lesions"][0]["box"])
    assert float(target["area"][0]) == mask.sum()


def test_union_of_polygons_and_labels(records):
    image, target = BoneTumourDataset(records)[1]
    _check_contract(image, target, 2)
    assert target["labels"].tolist() == [2, 2]
    union = target["masks"][1].numpy().astype(bool)
    assert union[15, 25] and union[22, 32] and not union[12, 34]  # inside part a, inside part b, outside both
    assert union.sum() > 0 and not (union & target["masks"][0].numpy().astype(bool)).any()


def test_normal_image_has_empty_targets(records):
    image, target = BoneTumourDataset(records)[2]
    _check_contract(image, target, 0)
    aug_image, aug_target = BoneTumourDataset(records, train=True)[2]
    _check_contract(aug_image, aug_target, 0)


def test_size_mismatch_is_an_error(records):
    bad = dict(records[0], width=W * 2)
    with pytest.raises(ValueError, match="record says"):
        BoneTumourDataset([bad])[0]


def test_flip_moves_image_boxes_and_masks_together(records):
    flip = PairedAugment(flip=1.0, degrees=0, scale=(1, 1), translate=(0, 0), brightness=0, contrast=0)
    plain_image, plain = BoneTumourDataset(records)[1]
    image, target = BoneTumourDataset(records, augment=flip)[1]
    torch.testing.assert_close(image, plain_image.flip(-1))
    assert torch.equal(target["masks"], plain["masks"].flip(-1))
    torch.testing.assert_close(target["boxes"], boxes_from_masks(plain["masks"].flip(-1)))
    tight = boxes_from_masks(plain["masks"])
    torch.testing.assert_close(target["boxes"][:, [2, 0]], W - tight[:, [0, 2]])  # x ↦ W - x


def test_default_augmentation_consistent(records):
    ds = BoneTumourDataset(records, train=True)
    assert isinstance(ds.augment, PairedAugment)
    torch.manual_seed(0)
    changed = 0
    for _ in range(6):
        image, target = ds[0]
        n = len(target["labels"])
        _check_contract(image, target, n)
        assert n == 1
        torch.testing.assert_close(target["boxes"], boxes_from_masks(target["masks"]))
        mask = target["masks"][0].bool()
        # the lesion (bright) still lies under its mask after the affine + jitter
        assert image[0][mask].mean() > image[0][~mask].mean() + 0.3
        changed += not torch.equal(target["masks"], BoneTumourDataset(records)[0][1]["masks"])
    assert changed >= 5


def test_lesions_leaving_the_image_are_dropped_consistently(records):
    shove = PairedAugment(flip=0.0, degrees=0, scale=(1, 1), translate=(0.4, 0.0), brightness=0, contrast=0)
    ds = BoneTumourDataset(records, augment=shove)
    torch.manual_seed(1)
    counts = []
    for _ in range(20):
        image, target = ds[3]  # lesion at x = 2…12: a shift of up to ±38 px often pushes it out
        n = len(target["labels"])
        _check_contract(image, target, n)
        counts.append(n)
        if n:
            assert int(target["masks"].sum()) >= 16
    assert 0 in counts and 1 in counts


def test_preprocess_option(records):
    raw, _ = BoneTumourDataset(records)[0]
    pre, target = BoneTumourDataset(records, preprocess=True)[0]
    _check_contract(pre, target, 1)
    assert not torch.allclose(raw, pre)
    ident, _ = BoneTumourDataset(records, preprocess=lambda g: g)[0]
    assert torch.equal(ident, raw)
    with pytest.raises(TypeError):
        BoneTumourDataset(records, augment="yes")


def _epoch(ds, seed, workers):
    loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=True, num_workers=workers,
                                         collate_fn=collate_fn, worker_init_fn=seed_worker,
                                         generator=torch.Generator().manual_seed(seed))
    return [(images, targets) for images, targets in loader]


def test_dataloader_two_workers_deterministic(records):
    ds = BoneTumourDataset(records, train=True)
    a = _epoch(ds, 0, workers=2)
    b = _epoch(ds, 0, workers=2)
    c = _epoch(ds, 1, workers=2)
    assert len(a) == 2 and all(len(images) == 2 for images, _ in a)
    images, targets = a[0]
    assert isinstance(images, tuple) and isinstance(targets, tuple)
    for (ia, ta), (ib, tb) in zip(a, b):
        for x, y in zip(ia, ib):
            assert torch.equal(x, y)
        for x, y in zip(ta, tb):
            assert x["image_id"] == y["image_id"]
            assert torch.equal(x["boxes"], y["boxes"]) and torch.equal(x["masks"], y["masks"])
    flat = lambda epoch: [x for images, _ in epoch for x in images]  # noqa: E731
    assert any(not torch.equal(x, y) for x, y in zip(flat(a), flat(c)))


def test_batch_is_accepted_by_torchvision_mask_rcnn(records):
    """The contract end to end: a training step of torchvision's MaskRCNN (tiny stand-in backbone) on a batch
    holding tumour images and a normal one returns finite losses."""
    from torch import nn
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    class Tiny(nn.Module):
        out_channels = 8

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())

        def forward(self, x):
            return {"0": self.body(x)}

    torch.manual_seed(0)
    model = MaskRCNN(Tiny(), num_classes=3, min_size=H, max_size=W,
                     rpn_anchor_generator=AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
                     box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2))
    model.train()
    images, targets = collate_fn([BoneTumourDataset(records, train=True)[i] for i in range(4)])
    losses = model(list(images), list(targets))
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()


def test_lesion_centred_crop_holds_a_lesion_and_keeps_the_contract(records):
    """train.crop_size: a tumour image's crop always holds one of its lesions whole (boxes from the cropped
    masks, pixels cut from the same place); a normal image's crop is an empty target; crops vary."""
    size = 40
    ds = BoneTumourDataset(records, train=True, augment=False, crop=LesionCentredCrop(size))
    whole = BoneTumourDataset(records, train=False)
    torch.manual_seed(0)
    seen = set()
    for _ in range(15):
        for index in (0, 1, 2):
            image, target = ds[index]
            n = len(target["labels"])
            assert image.shape == (3, size, size) and target["masks"].shape == (n, size, size)
            assert torch.equal(target["boxes"], boxes_from_masks(target["masks"]))
            if records[index]["label"] == "normal":
                assert n == 0
                continue
            assert n >= 1
            full_image, full_target = whole[index]
            # the crop is a window of the whole image: find it from one kept lesion's box
            areas = full_target["masks"].flatten(1).sum(1)
            kept = target["masks"].flatten(1).sum(1)
            assert any(int(a) == int(k) for a in areas for k in kept)  # at least one lesion kept whole
            matches = [(int(r), int(c)) for r in range(H - size + 1) for c in range(W - size + 1)
                       if torch.equal(full_image[:, r:r + size, c:c + size], image)]
            assert len(matches) == 1
            seen.add((index, matches[0]))
    assert len(seen) > 6


def test_crop_keeps_small_sides_whole(records):
    image, target = BoneTumourDataset(records, augment=False, crop=LesionCentredCrop(1000))[0]
    assert image.shape == (3, H, W)
    assert torch.equal(target["masks"], BoneTumourDataset(records)[0][1]["masks"])


def test_class_balanced_sampler_draws_each_class_equally_often():
    records = [{"label": "normal"}] * 8 + [{"label": "benign"}] * 3 + [{"label": "malignant"}]
    sampler = class_balanced_sampler(records, torch.Generator().manual_seed(0))
    assert len(sampler) == 12 and sampler.replacement
    drawn = [records[i]["label"] for _ in range(500) for i in sampler]
    shares = {label: drawn.count(label) / len(drawn) for label in ("normal", "benign", "malignant")}
    assert all(abs(share - 1 / 3) < 0.02 for share in shares.values()), shares
    again = class_balanced_sampler(records, torch.Generator().manual_seed(0))
    assert list(again) == list(class_balanced_sampler(records, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="at least one"):
        class_balanced_sampler([])


def test_strong_augmentation_widens_the_standard_ranges(records):
    from bonetumor import config, pipeline

    standard, strong = PairedAugment(), PairedAugment(**AUGMENT_STRENGTHS["strong"])
    affine = {name: aug.geometric.transforms[1] for name, aug in (("standard", standard), ("strong", strong))}
    assert affine["standard"].degrees == [-10.0, 10.0] and affine["strong"].degrees == [-20.0, 20.0]
    assert affine["standard"].scale == (0.9, 1.1) and affine["strong"].scale == (0.7, 1.4)
    assert strong.photometric.brightness == (0.6, 1.4) and standard.photometric.brightness == (0.8, 1.2)
    # the setting reaches the training set through pipeline.training_data
    settings = config.Settings.model_validate({"profile": "test", "train": {"augment_strength": "strong"}})
    prepared = pipeline.Prepared(root=None, records=records, problems=[], duplicates=[],
                                 splits={"train": records, "val": []})
    train_set, _, _, _ = pipeline.training_data(settings, prepared, progress=False)
    assert train_set.augment.geometric.transforms[1].scale == (0.7, 1.4)
    image, target = train_set[1]
    _check_contract(image, target, len(target["labels"]))
