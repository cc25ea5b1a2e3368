"""Running a detector on one's own radiographs (bonetumor.predict)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bonetumor import predict as pr
from bonetumor.config import ModelSettings
from bonetumor.modeling.vgg_maskrcnn import build_model

SIZE = 64


class BoxModel(torch.nn.Module):
    """One malignant detection at a known box of the (resized) input, mask probability 0.9 inside it; records
    the inputs it was given."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, images):
        out = []
        for img in images:
            self.inputs.append(img)
            h, w = img.shape[-2:]
            masks = torch.zeros(2, 1, h, w)
            masks[0, 0, 8:24, 16:48] = 0.9
            out.append({"boxes": torch.tensor([[16.0, 8.0, 48.0, 24.0], [0.0, 0.0, 4.0, 4.0]]),
                        "labels": torch.tensor([2, 1]), "scores": torch.tensor([0.8, 0.1]), "masks": masks})
        return out


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    # grayscale PNG 128×64 (W×H): resized to 64×32, so the model's pixels are 2× the original's
    Image.fromarray(rng.integers(0, 255, (64, 128), dtype=np.uint8), mode="L").save(d / "knee.png")
    # colour JPEG 32×64 (W×H): longest side 64 already
    Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8), mode="RGB").save(d / "hand.jpg")
    (d / "broken.png").write_bytes(b"this is not a PNG")
    (d / "notes.txt").write_text("not an image, not collected")
    return d


def test_predict_images_maps_boxes_back_and_reports_the_bad_file(folder, tmp_path, capsys):
    model = BoxModel()
    out = tmp_path / "out"
    df = pr.predict_images(model, [folder], out, image_size=SIZE, score_threshold=0.5)
    # overlays for the two readable images, none for the broken one
    assert sorted(p.name for p in out.glob("*.png")) == ["hand_overlay.png", "knee_overlay.png"]
    with Image.open(out / "knee_overlay.png") as im:
        assert im.size == (128, 64) and im.mode == "RGB"
    # the model saw grey replicated on 3 channels, longest side 64, aspect kept
    shapes = sorted(tuple(x.shape) for x in model.inputs)
    assert shapes == [(3, 32, 64), (3, 64, 32)]
    assert all(torch.equal(x[0], x[1]) and torch.equal(x[0], x[2]) for x in model.inputs)
    # CSV: written atomically, same content as the frame; the error row names the file
    csv = pd.read_csv(out / "detections.csv")
    assert list(csv.columns) == pr.CSV_COLUMNS and len(csv) == len(df) == 3
    bad = csv[csv["file"].str.endswith("broken.png")]
    assert len(bad) == 1 and bad["status"].iloc[0].startswith("error: ") and "broken.png" in bad["status"].iloc[0]
    assert "broken.png" in capsys.readouterr().err
    assert [f for f, _ in df.attrs["errors"]] == [str(folder / "broken.png")]
    # knee: model box [16, 8, 48, 24] at half scale → [32, 16, 96, 48] in the original; low-scoring one dropped
    knee = csv[csv["file"].str.endswith("knee.png")]
    assert len(knee) == 1 and knee["status"].iloc[0] == "ok" and knee["class"].iloc[0] == "malignant"
    assert knee[["x0", "y0", "x1", "y1"]].iloc[0].tolist() == [32.0, 16.0, 96.0, 48.0]
    assert knee["score"].iloc[0] == pytest.approx(0.8)
    assert abs(int(knee["mask_area"].iloc[0]) - 64 * 32) <= 0.1 * 64 * 32  # 16×32 model px, ×4 in area
    hand = csv[csv["file"].str.endswith("hand.jpg")]
    assert hand[["x0", "y0", "x1", "y1"]].iloc[0].tolist() == [16.0, 8.0, 48.0, 24.0]  # not resized
    assert not list(out.glob(".*.tmp"))


def test_image_without_detection_gets_a_row(folder, tmp_path):
    df = pr.predict_images(BoxModel(), [folder / "knee.png"], tmp_path / "o", image_size=SIZE, score_threshold=0.95)
    assert df["status"].tolist() == ["no detection"] and (tmp_path / "o" / "knee_overlay.png").is_file()


