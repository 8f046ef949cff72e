"""End to end (smoke profile): the dataset distillation study's outputs, MLflow runs, and
what reruns when a distillation switch or an expert option changes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import experiment_runs, mlflow_client, planned_jobs

pytestmark = pytest.mark.slow

METHODS = ("random", "mtt", "smooth_mtt", "abl_weight_perturbation")  # the smoke profile keeps one ablation row
SEEDS = [0, 1]


def dd_jobs(jobs: dict[str, int]) -> set[str]:
    return {rule for rule in jobs if rule.startswith("dd_")}


def test_experts_synthetic_sets_and_metrics_are_written(pipeline):
    from lifelearn.data import load_dataset

    ckpt = pipeline / "checkpoints" / "smoke" / "dataset_distillation"
    for expert_set in ("plain", "smooth"):
        for i in range(3):  # the smoke pool; each seed draws 2
            payload = torch.load(ckpt / "experts" / expert_set / f"expert{i}.pt", weights_only=True)
            assert all(t.shape[0] == 5 for t in payload["trajectory"].values())  # 4 epochs + init
    for method in METHODS:
        for seed in SEEDS:
            syn = ckpt / "synthetic" / f"{method}_ipc1" / f"seed{seed}"
            ds = load_dataset(syn)
            assert ds.x_train.shape == (10, 1, 8, 8) and sorted(ds.y_train.tolist()) == list(range(10))
            assert np.array_equal(ds.x_test, load_dataset(pipeline / "data" / "digits").x_test)
            rec = json.loads((pipeline / "results" / "smoke" / "dataset_distillation" / f"{method}_ipc1"
                              / f"seed{seed}" / "metrics.json").read_text())
            assert rec["stage"] == "dataset_distillation" and rec["method"] == method and rec["seed"] == seed
            assert 0 <= rec["metrics"]["test_acc"] <= 1 and len(rec["metrics"]["test_acc_networks"]) == 1
    random0 = load_dataset(ckpt / "synthetic" / "random_ipc1" / "seed0").x_train
    mtt0 = load_dataset(ckpt / "synthetic" / "mtt_ipc1" / "seed0").x_train
    assert not np.array_equal(random0, mtt0)  # distillation moved the images it started from
    readme = (pipeline / "results" / "smoke" / "report" / "README.md").read_text()
    assert "## Dataset distillation" in readme and "dd_mtt_beats_random_ipc1" in readme
    figures = pipeline / "results" / "smoke" / "report" / "figures"
    assert (figures / "dataset_distillation-synthetic-ipc1.png").exists()
    assert (figures / "dataset_distillation-matching-loss.png").exists()
    assert "### Control: one fixed step size shared by every method" in readme and "### Ablation" in readme
    meta = json.loads((ckpt / "synthetic" / "mtt_ipc1" / "seed1" / "meta.json").read_text())
    assert len(meta["synthetic"]["experts"]) == 2  # seed 1's own draw from the pool of 3


def test_mlflow_has_distillation_runs_with_the_synthetic_set(pipeline):
    client = mlflow_client(pipeline)
    runs = experiment_runs(pipeline, "dataset_distillation")
    names = {r.info.run_name for r in runs}
    assert {f"{m}_ipc1/seed{s}" for m in METHODS for s in SEEDS} <= names
    run = next(r for r in runs if r.info.run_name == "mtt_ipc1/seed0/distill")
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 4  # one point per iteration
    assert {a.path for a in client.list_artifacts(run.info.run_id, "synthetic")} >= {
        "synthetic/x_train.npy", "synthetic/y_train.npy", "synthetic/meta.json"}


def test_distillation_switch_reruns_distillation_evaluation_and_report_not_experts(pipeline):
    jobs = planned_jobs(pipeline, {"dataset_distillation": {"methods": {"smooth_mtt": {"balanced_loss": False}}}})
    assert dd_jobs(jobs) == {"dd_distill_smooth_mtt", "dd_evaluate_smooth_mtt"}
    assert jobs["report"] == 1 and not {r for r in jobs if r.startswith("pretrain_")}


def test_expert_option_reruns_the_experts_and_what_matches_them(pipeline):
    jobs = planned_jobs(pipeline, {"dataset_distillation": {"experts": {"sets": {"smooth": {"grad_penalty": 1.0}}}}})
    assert dd_jobs(jobs) == {"dd_experts_smooth", "dd_distill_smooth_mtt", "dd_evaluate_smooth_mtt"}
    assert jobs["report"] == 1


@pytest.mark.parametrize("setting", [{"networks": 2}, {"batched_networks": {"ipc1": 3}}])
def test_evaluation_setting_reruns_only_evaluations(pipeline, setting):
    jobs = planned_jobs(pipeline, {"profiles": {"smoke": {"dataset_distillation": {"evaluation": setting}}}})
    assert dd_jobs(jobs) == {f"dd_evaluate_{m}" for m in METHODS} and jobs["report"] == 1
