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


def test_seeds_distilled_as_one_batched_model_match_the_pipelines_and_keep_a_run_each(pipeline, tmp_path, run_ctx):
    """distill.batched_seeds 2: the smoke mtt job's two seeds distil in lock-step as one
    batched model (run in this process on the pipeline's data and experts). Each seed still
    gets its synthetic set, loss.csv and MLflow run, and they equal the pipeline's one-by-one
    sets within float tolerance (images to 1e-4, step sizes to 1e-4 relative)."""
    from mlflow import MlflowClient

    from conftest import run_job
    from lifelearn.config import load_config
    from lifelearn.data import load_dataset
    from lifelearn.data.arrays import DATASET_FILES
    from lifelearn.jobs import Layout
    from lifelearn.studies import dataset_distillation as study

    cfg = load_config(pipeline / "config", "smoke")
    cfg["dataset_distillation"]["distill"]["batched_seeds"] = 2
    job = next(j for j in study.jobs(cfg, Layout("smoke")) if j.rule == "dd_distill_mtt")
    inputs = {k: [pipeline / p for p in v] for k, v in job.inputs.items()}
    inputs["data"] = [pipeline / "data" / "digits" / f for f in DATASET_FILES]
    records = run_job(job.study, job.step, job.name, job.spec, job.seeds, run_ctx, inputs,
                      {k: [tmp_path / p for p in v] for k, v in job.outputs.items()})
    assert sorted(r.seed for r in records) == SEEDS
    client = MlflowClient(tracking_uri=run_ctx.tracking_uri)
    for seed in SEEDS:
        rel = f"checkpoints/smoke/dataset_distillation/synthetic/mtt_ipc1/seed{seed}"
        batched, alone = load_dataset(tmp_path / rel), load_dataset(pipeline / rel)
        np.testing.assert_allclose(batched.x_train, alone.x_train, atol=1e-4, rtol=0)
        assert np.array_equal(batched.y_train, alone.y_train)
        meta = json.loads((tmp_path / rel / "meta.json").read_text())
        assert meta["lr"] == pytest.approx(json.loads((pipeline / rel / "meta.json").read_text())["lr"], rel=1e-4)
        assert meta["synthetic"]["batched_seeds"] == SEEDS and meta["synthetic"]["seed"] == seed
        assert not list((tmp_path / rel).parent.glob(".work-*"))  # each seed's progress and run id cleared
        run = next(r for r in records if r.seed == seed)
        assert len(client.get_metric_history(run.run_id, "loss")) == 4
        assert client.get_run(run.run_id).data.params["distill.batched_seeds"] == "2"