def test_cli_predict_with_a_tiny_untrained_model_exits_non_zero_on_a_bad_file(folder, tmp_path, monkeypatch, capsys):
    from bonetumor import config
    from bonetumor.cli import main
    from bonetumor.modeling import checkpoints

    torch.manual_seed(0)
    model = build_model(ModelSettings(width=0.0625, pretrained=False, anchor_sizes=(16, 32)), image_size=SIZE)
    settings = config.load("smoke", overrides={"data": {"image_size": SIZE},
                                               "evaluate": {"score_threshold": 0.0, "mask_threshold": 0.5}})
    monkeypatch.setattr(checkpoints, "load_model", lambda run_dir, which="best", device="cpu": (model, {}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"settings": settings.model_dump(mode="json")}))
    out = tmp_path / "pred"
    argv = ["predict", str(run), str(folder / "knee.png"), str(folder / "hand.jpg"), str(folder / "broken.png"),
            "--out", str(out), "--device", "cpu"]
    assert main(argv) == 1
    csv = pd.read_csv(out / "detections.csv")
    assert csv["status"].str.startswith("error").sum() == 1
    assert {"knee_overlay.png", "hand_overlay.png"} <= {p.name for p in out.iterdir()}
    ok = csv[csv["status"] == "ok"]
    assert len(ok) > 0 and ok["class"].isin(["benign", "malignant"]).all()  # threshold 0: untrained boxes listed
    assert "2 image(s) processed" in capsys.readouterr().out
    # all good: status 0
    assert main(["predict", str(run), str(folder / "knee.png"), "--out", str(tmp_path / "pred2"), "--device", "cpu"]) == 0
    # the threshold chosen on validation wins over the settings', a given one over both
    (run / "score_threshold.json").write_text(json.dumps({"value": 0.99}))
    assert main(["predict", str(run), str(folder / "knee.png"), "--out", str(tmp_path / "pred3")]) == 0
    assert "at score ≥ 0.99" in capsys.readouterr().out
    assert main(["predict", str(run), str(folder / "knee.png"), "--out", str(tmp_path / "pred4"),
                 "--score-threshold", "0.5"]) == 0
    assert "at score ≥ 0.5;" in capsys.readouterr().out
    # a threshold chosen for another checkpoint is not used for this one: the settings' threshold is
    (run / "score_threshold.json").write_text(json.dumps({"value": 0.99, "checkpoint": "best"}))
    assert main(["predict", str(run), str(folder / "knee.png"), "--out", str(tmp_path / "pred5"),
                 "--which", "last"]) == 0
    assert "at score ≥ 0;" in capsys.readouterr().out
    # at scale: batched, no overlays, then resumed into the same folder (the broken file is tried again)
    at_scale = ["predict", str(run), str(folder), "--out", str(tmp_path / "pred6"), "--which", "last",
                "--no-overlays", "--batch-size", "2", "--workers", "0"]
    assert main(at_scale) == 1
    assert [p.name for p in (tmp_path / "pred6").iterdir()] == ["detections.csv"]
    first = (tmp_path / "pred6" / "detections.csv").read_text()
    assert main(at_scale + ["--resume"]) == 1
    again = (tmp_path / "pred6" / "detections.csv").read_text()
    assert sorted(again.splitlines()) == sorted(first.splitlines())  # the error row replaced by the same one,
    assert again.splitlines()[-1].startswith(f"{folder / 'broken.png'},error: {folder / 'broken.png'}: ")  # last


def test_collect_images_keeps_missing_paths_to_report_them(folder, tmp_path):
    files = pr.collect_images([folder, tmp_path / "missing.png"])
    assert [f.name for f in files] == ["broken.png", "hand.jpg", "knee.png", "missing.png"]
    with pytest.raises(ValueError, match="missing.png"):
        pr.read_image(tmp_path / "missing.png")


def test_predicting_twice_into_the_input_folder_never_reads_its_own_overlays(folder):
    (folder / "broken.png").unlink()
    first = pr.predict_images(BoxModel(), [folder], folder, image_size=SIZE, score_threshold=0.5)
    second = pr.predict_images(BoxModel(), [folder], folder, image_size=SIZE, score_threshold=0.5)
    assert sorted(first["file"].unique()) == sorted(second["file"].unique())
    assert not second["file"].str.endswith("_overlay.png").any()
    assert sorted(p.name for p in folder.glob("*_overlay.png")) == ["hand_overlay.png", "knee_overlay.png"]


@pytest.mark.parametrize("option,bad", [("--batch-size", "0"), ("--batch-size", "two"), ("--workers", "-1")])
def test_predict_refuses_a_batch_size_below_1_and_negative_workers(option, bad, capsys):
    from bonetumor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["predict", "run", "x.png", "--out", "o", option, bad])
    assert exc.value.code == 2 and option in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["nan", "inf", "-0.1", "1.5", "half"])
