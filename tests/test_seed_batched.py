"""The seeds of one cross-entropy configuration trained as one LightningModule
(train/seed_batched.py; train.runner.batched_train_and_test / run_seeds_batched) equal each
seed trained alone by the sequential path (train.runner.train_and_test with ClassifierModule),
and a seed-batched teacher job writes and logs every seed as the sequential job does.

Tolerance: that of tests/test_batched.py, ATOL 1e-5 + RTOL 1e-4 on every parameter and
running statistic and on the per-epoch history (the batched kernels sum in another order;
the initialisation, data order and update rule are the same); integer state
(num_batches_tracked, epochs) exactly.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lifelearn.data.arrays import Dataset
from lifelearn.models.checkpoint import load_model
from lifelearn.train.module import ClassifierModule
from lifelearn.train.runner import batched_train_and_test, train_and_test
from lifelearn.train.seed_batched import StackedClassifierModule

from conftest import REPO, run_job, trained_model_paths
from test_batched import ATOL, RTOL

SEEDS = [0, 1, 2]
TRAINER = {"accelerator": "cpu", "devices": 1, "deterministic": True, "progress_bar": False}
MLP = {"arch": "mlp", "hidden": [16, 16]}
CONV_BATCH = {"arch": "convnet", "channels": [4, 8], "norm": "batch"}
ADAM = {"epochs": 3, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "weight_decay": 1e-4, "schedule": "cosine"}
SGD = {"epochs": 3, "batch_size": 16, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
       "schedule": "multistep", "milestones": [2], "gamma": 0.5}


def dataset(n_train: int = 90, classes: int = 4, length: int = 20) -> Dataset:
    g = np.random.default_rng(0)
    split = lambda n: (g.random((n, 1, length), dtype=np.float32), g.integers(0, classes, n))  # noqa: E731
    (xtr, ytr), (xv, yv), (xte, yte) = split(n_train), split(40), split(50)
    return Dataset("fake", classes, (1, length), (0.5,), (0.3,), "none", xtr, ytr, xv, yv, xte, yte)


def alone(ds, spec, cfg, seeds=SEEDS):
    """Each seed through the sequential path: (metrics, ClassifierModule) per seed."""
    return [train_and_test(ds, spec, cfg, lambda m, d: ClassifierModule(m, cfg), s, TRAINER) for s in seeds]


def assert_same_seed(batched_model, batched_metrics, batched_history, seq_metrics, seq_module):
    for (name, a), b in zip(batched_model.state_dict().items(), seq_module.model.state_dict().values()):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL, msg=f"parameter {name}")
        else:
            assert torch.equal(a, b), name
    assert [sorted(r) for r in batched_history] == [sorted(r) for r in seq_module.history]
    for row, ref in zip(batched_history, seq_module.history):
        assert row["epoch"] == ref["epoch"]
        torch.testing.assert_close(torch.tensor([row[k] for k in sorted(ref)], dtype=torch.float64),
                                   torch.tensor([ref[k] for k in sorted(ref)], dtype=torch.float64),
                                   atol=ATOL, rtol=RTOL)
    assert batched_metrics["epochs"] == seq_metrics["epochs"]
    for key in ("test_acc", "test_loss", "val_acc"):
        assert batched_metrics[key] == pytest.approx(seq_metrics[key], abs=ATOL, rel=RTOL), key


@pytest.mark.parametrize("spec", [MLP, CONV_BATCH], ids=["mlp", "convnet-batchnorm"])
@pytest.mark.parametrize("cfg", [ADAM, SGD], ids=["adam-cosine", "sgd-momentum-multistep"])
def test_seed_batched_lightning_equals_each_seed_alone(spec, cfg):
    ds = dataset()
    sequential = alone(ds, spec, cfg)
    results, module = batched_train_and_test(ds, SEEDS, spec, cfg, TRAINER)
    assert module.stacked.backend == "layers"
    for model, metrics, history, (seq_metrics, seq_module) in zip(module.stacked.models, results, module.history,
                                                                   sequential):
        assert_same_seed(model, metrics, history, seq_metrics, seq_module)
    # the seeds really differ: K runs, not K copies of one
    assert sequential[0][0]["test_loss"] != sequential[1][0]["test_loss"]
    assert results[0]["test_loss"] != pytest.approx(results[1]["test_loss"], abs=1e-6)


def test_each_seed_trains_on_its_own_training_subset():
    """train.train_samples: seed k's stratified subset, drawn by seed k, as train_and_test draws it."""
    ds, cfg = dataset(), {**ADAM, "train_samples": 40}
    sequential = alone(ds, MLP, cfg)
    results, module = batched_train_and_test(ds, SEEDS, MLP, cfg, TRAINER)
    for model, metrics, history, (seq_metrics, seq_module) in zip(module.stacked.models, results, module.history,
                                                                   sequential):
        assert_same_seed(model, metrics, history, seq_metrics, seq_module)


