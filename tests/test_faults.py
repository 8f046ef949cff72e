"""Faults and bad input: each gives a clear error and leaves nothing half-written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from lifelearn.data import DatasetIntegrityError, prepare_dataset
from lifelearn.io import md5_file
from lifelearn.tracking import RunContext, ensure_store

from conftest import run_job, trained_model_paths
from test_data import damage


def teacher(lr: float) -> dict:
    return {"dataset": "digits", "model": {"arch": "mlp", "hidden": [32]}, "method": "natural", "seeds": [0],
            "train": {"epochs": 2, "batch_size": 64, "optimizer": "sgd", "lr": lr, "schedule": "none"}}


def test_diverging_learning_rate_fails_clearly_and_writes_nothing(tmp_path):
    from mlflow import MlflowClient

    prepare_dataset("digits", data_root=tmp_path / "data")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_store(uri)
    out = trained_model_paths(tmp_path / "res", [0])
    with pytest.raises(FloatingPointError, match=r"training diverged; lower train.lr \(now 1e\+30"):
        run_job("teachers", "pretrain", "t", teacher(1e30), [0], RunContext(uri, "test"),
                {"data": [tmp_path / "data" / "digits" / "meta.json"]}, out, {"accelerator": "cpu"})
    assert not any(Path(p[0]).exists() for p in out.values())
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("teachers").experiment_id])
    assert sorted((r.data.tags["run_level"], r.info.status) for r in runs) == [("parent", "FAILED"), ("seed", "FAILED")]


@pytest.mark.parametrize("how", ["truncated", "flipped", "missing"])
def test_damaged_data_fails_the_job_clearly_and_writes_nothing(tmp_path, how):
    """A training job refuses a dataset whose file differs from the md5 meta.json records:
    the error names the file, both md5s and the fix; no output, no MLflow run."""
    from mlflow import MlflowClient

    data = prepare_dataset("digits", data_root=tmp_path / "data")
    expected = md5_file(data / "x_val.npy")
    damage(data / "x_val.npy", how)
    actual = "no such file" if how == "missing" else f"actual md5 {md5_file(data / 'x_val.npy')}"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_store(uri)
    out = trained_model_paths(tmp_path / "res" / "t", [0, 1])
    with pytest.raises(DatasetIntegrityError) as err:
        run_job("teachers", "pretrain", "t", teacher(0.1), [0, 1], RunContext(uri, "test"),
                {"data": [data / "meta.json"]}, out, {"accelerator": "cpu"})
    message = str(err.value)
    assert f"{data / 'x_val.npy'}: expected md5 {expected}" in message and actual in message
    assert f"snakemake --cores 1 --force {data / 'meta.json'}" in message and "dvc checkout data" in message
    assert not (tmp_path / "res").exists()  # no output, no work directory, no MLflow parent-run state
    assert MlflowClient(uri).get_experiment_by_name("teachers") is None  # no run either


def test_a_job_checks_every_dataset_it_reads_before_starting(tmp_path):
    """A job reading several datasets (an evaluation of synthetic sets) fails on a damaged
    one before it writes anything for the sound ones (lifelearn.studies.verify_inputs)."""
    from lifelearn.jobs import Paths
    from lifelearn.studies import verify_inputs

    sound = prepare_dataset("digits", data_root=tmp_path / "a")
    damaged = prepare_dataset("digits", data_root=tmp_path / "b")
    damage(damaged / "y_train.npy", "flipped")
    inputs = {"data": [sound / "meta.json", sound / "x_train.npy"], "synthetic": [damaged / "meta.json"],
              "teachers": [tmp_path / "t.pt"]}
    with pytest.raises(DatasetIntegrityError, match=re.escape(f"{damaged / 'y_train.npy'}: expected md5")):
        verify_inputs(Paths(inputs, {}))
    verify_inputs(Paths({"data": [sound / "meta.json"]}, {}))