def test_predict_refuses_a_score_threshold_outside_0_1(bad, capsys):
    from bonetumor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["predict", "run", "x.png", "--out", "o", "--score-threshold", bad])
    assert exc.value.code == 2 and "--score-threshold" in capsys.readouterr().err


def test_predict_out_naming_an_existing_file_is_one_clear_line(folder, tmp_path, capsys):
    from bonetumor.cli import main

    existing = tmp_path / "taken.csv"
    existing.write_text("keep me")
    assert main(["predict", str(tmp_path), str(folder / "knee.png"), "--out", str(existing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(existing) in err and "not a folder" in err
    assert existing.read_text() == "keep me"


# --- prediction at scale: batches, a streamed and resumable CSV, no overlays -------------------------------


class Killed(BaseException):
    """Stands for the run being stopped (Ctrl-C, a kill) in the middle: not an image's error."""


class KilledOnCall(BoxModel):
    """A :class:`BoxModel` stopped at its ``n``-th forward call."""

    def __init__(self, n: int):
        super().__init__()
        self.calls, self.n = 0, n

    def forward(self, images):
        self.calls += 1
        if self.calls == self.n:
            raise Killed()
        return super().forward(images)


@pytest.fixture
def many(tmp_path):
    """Seven grayscale PNGs of one size (64×48) with different pixels."""
    d = tmp_path / "many"
    d.mkdir()
    rng = np.random.default_rng(1)
    for k in range(7):
        Image.fromarray(rng.integers(0, 255, (48, 64), dtype=np.uint8), mode="L").save(d / f"img{k}.png")
    return d


def _tiny_model():
    torch.manual_seed(0)
    return build_model(ModelSettings(width=0.0625, pretrained=False, anchor_sizes=(16, 32)), image_size=SIZE)


def test_batches_and_worker_processes_give_the_detections_of_one_image_at_a_time(many, tmp_path):
    model = _tiny_model()
    one = pr.predict_images(model, [many], tmp_path / "one", SIZE, score_threshold=0.0, overlays=False)
    batched = pr.predict_images(model, [many], tmp_path / "batched", SIZE, score_threshold=0.0, overlays=False,
                                batch_size=3, workers=2)
    assert (one["status"] == "ok").sum() > 7  # an untrained model at threshold 0: several boxes per image
    key = ["file", "status", "detection", "class", "mask_area"]
    assert one[key].astype(str).equals(batched[key].astype(str))
    numbers = ["score", "x0", "y0", "x1", "y1"]
    np.testing.assert_allclose(one[numbers].to_numpy(float), batched[numbers].to_numpy(float), atol=0.11)


def test_a_killed_run_resumes_without_duplicate_or_missing_rows(many, tmp_path):
    whole = pr.predict_images(BoxModel(), [many], tmp_path / "whole", SIZE, score_threshold=0.05, batch_size=2)
    out = tmp_path / "killed"
    with pytest.raises(Killed):  # the third batch never comes: images 0–3 are done
        pr.predict_images(KilledOnCall(3), [many], out, SIZE, score_threshold=0.05, batch_size=2)
    streamed = pd.read_csv(out / pr.CSV_NAME)
    assert sorted(streamed["file"].unique()) == [str(many / f"img{k}.png") for k in range(4)]
    model = BoxModel()
    resumed = pr.predict_images(model, [many], out, SIZE, score_threshold=0.05, batch_size=2, resume=True)
    assert len(model.inputs) == 3  # only the images the killed run had not done
    assert resumed.drop(columns="overlay").equals(whole.drop(columns="overlay"))
    assert (out / pr.CSV_NAME).read_text() == (tmp_path / "whole" / pr.CSV_NAME).read_text().replace("/whole/",
                                                                                                     "/killed/")
    assert sorted(p.name for p in out.glob("*_overlay.png")) == [f"img{k}_overlay.png" for k in range(7)]


def test_resume_drops_a_half_written_image_and_retries_errors(many, tmp_path):
    out = tmp_path / "out"
    whole = pr.predict_images(BoxModel(), [many], out, SIZE, score_threshold=0.05, overlays=False)
    text = (out / pr.CSV_NAME).read_text()
    assert (whole["file"] == str(many / "img6.png")).sum() == 2  # two detections: two rows
    # killed while writing img6's second row, after an error row for img2
    lines = text.splitlines(keepends=True)
    img2 = [line for line in lines if "img2.png" in line]
    cut = [line for line in lines if "img2.png" not in line]
    cut.insert(3, f"{many / 'img2.png'},error: {many / 'img2.png'}: was being copied,,,,,,,,,\n")
    (out / pr.CSV_NAME).write_text("".join(cut)[:-20])
    model = BoxModel()
    resumed = pr.predict_images(model, [many], out, SIZE, score_threshold=0.05, overlays=False, resume=True)
    assert len(model.inputs) == 2  # img2 retried, img6 predicted again; the others kept
    assert not resumed["status"].str.startswith("error").any() and len(resumed) == len(whole) == 14
    assert set(resumed.groupby("file").size()) == {2}
    assert "".join(img2) in (out / pr.CSV_NAME).read_text()


def test_an_image_without_detection_is_recorded_so_resume_skips_it(many, tmp_path):
    out = tmp_path / "out"
    first = pr.predict_images(BoxModel(), [many], out, SIZE, score_threshold=0.95, overlays=False, batch_size=4)
    assert (first["status"] == "no detection").all() and len(first) == 7
    before = (out / pr.CSV_NAME).read_bytes()
    model = BoxModel()
    again = pr.predict_images(model, [many], out, SIZE, score_threshold=0.95, overlays=False, resume=True)
    assert model.inputs == [] and len(again) == 7 and (out / pr.CSV_NAME).read_bytes() == before


def test_resume_refuses_a_csv_of_other_columns_naming_it(many, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / pr.CSV_NAME).write_text("image,label\nx.png,1\n")
    with pytest.raises(ValueError, match=f"{out / pr.CSV_NAME}.*columns"):
        pr.predict_images(BoxModel(), [many], out, SIZE, resume=True)
    assert (out / pr.CSV_NAME).read_text() == "image,label\nx.png,1\n"


def test_no_overlays_writes_the_csv_and_no_image(folder, tmp_path):
    out = tmp_path / "out"
    df = pr.predict_images(BoxModel(), [folder], out, SIZE, score_threshold=0.5, overlays=False, batch_size=8)
    assert [p.name for p in out.iterdir()] == [pr.CSV_NAME]
    assert df["overlay"].isna().all() and (df["status"] == "ok").sum() == 2
    assert df["status"].str.startswith("error: ").sum() == 1  # broken.png, reported and skipped


def test_a_batch_the_model_fails_on_is_run_image_by_image(many, tmp_path):
    class FailsOnBatches(BoxModel):
        def forward(self, images):
            if len(images) > 1 or images[0].sum() == 0:
                raise RuntimeError("out of memory")
            return super().forward(images)

    black = tmp_path / "black.png"
    Image.new("L", (64, 48)).save(black)
    df = pr.predict_images(FailsOnBatches(), [many, black], tmp_path / "o", SIZE, batch_size=4, overlays=False)
    assert (df["status"] == "ok").sum() == 7
    assert df.attrs["errors"] == [(str(black), f"{black}: out of memory")]


def test_a_large_jpeg_is_decoded_as_the_resize_cache_decodes_it(tmp_path):
    from bonetumor.data.btxrd.cache import decode_resized

    rng = np.random.default_rng(2)
    file = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 255, (200, 256), dtype=np.uint8), mode="L").save(file, quality=90)
    model = BoxModel()
    image, dets, _ = pr.detect_in_file(model, file, SIZE, 0.5, 0.5, "cpu")
    _, cached = decode_resized(file, 256, 200, SIZE)
    assert image.size == (256, 200) and cached.size == (64, 50)  # overlays on the full image
    expected = torch.from_numpy(np.asarray(cached, dtype=np.float32) / 255.0)
    assert torch.equal(model.inputs[0][0], expected)  # the very pixels training saw
    assert dets[0]["box"] == pytest.approx([64.0, 32.0, 192.0, 96.0])  # ×4 back to the original


def test_a_run_trained_on_preprocessed_images_gets_the_pixels_of_the_preprocessing_cache(many, tmp_path):
    from bonetumor.predict.images import load_for_model, preprocess_as_cached
    from bonetumor.preprocess.cache import preprocessed_file

    file = many / "img0.png"  # 64 px already: the resize leaves it as it is
    cached = np.asarray(Image.open(preprocessed_file(file, tmp_path)), dtype=np.float32) / 255
    item = load_for_model(file, SIZE, preprocess=preprocess_as_cached)
    np.testing.assert_allclose(item.tensor[0].numpy(), cached, atol=1e-6)