def test_killed_batched_fit_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """One checkpoint of the stacked ensemble per epoch: a fit killed in epoch 2 resumes
    from epoch 1's and ends as the uninterrupted fit (histories of all three epochs kept)."""
    ds = dataset()
    clean, clean_module = batched_train_and_test(ds, SEEDS, CONV_BATCH, SGD, TRAINER, workdir=tmp_path / "clean")

    def killed_in_epoch_2(self):
        if self.current_epoch == 2:
            raise RuntimeError("killed")

    monkeypatch.setattr(StackedClassifierModule, "on_train_epoch_start", killed_in_epoch_2, raising=False)
    with pytest.raises(RuntimeError, match="killed"):
        batched_train_and_test(ds, SEEDS, CONV_BATCH, SGD, TRAINER, workdir=tmp_path / "killed")
    assert (tmp_path / "killed" / "last.ckpt").exists()
    monkeypatch.undo()
    resumed, module = batched_train_and_test(ds, SEEDS, CONV_BATCH, SGD, TRAINER, workdir=tmp_path / "killed")
    assert [[r["epoch"] for r in h] for h in module.history] == [[0, 1, 2]] * len(SEEDS)
    assert module.history == clean_module.history
    assert [r["test_loss"] for r in resumed] == [r["test_loss"] for r in clean]
    for a, b in zip(module.stacked.models, clean_module.stacked.models):
        for x, y in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.equal(x, y)


def test_dropout_and_non_elementwise_updates_are_refused():
    ds = dataset()
    with pytest.raises(ValueError, match="refuses train.clip_grad_norm"):
        batched_train_and_test(ds, SEEDS, MLP, {**ADAM, "clip_grad_norm": 1.0}, TRAINER)


def teacher(seed_batched: bool) -> dict:
    return {"dataset": "digits", "model": {"arch": "convnet", "channels": [8], "norm": "batch"}, "method": "natural",
            "seeds": [0, 1], "seed_batched": seed_batched,
            "train": {"epochs": 2, "batch_size": 128, "optimizer": "adam", "lr": 0.003, "schedule": "cosine"}}


def test_seed_batched_teacher_job_writes_and_logs_each_seed_as_the_sequential_job(tmp_path, digits_dir):
    """Each seed: its own checkpoint, metrics.json, history.csv and FINISHED MLflow run (per
    epoch rows at the sequential job's steps), its metrics those of the sequential job; no
    work directory left behind."""
    import pandas as pd
    from mlflow import MlflowClient

    from lifelearn.tracking import RunContext, ensure_store

    outputs, runs = {}, {}
    for batched in (False, True):
        uri = f"sqlite:///{tmp_path / f'mlflow-{batched}.db'}"
        ensure_store(uri)
        out = trained_model_paths(tmp_path / f"res-{batched}", [0, 1])
        records = run_job("teachers", "pretrain", "t", teacher(batched), [0, 1], RunContext(uri, "test"),
                          {"data": [digits_dir / "meta.json"]}, out)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("teachers").experiment_id
        seed_runs = {int(r.data.tags["seed"]): r for r in client.search_runs([exp], "tags.run_level = 'seed'")}
        assert sorted(seed_runs) == [0, 1] and all(r.info.status == "FINISHED" for r in seed_runs.values())
        runs[batched] = {s: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_acc")]
                         for s, r in seed_runs.items()}
        outputs[batched] = (records, out)
        assert not list((tmp_path / f"res-{batched}").glob(".work-*"))
    (seq_records, seq_out), (bat_records, bat_out) = outputs[False], outputs[True]
    for k in range(2):
        assert bat_records[k].seed == k and bat_records[k].run_id != seq_records[k].run_id
        for key in ("test_acc", "test_loss", "val_acc"):
            assert bat_records[k].metrics[key] == pytest.approx(seq_records[k].metrics[key], abs=ATOL, rel=RTOL)
        assert [s for s, _ in runs[True][k]] == [s for s, _ in runs[False][k]]  # the same steps
        np.testing.assert_allclose([v for _, v in runs[True][k]], [v for _, v in runs[False][k]], atol=ATOL, rtol=RTOL)
        model, seq_model = load_model(bat_out["checkpoints"][k]), load_model(seq_out["checkpoints"][k])
        for a, b in zip(model.state_dict().values(), seq_model.state_dict().values()):
            if a.dtype.is_floating_point:
                torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)
            else:
                assert torch.equal(a, b)
        history, seq_history = pd.read_csv(bat_out["history"][k]), pd.read_csv(seq_out["history"][k])
        assert list(history.columns) == list(seq_history.columns) and len(history) == 2


def test_schema_allows_seed_batching_for_natural_training_only():
    from lifelearn.config import load_config, validate_config

    cfg = load_config(REPO / "config", "default")
    ok = copy.deepcopy(cfg)
    ok["teachers"]["mnist1d_mlp"]["seed_batched"] = True
    validate_config(ok, REPO / "config")
    bad = copy.deepcopy(cfg)
    bad["teachers"]["mnist1d_convnet_pgd"]["seed_batched"] = True
    with pytest.raises(ValueError) as err:
        validate_config(bad, REPO / "config")
    assert "teachers.mnist1d_convnet_pgd" in str(err.value) and "'natural' was expected" in str(err.value)
