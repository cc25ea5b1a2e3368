"""The phantom and the BTXRD reader agree: 200 generated images read back with the counts the generator
planned, a COCO file pycocotools loads, and masks that survive polygon → mask → polygon."""

from collections import Counter
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from bonetumor.data import btxrd, phantom
from bonetumor.data.coco import mask_to_polygons, write_coco


@pytest.fixture(scope="module")
def phantom200(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "BTXRD"
    phantom.generate(root, n_images=200, seed=5, size=192, progress=False)
    return root


def test_reader_counts_what_the_generator_wrote(phantom200):
    planned = phantom.plan(200, seed=5)
    records, problems = btxrd.read_dataset(phantom200)
    assert problems == []
    info = btxrd.summary(records, problems)
    expected = Counter(entry["label"] for entry in planned)
    assert info["images"] == 200
    assert info["classes"] == {k: expected[k] for k in ("normal", "benign", "malignant")}
    assert info["annotated_images"] == expected["benign"] + expected["malignant"]
    assert info["lesions"] >= info["annotated_images"]
    assert [r["subtype"] for r in records] == [e["subtype"] for e in planned]


def test_coco_loads_and_masks_survive_polygon_roundtrip(phantom200, tmp_path):
    records, _ = btxrd.read_dataset(phantom200)
    coco = COCO(str(write_coco(records, tmp_path / "coco.json")))
    assert len(coco.getImgIds()) == 200
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == sum(len(r["lesions"]) for r in records) > 0
    ious = []
    for ann in anns:
        mask = coco.annToMask(ann).astype(bool)
        polygons = mask_to_polygons(mask)
        back = coco.annToMask(dict(ann, segmentation=polygons)).astype(bool)
        ious.append((mask & back).sum() / (mask | back).sum())
    assert min(ious) >= 0.9, min(ious)


def test_near_duplicate_threshold_finds_the_planted_pairs(phantom200, tmp_path):
    """The phash threshold (distance <= 4) against the phantom's planted duplicates: every re-saved copy
    (another JPEG quality) and an exact byte copy are found, and little else is."""
    import json
    import shutil

    from bonetumor.data import patients

    planted = json.loads((phantom200 / "phantom.json").read_text())["duplicates"]
    assert planted, "the 200-image phantom plants no duplicate"
    copy_root = tmp_path / "BTXRD"
    shutil.copytree(phantom200, copy_root)
    records, _ = btxrd.read_dataset(copy_root)
    by_name = {r["name"]: r for r in records}
    # an exact duplicate: one normal image's bytes copied over another's
    normals = [r for r in records if r["label"] == "normal" and r["name"] not in planted]
    shutil.copyfile(normals[0]["file"], normals[-1]["file"])
    expected = {tuple(sorted((by_name[a]["image_id"], by_name[Path(b).stem]["image_id"]))) for a, b in planted.items()}
    expected.add(tuple(sorted((normals[0]["image_id"], normals[-1]["image_id"]))))
    found = set(patients.find_near_duplicates(records))
    assert expected <= found, expected - found
    assert len(found - expected) <= 2, found - expected  # pairs the phantom did not plant: few, if any
