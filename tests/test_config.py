"""Config: profile resolution, schema validation before any job, names vs registries."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from lifelearn.config import deep_merge, load_config, read_config, resolve_profile, study_names, validate_config
from lifelearn.data import dataset_names
from lifelearn.jobs import Layout
from lifelearn.models import model_names
from lifelearn.studies import study

from conftest import REPO, write_override

CONFIG = REPO / "config"


def resolved(profile="default") -> dict:
    return load_config(CONFIG, profile)


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
    validate_config(resolved(profile), CONFIG)


def test_study_files_merge_into_one_config_with_claims_in_study_order():
    cfg = resolved()
    assert cfg["studies"] == study_names(CONFIG) == ["continual", "dataset_distillation", "mtard", "teachers", "tgeo_kd"]
    studies = [c["study"] for c in cfg["claims"]]
    assert studies == sorted(studies, key=cfg["studies"].index) and set(studies) == set(cfg["studies"])
    assert {"teachers", "mtard", "tgeo_kd"} <= set(cfg) and cfg["continual"]["evaluation"]["windows"] == [10, 100]


def test_overrides_merge_on_top_like_configfile_and_the_profile_last():
    cfg = load_config(CONFIG, "default", {"tgeo_kd": {"train": {"epochs": 7}}})
    assert cfg["tgeo_kd"]["train"]["epochs"] == 7 and cfg["tgeo_kd"]["train"]["lr"] == 0.03
    smoke = load_config(CONFIG, "smoke", {"profiles": {"smoke": {"tgeo_kd": {"train": {"epochs": 7}}}}})
    assert smoke["tgeo_kd"]["train"]["epochs"] == 7 and smoke["tgeo_kd"]["student"] == {"arch": "mlp", "hidden": [16]}


def test_claims_of_an_unknown_study_are_named():
    raw = read_config(CONFIG, {"claims": {"teacher": [{"id": "x"}]}})
    with pytest.raises(ValueError, match=r"config key 'claims': \['teacher'\] are not studies"):
        resolve_profile(raw, study_names(CONFIG))


def test_unknown_profile_names_the_allowed_ones():
    raw = read_config(CONFIG, {"profile": "fast"})
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; allowed: default, paper, smoke"):
        resolve_profile(raw, study_names(CONFIG))


def invalid(mutate) -> str:
    cfg = copy.deepcopy(resolved())
    mutate(cfg)
    with pytest.raises(ValueError) as err:
        validate_config(cfg, CONFIG)
    return str(err.value)


def test_unknown_key_is_named():
    msg = invalid(lambda c: c["teachers"]["mnist1d_mlp"]["train"].update(learning_rate=0.1))
    assert "'learning_rate' was unexpected" in msg and "config key 'teachers.mnist1d_mlp.train'" in msg


def test_unknown_top_level_key_is_named():
    assert "config keys ['teahcers']" in invalid(lambda c: c.update(teahcers={}))


def test_wrong_type_is_named():
    msg = invalid(lambda c: c["teachers"]["mnist1d_mlp"]["train"].update(epochs="ten"))
    assert "'ten' is not of type 'integer'" in msg and "teachers.mnist1d_mlp.train.epochs" in msg


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
    schema = yaml.safe_load((CONFIG / "schema.yaml").read_text())["$defs"]
    assert schema["dataset"]["enum"] == dataset_names()
    assert schema["model"]["properties"]["arch"]["enum"] == model_names()


@pytest.mark.parametrize("key, value, message", [
    (("teachers", "mnist1d_mlp", "method"), "pgd", r"teachers.mnist1d_mlp.method: unknown \['pgd'\]; allowed: natural, pgd_at"),
    (("mtard", "methods", "ard", "method"), "mart", r"mtard.methods.ard.method: unknown \['mart'\]"),
    (("dataset_distillation", "methods", "mtt", "method"), "dc", r"dataset_distillation.methods.mtt.method: unknown"),
])
def test_a_method_the_registry_lacks_is_named_when_jobs_are_planned(key, value, message):
    cfg = resolved()
    section = cfg
    for k in key[:-1]:
        section = section[k]
    section[key[-1]] = value
    with pytest.raises(ValueError, match=message):
        study(key[0]).jobs(cfg, Layout("default"))


def test_every_study_has_its_config_schema_and_rule_file():
    for name in study_names(CONFIG):
        assert (CONFIG / "schemas" / f"{name}.yaml").exists() and (REPO / "workflow" / "rules" / f"{name}.smk").exists()
        assert callable(study(name).jobs) and callable(study(name).run) and study(name).METHODS


@pytest.mark.slow
def test_bad_config_fails_before_any_job(workflow_copy):
    override = write_override(workflow_copy, "bad.yaml", {"teachers": {"mnist1d_mlp": {"train": {"optimizer": "adamm"}}}})
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--config", "profile=smoke",
                           "--configfile", str(override)], cwd=workflow_copy, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "config key 'teachers.mnist1d_mlp.train.optimizer': 'adamm' is not one of ['adam', 'adamw', 'sgd']" \
        in proc.stderr + proc.stdout
    assert not (workflow_copy / "results").exists() and not (workflow_copy / "data").exists()


@pytest.mark.slow
def test_student_seeds_without_teacher_checkpoints_are_named_before_any_job(workflow_copy):
    override = write_override(workflow_copy, "seeds.yaml", {"profiles": {"smoke": {"tgeo_kd": {"seeds": [0, 5]}}}})
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "profile=smoke",
                           "--configfile", str(override)], cwd=workflow_copy, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "tgeo_kd.seeds: seeds [5] have no checkpoint of teacher 'mnist1d_convnet'" in proc.stderr + proc.stdout


@pytest.mark.slow
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
