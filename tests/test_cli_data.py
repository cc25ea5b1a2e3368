"""``bonetumor data …`` through ``bonetumor.cli.main``."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bonetumor import cli
from bonetumor.data import btxrd

try:
    from test_btxrd import CLEAN, make_dataset
except ImportError:  # tests run as a package
    from tests.test_btxrd import CLEAN, make_dataset


def test_summary_json(tmp_path, capsys):
    make_dataset(tmp_path)
    assert cli.main(["data", "summary", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"images": 7, "classes": {"normal": 2, "benign": 3, "malignant": 2},
                   "centres": {"1": 3, "2": 2, "3": 2}, "annotated_images": 5, "lesions": 6, "problems": []}


def test_summary_human_lists_problems(tmp_path, capsys):
    root = make_dataset(tmp_path)
    (root / "images" / "IMG000004.jpeg").write_bytes(b"junk")
    assert cli.main(["data", "summary", str(root)]) == 0
    out = capsys.readouterr().out
    assert "images            6 (normal 1, benign 3, malignant 2)" in out
    assert "problems          1" in out and "images/IMG000004.jpeg: not a readable image" in out


def test_summary_strict_fails_naming_the_file(tmp_path, capsys):
    root = make_dataset(tmp_path)
    (root / "images" / "IMG000004.jpeg").write_bytes(b"junk")
    assert cli.main(["data", "summary", str(root), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bonetumor: error:") and "images/IMG000004.jpeg" in err


def test_summary_of_a_missing_folder_is_an_error(tmp_path, capsys):
    assert cli.main(["data", "summary", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_clinical_calls_load_clinical(tmp_path, capsys, monkeypatch):
    seen = []

    def load_clinical(path):
        seen.append(path)
        return pd.DataFrame({"Patient ID": ["STS_001"], "Sex": ["Female"]}), ["row 1: something odd"]

    monkeypatch.setattr("bonetumor.data.clinical.load_clinical", load_clinical)
    assert cli.main(["data", "clinical", str(tmp_path / "x.csv"), "--json"]) == 0
    assert seen == [str(tmp_path / "x.csv")]
    assert json.loads(capsys.readouterr().out) == {"rows": 1, "columns": ["Patient ID", "Sex"],
                                                   "problems": ["row 1: something odd"]}


def test_phantom_calls_generate_and_reads_the_result(tmp_path, capsys, monkeypatch):
    calls = []

    def generate(out, n_images, seed, size, version=1, **kwargs):
        calls.append((out, n_images, seed, size, version))
        make_dataset(tmp_path, items=CLEAN[:3])  # a stand-in for the phantom: a BTXRD layout under out

    monkeypatch.setattr("bonetumor.data.phantom.generate", generate)
    out_dir = str(tmp_path / "BTXRD")
    assert cli.main(["data", "phantom", out_dir, "--images", "3", "--seed", "7", "--size", "96"]) == 0
    assert calls == [(tmp_path / "BTXRD", 3, 7, 96, 2)]  # version 2 unless asked: every profile's phantom
    assert "3 images (normal 1, benign 1, malignant 1), 2 lesions" in capsys.readouterr().out


def test_download_passes_dest_url_and_md5(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(btxrd, "download_btxrd", lambda dest, **kw: calls.append((dest, kw)) or tmp_path / "BTXRD")
    assert cli.main(["data", "download", "btxrd", "--dest", str(tmp_path), "--url", "http://x/y.zip",
                     "--md5", "none"]) == 0
    assert calls == [(str(tmp_path), {"url": "http://x/y.zip", "md5": None})]
    assert capsys.readouterr().out.strip() == str(tmp_path / "BTXRD")


def test_download_failure_exits_1_with_message(tmp_path, capsys, monkeypatch):
    def fail(dest, **kw):
        raise btxrd.DownloadError("http://x/y.zip: the download does not match MD5 abc")

    monkeypatch.setattr(btxrd, "download_btxrd", fail)
    assert cli.main(["data", "download", "btxrd", "--dest", str(tmp_path)]) == 1
    assert "does not match MD5" in capsys.readouterr().err


def test_unknown_dataset_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit):
        cli.main(["data", "download", "imagenet"])
