"""DVC: our dir hash is DVC's own; the data check says match / differs / no data.dvc."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lifelearn.data.version import cache_if_match, check_data_version, dvc_dir_md5
from lifelearn.io import md5_file, save_npy, write_json


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


# --- what `snakemake -n` plans again: datasets_to_prepare_again, mark_checks ----------------

def toy_dataset(root: Path, name: str, seed: int = 0) -> Path:
    from lifelearn.data.arrays import write_dataset

    rng = np.random.default_rng(seed)
    arrays = {f"{k}_{s}": rng.random((4, 1, 3), dtype=np.float32) if k == "x" else np.arange(4)
              for s in ("train", "val", "test") for k in "xy"}
    return write_dataset(root / name, arrays, {"name": name, "source": "toy"})


@pytest.fixture
def two_embedded(tmp_path):
    """data/a and data/b, recorded by a data.dvc; a data/c not embedded (downloaded)."""
    data = tmp_path / "data"
    toy_dataset(data, "a", 0), toy_dataset(data, "b", 1)
    dvc_file = tmp_path / "data.dvc"
    dvc_file.write_text(yaml.safe_dump({"outs": [{"md5": dvc_dir_md5(data), "path": "data"}]}))
    toy_dataset(data, "c", 2)
    return data, dvc_file


def again(data, dvc_file, last_check=None):
    from lifelearn.data.version import datasets_to_prepare_again

    return datasets_to_prepare_again(data, {"a", "c"}, ["a", "b"], dvc_file, last_check)


def test_sound_data_is_not_prepared_again(two_embedded):
    data, dvc_file = two_embedded
    assert dvc_dir_md5(data, only=["a", "b"]) != dvc_dir_md5(data)  # c is not data.dvc's business
    assert again(data, dvc_file) == {}


@pytest.mark.parametrize("name", ["b", "c"])
def test_a_damaged_dataset_and_only_it_is_prepared_again(two_embedded, name):
    """Embedded or downloaded: the file and both md5s; the other embedded one is sound (data/
    with the damaged files as meta.json records them equals data.dvc)."""
    from test_data import damage

    data, dvc_file = two_embedded
    expected = md5_file(data / name / "y_test.npy")
    damage(data / name / "y_test.npy", "truncated")
    assert again(data, dvc_file) == {name: f"{data / name / 'y_test.npy'}: expected md5 {expected} (recorded in "
                                           f"meta.json), actual md5 {md5_file(data / name / 'y_test.npy')}"}
    (data / name / "y_test.npy").unlink()
    assert "actual: no such file" in again(data, dvc_file)[name]


def test_embedded_data_differing_from_data_dvc_is_prepared_again_until_a_check_saw_it(two_embedded, tmp_path):
    data, dvc_file = two_embedded
    meta = json.loads((data / "b" / "meta.json").read_text())
    (data / "b" / "meta.json").write_text(json.dumps({**meta, "source": "edited"}))  # sound, yet not data.dvc's
    last_check = tmp_path / "data_version.json"
    reasons = again(data, dvc_file, last_check)  # no data check yet: each embedded one
    assert set(reasons) == {"a", "b"} and "differ from data.dvc" in reasons["b"]
    write_json(last_check, check_data_version(data, dvc_file))  # the check has seen this data (and warned)
    assert again(data, dvc_file, last_check) == {}
    checked = json.loads(last_check.read_text())
    write_json(last_check, {**checked, "datasets": {**checked["datasets"], "b": "an older version"}})
    assert set(again(data, dvc_file, last_check)) == {"b"}


def test_an_embedded_dataset_without_md5s_is_prepared_again_a_downloaded_one_is_not(two_embedded):
    data, dvc_file = two_embedded
    for name in ("a", "c"):
        meta = json.loads((data / name / "meta.json").read_text())
        del meta["md5"]
        (data / name / "meta.json").write_text(json.dumps(meta))
    assert set(again(data, dvc_file)) == {"a", "b"}  # b: data/ no longer equals data.dvc
    assert "records no md5s" in again(data, dvc_file)["a"]


def test_check_marks_are_ancient_while_sound_and_new_when_damaged(tmp_path):
    from lifelearn.data.version import mark_checks

    marks = tmp_path / "logs" / "data_check"
    mark_checks(marks, ["a", "b"], {})
    assert [(p.name, p.read_text(), p.stat().st_mtime) for p in sorted(marks.iterdir())] == \
        [("a.txt", "ok\n", 0), ("b.txt", "ok\n", 0)]
    mark_checks(marks, ["a", "b"], {"b": "data/b/x_train.npy: expected md5 1, actual md5 2"})
    assert (marks / "b.txt").stat().st_mtime > 0 and "x_train.npy: expected md5 1" in (marks / "b.txt").read_text()
    first = (marks / "b.txt").read_text()
    mark_checks(marks, ["a", "b"], {"b": "data/b/x_train.npy: expected md5 1, actual md5 2"})
    assert (marks / "b.txt").read_text() != first  # a new finding each time (Snakemake compares contents)
    mark_checks(marks, ["a", "b"], {})
    assert (marks / "b.txt").read_text() == "ok\n" and (marks / "b.txt").stat().st_mtime == 0


@pytest.mark.slow  # runs snakemake
def test_snakemake_plans_prepare_data_again_for_damaged_data(workflow_copy):
    """The issue's case: a partial copy truncates data/digits/x_train.npy; `snakemake -n` plans
    its prepare_data again (and only its), a run repairs it; embedded data that differs from
    data.dvc (a hand-edited meta.json, no data check yet) is planned again too."""
    from conftest import planned_jobs, snakemake
    from test_data import damage

    from lifelearn.data import verify_dataset

    data, marks = workflow_copy / "data", workflow_copy / "logs" / "data_check"
    snakemake(workflow_copy, "--cores", "1", "data/digits/meta.json", "data/mnist1d/meta.json")
    assert "prepare_data" not in planned_jobs(workflow_copy)  # data.dvc's data, sound
    assert (marks / "digits.txt").read_text() == "ok\n" and (marks / "digits.txt").stat().st_mtime == 0
    expected = md5_file(data / "digits" / "x_train.npy")
    damage(data / "digits" / "x_train.npy", "truncated")
    jobs = planned_jobs(workflow_copy)
    assert jobs["prepare_data"] == 1 and jobs["data_version"] == 1
    assert f"data/digits/x_train.npy: expected md5 {expected}" in (marks / "digits.txt").read_text()
    snakemake(workflow_copy, "--cores", "1", "data/digits/meta.json")
    assert verify_dataset(data / "digits")["md5"]["x_train.npy"] == md5_file(data / "digits" / "x_train.npy") == expected
    assert "prepare_data" not in planned_jobs(workflow_copy)
    meta = json.loads((data / "mnist1d" / "meta.json").read_text())
    (data / "mnist1d" / "meta.json").write_text(json.dumps({**meta, "source": "edited"}))
    assert planned_jobs(workflow_copy)["prepare_data"] == 2  # which one differs: data.dvc cannot say


@pytest.mark.slow  # runs snakemake
def test_the_data_stage_first_lets_a_code_change_below_a_data_rerun_be_planned(workflow_copy):
    """Snakemake issue #4166: when prepare_data reruns, a job below it whose own code changed
    is left out of the same invocation's plan (its data inputs are ancient()). `make run`
    runs `prepared_data` first; after it the code change is planned. The onsuccess hook
    says so when a run prepared data again."""
    from conftest import snakemake

    from lifelearn.rerun import prepared_since

    teacher = "results/smoke/teachers/mnist1d_mlp/seed0/metrics.json"
    snakemake(workflow_copy, "--cores", "1", teacher)

    def plan(*targets):
        return snakemake(workflow_copy, "-n", *targets).stdout

    for part, comment in (("data/prepare.py", "# a data change\n"), ("studies/teachers.py", "# a teacher change\n")):
        path = workflow_copy / "src" / "lifelearn" / part
        path.write_text(path.read_text() + comment)
    both = plan(teacher)
    assert "prepare_data" in both
    assert "pretrain_mnist1d_mlp" not in both, "Snakemake now plans it: #4166 is fixed, the data stage can go"
    start = __import__("time").time()
    staged = snakemake(workflow_copy, "--cores", "1", "prepared_data")
    assert "prepare_data wrote" in staged.stderr and "issue #4166" in staged.stderr
    assert "mnist1d" in prepared_since(workflow_copy / "logs" / "smoke", start)
    after = plan(teacher)
    assert "pretrain_mnist1d_mlp" in after and "prepare_data" not in after
