"""Faults and bad input: each gives a clear error and leaves nothing half-written."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifelearn.data import prepare_dataset
from lifelearn.tracking import RunContext, ensure_store

from conftest import run_job, trained_model_paths


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
