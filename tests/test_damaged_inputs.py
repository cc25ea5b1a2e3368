"""Regression corpus of damaged inputs (issue 9): bad input never crashes a run, every damaged file is named,
nothing is lost and nothing unsafe happens.

Every damaged input is built here at test time from one tiny phantom (no committed binaries). Each case
asserts, where it applies, the exit status of ``bonetumor.cli.main``, that the message names the file and is
one line (no traceback), that the other images were still read, and — through an audit hook on ``open`` —
that nothing outside the dataset (and the test's own run and cache folders) was opened. A few cases sit below
the command line (the resize cache, a failing checkpoint write), where the command has no direct handle.

Cases covered by other test files (not repeated here, checked to still exist at the bottom):
SIGINT then resume equal to an uninterrupted run (``test_train``), ``predict --out`` naming a file,
``predict DIR --out DIR`` twice and ``--score-threshold nan`` (``test_predict``), atomic writes and the umask
(``test_io``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import bonetumor
from bonetumor import cli, config, io, paths, pipeline
from bonetumor.data import btxrd, phantom
from bonetumor.modeling.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint

N_IMAGES = 10

# ---------------------------------------------------------------------------------- what was opened

_OPENED: list[str] | None = None


def _audit(event: str, args) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one records only inside ``opened_files()``

#: Where a command may open files besides the dataset and the test's folders: Python, the package itself (its
#: code, profiles and installed metadata) and the kernel's CPU statistics.
_PACKAGE = Path(bonetumor.__file__).resolve().parent
_CODE = [Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}] + \
        [_PACKAGE, _PACKAGE.parent / "bonetumor.egg-info", paths.PARAMS.resolve(), Path("/dev/null"), Path("/proc"),
         Path(__file__).resolve().parent]  # the tests' own sources, which a warning's report may read (linecache)


@contextlib.contextmanager
def opened_files():
    """The paths opened (``open`` audit events) inside the block."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def outside(opened: list[str], *allowed: Path) -> list[str]:
    """The opened paths that lie neither under ``allowed`` nor in Python's or the package's own files."""
    roots = [Path(a).resolve() for a in allowed] + _CODE
    out = []
    for name in opened:
        if name.endswith(".__path_hook__"):  # the editable install's import hook, not a file
            continue
        path = Path(name).resolve()
        if not any(path == r or r in path.parents for r in roots):
            out.append(name)
    return out


# ---------------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    """A folder of this module, with the resize cache moved into it."""
    folder = tmp_path_factory.mktemp("damaged")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "CACHE", folder / "cache")
        yield folder


@pytest.fixture(scope="module")
def pristine(module_dir):
    """The tiny phantom every damaged copy starts from, and its records by name."""
    root = phantom.generate(module_dir / "pristine", n_images=N_IMAGES, seed=5, size=96, progress=False)
    records, problems = btxrd.read_dataset(root)
    assert problems == [] and len(records) == N_IMAGES
    return root, {r["name"]: r for r in records}


@pytest.fixture
def data(tmp_path, pristine):
    """A fresh copy of the phantom at ``tmp_path/data`` to damage, with helpers."""
    return Dataset(shutil.copytree(pristine[0], tmp_path / "data"), pristine[1])


