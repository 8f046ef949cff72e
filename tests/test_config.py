"""Config: profile resolution, schema validation before any job, names vs registries."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from lifelearn.config import deep_merge, resolve_profile
from lifelearn.data import dataset_names
from lifelearn.models import model_names
from lifelearn.train.pretrain import PRETRAIN_METHODS

from conftest import REPO

SCHEMA = str(REPO / "config" / "schema.yaml")


def raw_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def resolved(profile="default") -> dict:
    raw = raw_config()
    raw["profile"] = profile
    return resolve_profile(raw)


def test_deep_merge_merges_maps_replaces_lists_and_null_removes():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2, "c": 3}
    merged = deep_merge(base, {"a": {"y": [9]}, "b": None, "d": 4})
    assert merged == {"a": {"x": 1, "y": [9]}, "c": 3, "d": 4}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2, "c": 3}  # untouched


def test_smoke_profile_overrides_only_what_it_names():
    default, smoke = resolved("default"), resolved("smoke")
    assert smoke["seeds"] == [0, 1] and smoke["teachers"]["mnist1d_mlp"]["seeds"] == [0, 1]
    assert smoke["teachers"]["mnist1d_mlp"]["train"]["epochs"] == 2
    assert smoke["teachers"]["mnist1d_mlp"]["train"]["lr"] == default["teachers"]["mnist1d_mlp"]["train"]["lr"]
    assert "profiles" not in smoke


def test_paper_profile_replaces_embedded_teachers_with_cifar():
    paper = resolved("paper")
    assert set(paper["teachers"]) == {"cifar10_resnet18", "cifar100_resnet18",
                                      "cifar10_resnet18_wide", "cifar10_resnet18_wide_pgd"}  # + MTARD's
    assert paper["teachers"]["cifar10_resnet18"]["train"]["lr"] == 0.1


@pytest.mark.parametrize("profile", ["default", "smoke", "paper"])
def test_every_profile_validates(profile):
    validate(resolved(profile), SCHEMA)


def test_unknown_profile_names_the_allowed_ones():
    raw = raw_config()
    raw["profile"] = "fast"
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; allowed: default, paper, smoke"):
        resolve_profile(raw)


def invalid(mutate) -> str:
    cfg = copy.deepcopy(resolved())
    mutate(cfg)
    with pytest.raises(WorkflowError) as err:
        validate(cfg, SCHEMA)
    return str(err.value)


def test_unknown_key_is_named():
    msg = invalid(lambda c: c["teachers"]["mnist1d_mlp"]["train"].update(learning_rate=0.1))
    assert "'learning_rate' was unexpected" in msg and "['teachers']['mnist1d_mlp']['train']" in msg


def test_unknown_top_level_key_is_named():
    assert "'teahcers' was unexpected" in invalid(lambda c: c.update(teahcers={}))


def test_wrong_type_is_named():
    msg = invalid(lambda c: c["teachers"]["mnist1d_mlp"]["train"].update(epochs="ten"))
    assert "'ten' is not of type 'integer'" in msg and "['train']['epochs']" in msg


def test_unknown_model_lists_allowed_values():
    msg = invalid(lambda c: c["teachers"]["mnist1d_mlp"]["model"].update(arch="transformer"))
    assert "'transformer' is not one of ['convnet', 'mlp', 'resnet18']" in msg


def test_unknown_dataset_lists_allowed_values():
    msg = invalid(lambda c: c["teachers"]["mnist1d_mlp"].update(dataset="imagenet"))
    assert "'imagenet' is not one of" in msg and "'cifar10'" in msg and "'mnist1d'" in msg


def test_option_of_another_arch_is_rejected():
    msg = invalid(lambda c: c["teachers"]["mnist1d_mlp"]["model"].update(channels=[8]))
    assert "'channels' was unexpected" in msg


def test_non_positive_learning_rate_is_rejected():
    assert "less than or equal to the minimum of 0" in invalid(
        lambda c: c["teachers"]["mnist1d_mlp"]["train"].update(lr=0))


def test_schema_names_mirror_the_registries():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["$defs"]
    assert schema["dataset"]["enum"] == dataset_names()
    assert schema["model"]["properties"]["arch"]["enum"] == model_names()
    assert schema["teacher"]["properties"]["method"]["enum"] == sorted(PRETRAIN_METHODS)


def test_bad_config_fails_before_any_job(workflow_copy):
    cfg_path = workflow_copy / "config" / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("optimizer: adam, lr: 0.001", "optimizer: adamm, lr: 0.001"))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--config", "profile=smoke"],
                          cwd=workflow_copy, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "'adamm' is not one of ['adam', 'adamw', 'sgd']" in proc.stderr + proc.stdout
    assert not (workflow_copy / "results").exists() and not (workflow_copy / "data").exists()


def test_student_seeds_without_teacher_checkpoints_are_named_before_any_job(workflow_copy):
    cfg_path = workflow_copy / "config" / "config.yaml"
    text = cfg_path.read_text()
    assert "      seeds: [0, 1]\n      student: {hidden: [16]}" in text  # the smoke profile's TGeo-KD seeds
    cfg_path.write_text(text.replace("      seeds: [0, 1]\n      student: {hidden: [16]}",
                                     "      seeds: [0, 5]\n      student: {hidden: [16]}"))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "profile=smoke"],
                          cwd=workflow_copy, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "tgeo_kd.seeds: seeds [5] have no checkpoint of teacher 'mnist1d_convnet'" in proc.stderr + proc.stdout


def test_paper_profile_plans_cifar_downloads_and_resnet_teachers(workflow_copy):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "profile=paper"],
                          cwd=workflow_copy, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pretrain_cifar10_resnet18" in proc.stdout and "pretrain_cifar100_resnet18" in proc.stdout
    assert "data/cifar10/x_train.npy" in proc.stdout and "data/cifar100/x_train.npy" in proc.stdout
    assert "gpu=1" in proc.stdout  # training declares its GPU to the scheduler


def test_empty_learning_rate_is_rejected():
    assert "None is not of type 'number'" in invalid(lambda c: c["teachers"]["mnist1d_mlp"]["train"].update(lr=None))


def test_missing_learning_rate_is_named():
    assert "'lr' is a required property" in invalid(lambda c: c["teachers"]["mnist1d_mlp"]["train"].pop("lr"))
