"""The paper-shape dry run (issue 18): the `paper` profile on CPU at the sizes of
config/overrides/paper_dry_run.yaml, CIFAR-10/100 fetched from a 127.0.0.1 mirror of
tiny official-format archives (tests/cifar_mirror.py) through the real download,
checksum and parsing code. The fast tests check the pieces; the slow one runs it all."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from cifar_mirror import ARCHIVES, SIZES, VAL_PER_CLASS, archive, serve, write_mirror
from conftest import REPO, copy_workflow
from lifelearn.config import load_config, validate_config
from lifelearn.data import ChecksumError, prepare_dataset
from lifelearn.data.download import DownloadSource, with_checksums
from lifelearn.data.formats import load_pickle
from lifelearn.data.prepare import dataset_options
from lifelearn.io import read_json

OVERRIDE = REPO / "config" / "overrides" / "paper_dry_run.yaml"
DRY = ["--config", "profile=paper", "--configfile", "config/overrides/paper_dry_run.yaml"]
# What the shrink may change: sizes (counts, lengths, widths, steps), never a method,
# switch, schedule kind, optimiser or dataset (the keys' names, at any depth).
SIZE_KEYS = {"seeds", "threads", "checksums", "archive", "val_size", "cifar10", "cifar100",
             "width", "channels", "epochs", "milestones", "steps", "samples", "iterations", "targets",
             "square_queries", "num", "per_seed", "ipc", "networks", "val_every", "every", "subset", "buffer",
             "fusion_hidden", "meta_batch_size", "grid"}


def override() -> dict:
    return yaml.safe_load(OVERRIDE.read_text())


def _leaf_keys(tree, path=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "grid":  # a tuning grid: its keys name the tuned values, shrunk to fewer points
                yield path + (key,)
                continue
            yield from _leaf_keys(value, path + (key,))
    else:
        yield path


def test_override_shrinks_only_sizes():
    paper = override()["profiles"]["paper"]
    studies = {"teachers", "mtard", "tgeo_kd", "dataset_distillation", "continual", "data"}
    for path in _leaf_keys(paper):
        named = [p for p in path if p not in studies and not p.startswith(("cifar", "ci_", "ti_", "pt_", "di_",
                                                                         "online_"))]
        assert named[-1] in SIZE_KEYS, f"{'.'.join(path)} is not a size"
    # tuning grids shrink to subsets of the paper's own points, at equal budget within a study
    cfg = load_config(REPO / "config", "paper")
    shrunk = load_config(REPO / "config", "paper", override())
    for study in ("mtard", "tgeo_kd"):
        for name, method in shrunk[study]["methods"].items():
            if "tune" in method:
                for key, values in method["tune"]["grid"].items():
                    assert set(values) <= set(cfg[study]["methods"][name]["tune"]["grid"][key]), (study, name, key)
    validate_config(shrunk, REPO / "config")


def test_override_plans_the_paper_studies_and_datasets():
    cfg, shrunk = load_config(REPO / "config", "paper"), load_config(REPO / "config", "paper", override())
    assert shrunk["profile"] == "paper" and shrunk["studies"] == cfg["studies"]
    assert set(shrunk["teachers"]) == set(cfg["teachers"])
    for study in ("mtard", "tgeo_kd", "dataset_distillation"):
        assert set(shrunk[study]["methods"]) == set(cfg[study]["methods"])
        assert shrunk[study]["dataset"] == cfg[study]["dataset"]
    assert set(shrunk["continual"]["runs"]) == set(cfg["continual"]["runs"])
    assert [e["ipc"] for e in shrunk["dataset_distillation"]["ipc"]] == [1, 10, 50]
    assert shrunk["teachers"]["cifar10_resnet18_wide"]["model"] == {"arch": "resnet18", "width": 16}


def test_paper_profile_judges_no_claim_on_a_teacher_it_removes():
    """Found by the dry run: the paper report listed mnist1d_cnn_beats_mlp as "not run"."""
    cfg = load_config(REPO / "config", "paper")
    for claim in (c for c in cfg["claims"] if c["study"] == "teachers"):
        assert {claim["a"], claim["b"]} <= set(cfg["teachers"]), claim["id"]
    assert "mnist1d_cnn_beats_mlp" in {c["id"] for c in load_config(REPO / "config", "default")["claims"]}
    assert "mnist1d_cnn_beats_mlp" not in {c["id"] for c in cfg["claims"]}


def test_archives_are_deterministic_official_layout_and_match_the_override(tmp_path):
    assert archive("cifar10") == archive("cifar10")
    md5s = write_mirror(tmp_path)
    stated = override()["profiles"]["paper"]["data"]["checksums"]
    assert md5s == {name: stated[name]["archive"] for name in ARCHIVES}, \
        "tests/cifar_mirror.py changed: state its new md5s in config/overrides/paper_dry_run.yaml"
    with tarfile.open(tmp_path / "cifar10" / "cifar-10-python.tar.gz") as tar:
        names = tar.getnames()
        assert names == [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + [
            "cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    with tarfile.open(tmp_path / "cifar100" / "cifar-100-python.tar.gz") as tar:
        assert tar.getnames() == ["cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"]
        tar.extract("cifar-100-python/train", tmp_path, filter="data")
    batch = load_pickle(tmp_path / "cifar-100-python" / "train")
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (600, 3072)
    assert np.bincount(batch[b"fine_labels"]).tolist() == [SIZES["cifar100"][0]] * 100


def test_with_checksums_replaces_hashes_and_names_the_bad_key():
    source = DownloadSource({"archive": ("http://x/a.tar.gz", "md5:" + "0" * 32)})
    assert with_checksums("cifar10", source, {"archive": "md5:" + "a" * 32}).files["archive"] == (
        "http://x/a.tar.gz", "md5:" + "a" * 32)
    assert with_checksums("cifar10", source, None) == source
    with pytest.raises(ValueError, match=r"data\.checksums\.cifar10.*unknown file role.*'images'"):
        with_checksums("cifar10", source, {"images": "md5:00"})
    with pytest.raises(ValueError, match=r"data\.checksums\.cifar10\.archive"):
        with_checksums("cifar10", source, {"archive": "c58f30108f718f92721af3b95e74349a"})


def test_dataset_options_read_the_data_section():
    cfg = {"data": {"mirror": "http://m", "checksums": {"cifar10": {"archive": "md5:ab"}}, "val_size": {"cifar10": 7}}}
    assert dataset_options(cfg, "cifar10") == {"checksums": {"archive": "md5:ab"}, "val_size": 7}
    assert dataset_options(cfg, "cifar100") == {} and dataset_options({}, "digits") == {}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_mirror_download_with_stated_checksums(name, tmp_path, monkeypatch):
    """The real download + parsing path from the mirror: val carved from train, meta names the mirror."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("LIFELEARN_DATA_MIRROR", raising=False)
    md5s = write_mirror(tmp_path / "mirror")
    classes = {"cifar10": 10, "cifar100": 100}[name]
    val = VAL_PER_CLASS[name] * classes
    with serve(tmp_path / "mirror") as url:
        out = prepare_dataset(name, tmp_path / "data", tmp_path / "cache", mirror=url,
                              checksums={"archive": md5s[name]}, val_size=val)
        meta = read_json(out / "meta.json")
        assert meta["splits"] == {"train": SIZES[name][0] * classes - val, "val": val,
                                  "test": SIZES[name][1] * classes}
        assert f"{url}/{name}/{ARCHIVES[name]}" in meta["source"]
        assert np.bincount(np.load(out / "y_val.npy"), minlength=classes).tolist() == [VAL_PER_CLASS[name]] * classes
        # the official md5 is still the default: the tiny archive is refused, nothing is kept
        with pytest.raises(ChecksumError, match="expected md5:"):
            prepare_dataset(name, tmp_path / "data2", tmp_path / "cache2", mirror=url)
    assert not (tmp_path / "data2" / name).exists()
    assert not list((tmp_path / "cache2" / name).glob("*.tar.gz"))
    assert hashlib.md5((tmp_path / "cache" / name / ARCHIVES[name]).read_bytes()).hexdigest() == md5s[name][4:]