class Dataset:
    def __init__(self, root: Path, records: dict[str, dict]):
        self.root, self.records = root, records
        self.normal = next(n for n, r in records.items() if r["label"] == "normal")
        self.tumour = next(n for n, r in records.items() if r["label"] != "normal")

    def image(self, name: str) -> Path:
        return self.root / "images" / f"{name}.jpeg"

    def annotation(self, name: str) -> Path:
        return self.root / "Annotations" / f"{name}.json"

    def pixels(self, name: str) -> np.ndarray:
        with Image.open(self.image(name)) as im:
            return np.asarray(im.convert("L"))

    def sheet(self) -> pd.DataFrame:
        return pd.read_excel(self.root / "dataset.xlsx")

    def write_sheet(self, df: pd.DataFrame, **kwargs) -> None:
        df.to_excel(self.root / "dataset.xlsx", index=False, **kwargs)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, *needles) -> str:
    """The command's one error line (no traceback), which holds every needle."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("bonetumor: error:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert str(needle) in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def summary(capsys, data: Dataset) -> dict:
    """``bonetumor data summary --json`` of the damaged copy: exit 0, nothing opened outside it."""
    with opened_files() as opened:
        code, out, err = run_cli(capsys, "data", "summary", data.root, "--json")
    assert code == 0 and "Traceback" not in err, err
    assert outside(opened, data.root) == []
    info = json.loads(out)
    assert all("\n" not in p for p in info["problems"])
    return info


def problem(info: dict, *needles) -> str:
    hits = [p for p in info["problems"] if all(str(n) in p for n in needles)]
    assert len(hits) == 1, f"expected one problem with {needles}, got {info['problems']}"
    return hits[0]


# ---------------------------------------------------------------------------------- image files (#1, #2)

def _save(arr: np.ndarray, path: Path, fmt: str, mode: str) -> None:
    if mode == "I;16":
        Image.fromarray(arr.astype(np.uint16) * 257).save(path, format=fmt)
    else:
        Image.fromarray(arr, mode="L").convert(mode).save(path, format=fmt)


VALID_FORMATS = {  # id: (file suffix, Pillow format, mode)
    "png": (".png", "PNG", "L"), "png-rgba": (".png", "PNG", "RGBA"), "png-rgb": (".png", "PNG", "RGB"),
    "png-palette": (".png", "PNG", "P"), "png-gray-alpha": (".png", "PNG", "LA"), "png-16bit": (".png", "PNG", "I;16"),
    "png-named-jpeg": (".jpeg", "PNG", "L"), "tiff": (".tif", "TIFF", "L"), "tiff-16bit": (".tiff", "TIFF", "I;16"),
    "bmp": (".bmp", "BMP", "L"), "bmp-rgb": (".bmp", "BMP", "RGB"), "jpeg-cmyk": (".jpeg", "JPEG", "CMYK"),
}


@pytest.mark.parametrize("case", VALID_FORMATS)
def test_any_format_mode_and_bit_depth_is_read(case, data, capsys, module_dir):
    """Before: any PNG stopped the whole read ("verify must be called directly after open", exit 1)."""
    suffix, fmt, mode = VALID_FORMATS[case]
    name = data.tumour  # with its annotation: the size must be the one LabelMe annotated
    pixels = data.pixels(name)
    data.image(name).unlink()
    _save(pixels, data.image(name).with_suffix(suffix), fmt, mode)
    info = summary(capsys, data)
    assert info["problems"] == [] and info["images"] == N_IMAGES
    records, _ = btxrd.read_dataset(data.root)
    record = next(r for r in records if r["name"] == name)
    assert (record["width"], record["height"]) == (pixels.shape[1], pixels.shape[0])
    decoded = np.asarray(btxrd.load_image(record["file"]))
    if mode in ("L", "RGBA", "RGB", "P", "LA", "I;16") and fmt != "JPEG":
        assert np.array_equal(decoded, pixels), "lossless formats give back the 8-bit pixels (16-bit: scaled)"
    problems: list = []
    small = btxrd.resize_records([record], 48, cache_dir=data.root.parent / "cache", progress=False,
                                 problems=problems)
    assert problems == [] and len(small) == 1


def _bomb_png(path: Path, side: int = 30000) -> None:
    """A small PNG whose header claims ``side`` × ``side`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
                     + chunk(b"IEND", b""))


BAD_IMAGES = {  # id: (how to damage the image file, words the problem holds)
    "decompression-bomb": (lambda p: (p.unlink(), _bomb_png(p.with_suffix(".png"))), "too large to decode safely"),
    "jpeg-without-end": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated JPEG"),
    "garbage": (lambda p: p.write_bytes(b"this is not an image"), "not a readable image"),
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "png-cut": (lambda p: _cut_png(p), "unreadable image"),
}


def _cut_png(path: Path) -> None:
    """The image as a PNG, cut in the middle of its pixel data."""
    with Image.open(path) as im:
        im.save(path.with_suffix(".png"))
    path.unlink()
    png = path.with_suffix(".png")
    png.write_bytes(png.read_bytes()[: png.stat().st_size * 2 // 3])


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_an_unreadable_image_is_a_named_problem_and_the_others_are_read(case, data, capsys):
    """Before: a decompression bomb stopped the whole read (DecompressionBombError is not an OSError)."""
    damage, words = BAD_IMAGES[case]
    damage(data.image(data.normal))
    info = summary(capsys, data)
    assert words in problem(info, f"images/{data.normal}.")
    assert info["images"] == N_IMAGES - 1 and len(info["problems"]) == 1


def _cut_with_end_marker(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3] + b"\xff\xd9")


def test_a_jpeg_cut_short_but_ending_in_an_end_marker_is_found_by_the_one_full_decode(data, tmp_path):
    """Before: it passed the header check and was silently trained on (libjpeg fills the rest with grey)."""
    _cut_with_end_marker(data.image(data.normal))
    records, problems = btxrd.read_dataset(data.root)
    assert problems == [] and len(records) == N_IMAGES  # the header is fine: found when decoded
    found: list = []
    with opened_files() as opened:
        small = btxrd.resize_records(records, 48, cache_dir=tmp_path / "cache", progress=False, problems=found)
    assert outside(opened, data.root, tmp_path / "cache") == []
    assert [str(p) for p in found] == [f"images/{data.normal}.jpeg: truncated JPEG: its image data stops before "
                                       "the last row (an end-of-image marker follows the cut); image skipped"]
    assert len(small) == N_IMAGES - 1 and data.normal not in {r["name"] for r in small}
    with pytest.raises(btxrd.DatasetError, match=f"{data.normal}.jpeg: truncated JPEG"):
        btxrd.resize_records(records, 48, cache_dir=tmp_path / "cache2", progress=False)


def test_prepare_leaves_an_image_that_fails_its_full_decode_out_of_every_split(data):
    _cut_with_end_marker(data.image(data.normal))
    settings = config.load("smoke", overrides={"data": {"image_size": 64}}, data=data.root)
    prepared = pipeline.prepare(settings, progress=False)
    assert data.normal not in {r["name"] for r in prepared.records}
    assert any(data.normal in str(p) and "truncated JPEG" in str(p) for p in prepared.problems)
    assert not any(r["name"] == data.normal for split in prepared.splits.values() for r in split)


# ---------------------------------------------------------------------------------- annotations (#3, #7)

def test_deeply_nested_annotation_json_is_a_named_problem(data, capsys):
    """Before: RecursionError traceback."""
    data.annotation(data.tumour).write_text("[" * 100_000 + "]" * 100_000)
    info = summary(capsys, data)
    assert "nested too deeply" in problem(info, f"Annotations/{data.tumour}.json")
    assert info["images"] == N_IMAGES - 1  # a tumour image without a lesion is left out, and said so
    assert data.tumour in problem(info, f"images/{data.tumour}.jpeg", "no usable lesion")


def test_deeply_nested_values_inside_a_labelme_file_are_a_named_problem(data, capsys):
    doc = json.loads(data.annotation(data.tumour).read_text())
    deep: list = []
    for _ in range(900):  # parses, but Python's repr of it would overflow the stack
        deep = [deep]
    doc["shapes"][0]["label"] = deep
    doc["shapes"][0]["group_id"] = deep
    data.annotation(data.tumour).write_text(json.dumps(doc))
    info = summary(capsys, data)
    assert "is not text" in problem(info, f"Annotations/{data.tumour}.json", "label [[[")
    assert "is not a number" in problem(info, f"Annotations/{data.tumour}.json", "group_id [[[")
    assert info["images"] == N_IMAGES


def test_duplicated_shapes_add_no_lesion(data, capsys, pristine):
    """Before: a repeated rectangle added a second, box-only lesion."""
    doc = json.loads(data.annotation(data.tumour).read_text())
    doc["shapes"] = doc["shapes"] + [dict(s) for s in doc["shapes"]]
    data.annotation(data.tumour).write_text(json.dumps(doc))
    info = summary(capsys, data)
    assert info["lesions"] == sum(len(r["lesions"]) for r in pristine[1].values())
    assert all("repeats shape" in p for p in info["problems"]) and len(info["problems"]) == len(doc["shapes"]) // 2
    records, _ = btxrd.read_dataset(data.root)
    assert next(r for r in records if r["name"] == data.tumour)["lesions"] == pristine[1][data.tumour]["lesions"]


def test_image_path_in_json_never_opens_a_file_outside_the_dataset(data, capsys, tmp_path):
    """Passed before: imagePath is never used to open anything."""
    secret = tmp_path / "secret.png"
    Image.new("L", (8, 8)).save(secret)
    doc = json.loads(data.annotation(data.tumour).read_text())
    doc["imagePath"] = "../../secret.png"
    data.annotation(data.tumour).write_text(json.dumps(doc))
    with opened_files() as opened:
        info = summary(capsys, data)
    assert str(secret) not in opened and not any("secret" in name for name in opened)
    assert "names another image" in problem(info, f"Annotations/{data.tumour}.json")
    assert info["images"] == N_IMAGES


@pytest.mark.parametrize("image_id", ["../../secret.png", "../secret", "/etc/passwd"])
def test_image_id_never_opens_a_file_outside_the_dataset(image_id, data, capsys, tmp_path):
    """Passed before: images are found by id among the files under images/, never by path."""
    Image.new("L", (8, 8)).save(tmp_path / "secret.png")
    df = data.sheet()
    row = df[df["image_id"] == f"{data.normal}.jpeg"].index[0]
    df.loc[row, "image_id"] = image_id
    data.write_sheet(df)
    with opened_files() as opened:
        info = summary(capsys, data)
    assert not any("secret" in name or name == "/etc/passwd" for name in opened)
    assert "no image file" in problem(info, "dataset.xlsx", image_id)
    assert info["images"] == N_IMAGES - 1
    assert "without a row in the sheet" in problem(info, f"images/{data.normal}.jpeg")


# ---------------------------------------------------------------------------------- the sheet (#7)

@pytest.mark.parametrize("age", [-5, 900])
def test_an_implausible_age_is_a_problem(age, data, capsys):
    df = data.sheet()
    df.loc[0, "age"] = age
    data.write_sheet(df)
    info = summary(capsys, data)
    assert "outside 0–120; left empty" in problem(info, "dataset.xlsx", f"age {age}")
    assert info["images"] == N_IMAGES
    records, _ = btxrd.read_dataset(data.root)
    assert records[0]["age"] is None


@pytest.mark.parametrize("value", [2, 0.6])
def test_a_one_hot_cell_that_is_not_0_or_1_is_a_problem_not_read_as_set(value, data, capsys):
    """Before: 2 and 0.6 were read as 1 without a word."""
    df = data.sheet()
    row = int(df.index[df["image_id"] == f"{data.normal}.jpeg"][0])
    site = next(c for c in btxrd.SITE_COLUMNS if df.loc[row, c] == 1)
    df["lateral"] = df["lateral"].astype(object)
    df.loc[row, "lateral"] = value  # a view that was 0
    data.write_sheet(df)
    info = summary(capsys, data)
    shown = repr(float(value)).rstrip("0").rstrip(".")  # 2 → "2", 0.6 → "0.6"
    assert "not 0/1; read as 0" in problem(info, "dataset.xlsx", "'lateral'", shown)
    records, _ = btxrd.read_dataset(data.root)
    record = next(r for r in records if r["name"] == data.normal)
    assert "lateral" not in (record["view"] or "") and site in record["site"]


def test_the_sheet_is_read_by_its_columns_when_it_is_not_the_first(data, capsys):
    """Before: "the sheet lacks 37 of the 37 BTXRD columns" when Sheet1 came second in the workbook."""
    df = data.sheet()
    with pd.ExcelWriter(data.root / "dataset.xlsx") as writer:
        pd.DataFrame({"note": ["read me first"]}).to_excel(writer, sheet_name="Notes", index=False)
        df.to_excel(writer, sheet_name="Sheet1", index=False)
    info = summary(capsys, data)
    assert info["images"] == N_IMAGES
    assert "read sheet 'Sheet1'" in problem(info, "dataset.xlsx", "'Notes'")


def test_a_workbook_without_the_columns_is_one_line_naming_the_file_and_its_sheets(data, capsys):
    with pd.ExcelWriter(data.root / "dataset.xlsx") as writer:
        pd.DataFrame({"note": [1]}).to_excel(writer, sheet_name="Notes", index=False)
        pd.DataFrame({"x": [1]}).to_excel(writer, sheet_name="Other", index=False)
    code, _, err = run_cli(capsys, "data", "summary", data.root)
    assert code == 2
    one_error_line(err, data.root / "dataset.xlsx", "'Notes' lacks 37 of the 37", "'Other'")


# ---------------------------------------------------------------------------------- a trained run (#4, #5)

TRAIN = ["--profile", "smoke", "--epochs", "1", "--device", "cpu", "--no-progress",
         "--set", "model.width=0.0625", "--set", "model.backbone=vgg19", "--set", "data.image_size=64",
         "--set", "model.anchor_sizes=[16, 32]", "--set", "train.batch_size=4",
         "--set", "model.rpn_proposals_train=32", "--set", "model.rpn_proposals_test=32",
         "--set", "model.box_batch_size_per_image=16"]


def _train(folder: Path, data_arg, out: Path, *extra) -> tuple[int, str, str]:
    import io as _io
    from contextlib import redirect_stderr, redirect_stdout

    out_buf, err_buf = _io.StringIO(), _io.StringIO()
    with redirect_stdout(out_buf), redirect_stderr(err_buf), _chdir(folder):
        code = cli.main(["train", "--data", str(data_arg), "--out", str(out), *TRAIN, *extra])
    return code, out_buf.getvalue(), err_buf.getvalue()


@contextlib.contextmanager
def _chdir(folder: Path):
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def trained(module_dir, pristine):
    """A 1-epoch run trained with a *relative* ``--data`` (from ``module_dir/a``): ``(run, data folder)``."""
    (module_dir / "a").mkdir()
    root = shutil.copytree(pristine[0], module_dir / "a" / "data")
    run = module_dir / "run"
    with opened_files() as opened:
        code, _, err = _train(module_dir / "a", "data", run)
    assert code == 0, err
    assert outside(opened, root, run, paths.CACHE) == []
    return run, root


def test_a_relative_data_path_is_stored_absolute_with_the_data_fingerprint(trained):
    """Before: run.json kept --data as typed ("data"), relative to a directory it did not record."""
    run, root = trained
    info = json.loads((run / "run.json").read_text())
    assert info["settings"]["data"]["path"] == str(root.resolve())
    assert info["data"] == {"path": str(root.resolve()), "fingerprint": btxrd.fingerprint(root)}


def test_evaluate_from_another_directory_scores_the_same_data_or_refuses(trained, module_dir, capsys):
    """Before: run from another directory, evaluate silently scored whatever sat at the same relative path,
    overwriting metrics-test.json."""
    run, root = trained
    other = module_dir / "b" / "data"
    shutil.copytree(root, other)
    with Image.open(other / "images" / "IMG000002.jpeg") as im:  # other content at the same relative path
        im.save(other / "images" / "IMG000002.jpeg", quality=40)
    evaluate = ["evaluate", run, "--bootstrap", "3", "--json", "--device", "cpu"]
    with _chdir(module_dir / "b"), opened_files() as opened:
        code, out, err = run_cli(capsys, *evaluate)
    assert code == 0, err
    assert outside(opened, root, run, paths.CACHE) == []  # b/data never opened
    written = (run / "metrics-test.json").read_bytes()
    assert json.loads(written)["meta"]["run"] == run.name
    assert json.loads((run / "predictions-test.json").read_text())["meta"]["data"] == str(root.resolve())
    # the other folder, named by a relative --data: refused, naming both folders and fingerprints
    with _chdir(module_dir / "b"):
        code, _, err = run_cli(capsys, *evaluate, "--data", "data")
    assert code == 2
    one_error_line(err, root.resolve(), other.resolve(), btxrd.fingerprint(root)[:12],
                   btxrd.fingerprint(other)[:12], "--allow-other-data")
    assert (run / "metrics-test.json").read_bytes() == written
    # asked for: scored, into a file of its own
    code, _, err = run_cli(capsys, *evaluate, "--data", other, "--allow-other-data")
    assert code == 0, err
    assert (run / f"metrics-test-data-{btxrd.fingerprint(other)[:12]}.json").is_file()
    assert (run / "metrics-test.json").read_bytes() == written


def test_evaluate_refuses_a_relative_data_path_recorded_by_an_older_run(trained, tmp_path, capsys):
    run, _ = trained
    old = json.loads((run / "run.json").read_text())
    old["settings"]["data"]["path"] = "data"
    del old["data"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps(old))
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "old")
    assert code == 2
    one_error_line(err, tmp_path / "old" / "run.json", "relative", "--data")


@pytest.fixture
def run_copy(trained, tmp_path):
    """A copy of the trained run to damage, and an image to predict on."""
    run = shutil.copytree(trained[0], tmp_path / "run")
    image = shutil.copy(trained[1] / "images" / "IMG000001.jpeg", tmp_path / "knee.jpeg")
    return run, Path(image)


def _predict(capsys, run: Path, image: Path, *extra):
    with opened_files() as opened:
        code, _, err = run_cli(capsys, "predict", run, image, "--out", run.parent / "pred", "--device", "cpu", *extra)
    assert outside(opened, run, image, run.parent / "pred") == []
    return code, err


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


class _Payload:
    """What an attacker's pickle would run on load: makes a folder (harmless, and visible if it ran)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


RUN_DAMAGE = {  # id: (damage(run), extra predict args, words the error line holds)
    "safetensors-truncated": (lambda run: _truncate(run / "model.safetensors"), (),
                              ("model.safetensors", "damaged", "delete it to load best.pt")),
    "best-truncated": (lambda run: ((run / "model.safetensors").unlink(), _truncate(run / "best.pt")), (),
                       ("best.pt", "damaged", "--which last")),
    "last-truncated": (lambda run: _truncate(run / "last.pt"), ("--which", "last"),
                       ("last.pt", "damaged", "copy", "best.pt", "--resume")),
    "best-not-a-checkpoint": (lambda run: ((run / "model.safetensors").unlink(),
                                           torch.save({"weights": torch.ones(2)}, run / "best.pt")), (),
                              ("best.pt", "not a bonetumor checkpoint")),
    "run-json-empty-object": (lambda run: (run / "run.json").write_text("{}"), (),
                              ("run.json", "no 'settings'", "rebuild it")),
    "run-json-malformed": (lambda run: (run / "run.json").write_text('{"settings": '), (),
                           ("run.json", "not valid JSON", "retrain")),
    "run-json-deep": (lambda run: (run / "run.json").write_text("[" * 100_000 + "]" * 100_000), (),
                      ("run.json", "nested too deeply")),
    "run-json-list": (lambda run: (run / "run.json").write_text("[]"), (), ("run.json", "expected a JSON object")),
    "threshold-malformed": (lambda run: (run / "score_threshold.json").write_text("{"), (),
                            ("score_threshold.json", "not a score threshold file", "--score-threshold")),
    "threshold-nan": (lambda run: (run / "score_threshold.json").write_text('{"value": NaN}'), (),
                      ("score_threshold.json", "not a number between 0 and 1")),
}


@pytest.mark.parametrize("case", RUN_DAMAGE)
def test_a_damaged_run_file_is_one_line_naming_it_and_how_to_recover(case, run_copy, capsys):
    """Before: raw tracebacks (safetensors, torch's zip reader, KeyError) or "Expecting value" without a file."""
    run, image = run_copy
    damage, extra, words = RUN_DAMAGE[case]
    damage(run)
    code, err = _predict(capsys, run, image, *extra)
    assert code == 2
    one_error_line(err, *words)


def test_a_checkpoint_holding_a_malicious_pickle_is_refused_in_one_line(run_copy, capsys, tmp_path):
    """Passed before in substance (weights_only blocks it), but as a traceback."""
    run, image = run_copy
    marker = tmp_path / "pwned"
    (run / "model.safetensors").unlink()
    torch.save({"format": CHECKPOINT_FORMAT, "model": _Payload(marker)}, run / "best.pt")
    code, err = _predict(capsys, run, image)
    assert code == 2
    one_error_line(err, run / "best.pt", "refused", "nothing was executed")
    assert not marker.exists()


def test_resuming_from_a_damaged_last_checkpoint_says_to_use_the_other(run_copy, trained, capsys):
    run, _ = run_copy
    _truncate(run / "last.pt")
    code, _, err = _train(trained[1].parent, trained[1], run, "--resume")
    assert code == 2
    one_error_line(err, run / "last.pt", "damaged", f"copy {run / 'best.pt'}")


# ---------------------------------------------------------------------------------- full disk

def test_a_full_disk_leaves_a_consistent_run_that_resumes(trained, tmp_path, monkeypatch):
    """Passed before in substance (atomic writes); now the message names the file, and last.pt is written
    after the epoch's other files, so a resumed run never looks complete without its best weights."""
    import safetensors.torch

    reference, root = trained
    real = safetensors.torch.save_file

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # part of it, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    run = tmp_path / "run"
    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    code, _, err = _train(root.parent, root, run)
    assert code == 2
    one_error_line(err, "No space left on device", run / "model.safetensors")
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "run.json"]  # no temporary, no last.pt
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "No space left" in info["error"]
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    code, _, err = _train(root.parent, root, run, "--resume")
    assert code == 0, err
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    a, b = load_checkpoint(run / "last.pt")["model"], load_checkpoint(reference / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_write_that_fails_keeps_the_previous_file(tmp_path, monkeypatch):
    """torch reports a failed write (a full disk) as a RuntimeError: now an OSError naming the file."""
    target = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}}, target)
    before = target.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\3\4 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="last.pt: cannot write it .*disk full"):
        save_checkpoint({"model": {"w": torch.zeros(2)}}, target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# ---------------------------------------------------------------------------------- modes and the phantom (#6, #8)

def test_run_phantom_and_cache_files_have_the_modes_of_a_plain_write(trained, pristine):
    run, _ = trained
    files = [p for p in run.iterdir() if p.is_file()] + [p for p in paths.CACHE.rglob("*.png")]
    files += [p for p in pristine[0].rglob("*") if p.is_file()]
    assert files and {oct(p.stat().st_mode & 0o777) for p in files} == {oct(io.plain_mode())}
    folders = [pristine[0], *(p for p in pristine[0].rglob("*") if p.is_dir())]
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(io.plain_mode(directory=True))}


def test_data_phantom_into_a_non_empty_folder(tmp_path, capsys):
    """Before: a FileExistsError traceback; now one line, the same phantom is reused, --force replaces only
    an earlier phantom."""
    out = tmp_path / "ph"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["data", "phantom", out, "--images", "4", "--size", "64", "--seed", "1"]
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    one_error_line(err, out, "not an empty folder")
    code, _, err = run_cli(capsys, *args, "--force")
    assert code == 2 and (out / "notes.txt").read_text() == "mine"  # never replaced: it holds no phantom
    one_error_line(err, out, "not an empty folder")
    fresh = tmp_path / "fresh"
    assert run_cli(capsys, *args[:2], fresh, *args[3:])[0] == 0
    assert oct(fresh.stat().st_mode & 0o777) == oct(io.plain_mode(directory=True))
    stamp = (fresh / "dataset.xlsx").stat().st_mtime_ns
    code, out_text, _ = run_cli(capsys, *args[:2], fresh, *args[3:])
    assert code == 0 and "already holds" in out_text and (fresh / "dataset.xlsx").stat().st_mtime_ns == stamp
    code, _, err = run_cli(capsys, *args[:2], fresh, "--images", "5", "--size", "64")
    assert code == 2
    one_error_line(err, fresh, "phantom of other settings", "--force")
    code, _, _ = run_cli(capsys, *args[:2], fresh, "--images", "5", "--size", "64", "--force")
    assert code == 0 and len(list((fresh / "images").iterdir())) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "ph"]  # no temporary folder left behind


def test_an_invalid_setting_is_one_line_naming_the_profile_and_the_setting(capsys):
    code, _, err = run_cli(capsys, "train", "--profile", "smoke", "--set", "data.image_size=48")
    assert code == 2
    one_error_line(err, paths.PARAMS / "smoke.yaml", "data.image_size", "greater than or equal to 64", "got 48")


# ---------------------------------------------------------------------------------- covered elsewhere

COVERED_ELSEWHERE = {
    "SIGINT then resume equals an uninterrupted run":
        ("test_train.py", "test_ctrl_c_saves_interrupted_checkpoint_and_resume_matches"),
    "stopped then resumed run equals an uninterrupted run":
        ("test_train.py", "test_stopped_and_resumed_run_ends_with_identical_weights"),
    "predict --out naming an existing file": ("test_predict.py",
                                              "test_predict_out_naming_an_existing_file_is_one_clear_line"),
    "predict DIR --out DIR twice": ("test_predict.py",
                                    "test_predicting_twice_into_the_input_folder_never_reads_its_own_overlays"),
    "predict --score-threshold nan": ("test_predict.py", "test_predict_refuses_a_score_threshold_outside_0_1"),
    "atomic writes respect the umask": ("test_io.py", "test_atomic_writes_have_the_modes_of_a_plain_open"),
    "EXIF orientation gives the annotated frame": ("test_btxrd.py", "test_exif_orientation_gives_the_displayed_frame"),
}


@pytest.mark.parametrize("case", COVERED_ELSEWHERE)
def test_cases_covered_by_other_files_are_still_there(case):
    file, name = COVERED_ELSEWHERE[case]
    assert f"def {name}(" in (Path(__file__).parent / file).read_text(), f"{case}: {file}::{name} is gone"
