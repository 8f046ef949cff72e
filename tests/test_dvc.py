"""DVC: our dir hash is DVC's own; the data check says match / differs / no data.dvc."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lifelearn.data.version import cache_if_match, check_data_version, dvc_dir_md5
from lifelearn.io import save_npy, write_json


def make_data(root: Path) -> Path:
    save_npy(root / "data" / "toy" / "x_train.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    write_json(root / "data" / "toy" / "meta.json", {"name": "toy"})
    (root / "data" / "other.txt").write_text("a\r\nb\n")  # CRLF: DVC 3 hashes raw bytes
    return root / "data"


def run(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)


@pytest.mark.slow  # runs DVC
def test_dir_md5_equals_dvc_add(tmp_path):
    data = make_data(tmp_path)
    run(["git", "init", "-q"], tmp_path)
    run([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    run([sys.executable, "-m", "dvc", "add", "-q", "data"], tmp_path)
    recorded = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    assert dvc_dir_md5(data) == recorded


def test_check_data_version_statuses(tmp_path):
    data = make_data(tmp_path)
    dvc_file = tmp_path / "data.dvc"
    assert check_data_version(data, dvc_file)["status"] == "no data.dvc"
    dvc_file.write_text(yaml.safe_dump({"outs": [{"md5": dvc_dir_md5(data), "path": "data"}]}))
    report = check_data_version(data, dvc_file)
    assert report["status"] == "match" and report["committed_md5"] == report["actual_md5"]
    assert set(report["datasets"]) == {"toy"}
    (data / "toy" / "meta.json").write_text('{"name": "toy2"}')
    assert check_data_version(data, dvc_file)["status"] == "differs"


@pytest.mark.slow  # runs DVC
def test_matching_data_is_cached_and_dvc_status_is_clean(tmp_path):
    data = make_data(tmp_path)
    run(["git", "init", "-q"], tmp_path)
    run([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    run([sys.executable, "-m", "dvc", "add", "-q", "data"], tmp_path)
    run(["rm", "-rf", ".dvc/cache"], tmp_path)  # as in a fresh clone: recorded, not cached
    dvc_file = tmp_path / "data.dvc"
    before = dvc_file.read_text()
    assert cache_if_match(check_data_version(data, dvc_file), dvc_file) == "cached"
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert status.stdout.strip() == "{}" and dvc_file.read_text() == before


@pytest.mark.slow  # runs DVC
def test_differing_data_is_never_cached(tmp_path):
    data = make_data(tmp_path)
    dvc_file = tmp_path / "data.dvc"
    dvc_file.write_text(yaml.safe_dump({"outs": [{"md5": "0" * 32 + ".dir", "path": "data"}]}))
    report = check_data_version(data, dvc_file)
    assert cache_if_match(report, dvc_file) == "not cached: data differs"
    assert "0" * 32 in dvc_file.read_text()