def test_val_size_of_an_embedded_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"data\.val_size\.digits"):
        prepare_dataset("digits", tmp_path, val_size=10)
    with pytest.raises(ValueError, match=r"data\.checksums\.digits"):
        prepare_dataset("digits", tmp_path, checksums={"archive": "md5:00"})


def _rules(out: str) -> set[str]:
    """The rules a dry run plans, a tuning sweep's points (<rule>_tune<k>) as one."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {re.sub(r"_tune\d+$", "_tune", m[1]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.mark.slow
def test_paper_dry_run_end_to_end(tmp_path):
    """Every rule `snakemake -n --config profile=paper` plans runs and the paper report is written."""
    work = copy_workflow(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"NO_PROXY": "127.0.0.1", "PYTHONPATH": str(work / "src")}
    snake = [sys.executable, "-m", "snakemake"]
    paper = subprocess.run([*snake, "-n", "--config", "profile=paper"], cwd=work, env=env, capture_output=True,
                           text=True, check=True).stdout
    write_mirror(tmp_path / "mirror")
    with serve(tmp_path / "mirror") as url:
        env["LIFELEARN_DATA_MIRROR"] = url
        planned = subprocess.run([*snake, "-n", *DRY], cwd=work, env=env, capture_output=True, text=True, check=True)
        assert _rules(planned.stdout) == _rules(paper), "the override must plan every rule the paper profile plans"
        run = subprocess.run([*snake, "--cores", "2", *DRY], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    report = (work / "results" / "paper" / "report" / "README.md").read_text()
    for study in ("MTARD", "TGeo", "distillation", "ontinual"):
        assert study in report
    assert re.search(r"\b(holds|does not hold|inconclusive)\b", report)
    for name in ("cifar10", "cifar100"):
        assert url in read_json(work / "data" / name / "meta.json")["source"]
    again = subprocess.run([*snake, "-n", *DRY], cwd=work, env=env, capture_output=True, text=True, check=True)
    assert "Nothing to be done" in again.stdout, again.stdout[-2000:]
