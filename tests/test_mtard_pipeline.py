"""MTARD study end to end on the smoke profile (session pipeline): outputs, MLflow
series, the report section, and what reruns when a student's or teacher's settings change."""
from __future__ import annotations

import json

import pytest

from conftest import edited, experiment_runs, mlflow_client, planned_jobs

pytestmark = pytest.mark.slow

METHODS = ["natural", "pgd_at", "trades", "ard", "rslad", "mtard", "mtard_no_ebb"]
TUNED = ("pgd_at", "ard", "mtard", "mtard_no_ebb", "trades", "rslad")  # each 2 points x 1 seed in smoke
SEEDS = [0, 1]


def test_every_student_writes_robustness_metrics(pipeline):
    results = pipeline / "results" / "smoke"
    for name in METHODS:
        for seed in SEEDS:
            record = json.loads((results / "mtard" / name / f"seed{seed}" / "metrics.json").read_text())
            assert (record["study"], record["stage"], record["name"], record["seed"]) == ("mtard", "mtard", name, seed)
            m = record["metrics"]
            assert 0.0 <= m["test_pgd_acc"] <= m["test_clean_acc"] <= 1.0
            assert m["test_clean_acc"] == pytest.approx(m["test_acc"])
            assert m["test_weighted_robust_acc"] == pytest.approx((m["test_clean_acc"] + m["test_pgd_acc"]) / 2)
            assert 0.0 <= m["test_autoattack_acc"] <= m["test_autoattack_clean_acc"] <= 1.0
            assert m["test_autoattack_samples"] == 40
            assert (pipeline / "checkpoints" / "smoke" / "mtard" / name / f"seed{seed}.pt").stat().st_size > 0
    robust = json.loads((results / "teachers" / "mnist1d_convnet_pgd" / "seed0" / "metrics.json").read_text())
    assert robust["method"] == "pgd_at" and "test_pgd_acc" in robust["metrics"]
    assert "test_autoattack_acc" in robust["metrics"]
    history = (results / "mtard" / "mtard" / "seed0" / "history.csv").read_text().splitlines()
    assert {"tau_adv", "tau_nat", "w_adv", "w_nat"} <= set(history[0].split(","))


def test_report_has_the_mtard_section_and_claims(pipeline):
    report = pipeline / "results" / "smoke" / "report"
    readme = (report / "README.md").read_text()
    assert "## MTARD" in readme and "weighted robust acc, AA (%)" in readme and "robust teacher" in readme
    assert "| trades |" in readme and "| rslad |" in readme and "| mtard_no_ebb |" in readme
    assert (report / "figures" / "mtard-accuracy-vs-robustness.png").stat().st_size > 0
    assert (report / "figures" / "mtard-balances.png").stat().st_size > 0
    claims = {c["id"]: c for c in json.loads((report / "claims.json").read_text())}
    for cid in ("mtard_weighted_robust_beats_ard", "mtard_weighted_robust_beats_pgd_at", "mtard_clean_beats_pgd_at",
                "mtard_weighted_robust_beats_trades", "mtard_weighted_robust_beats_rslad"):
        assert claims[cid]["n"] == len(SEEDS) and claims[cid]["verdict"] != "not run"


def test_balances_are_mlflow_series(pipeline):
    client = mlflow_client(pipeline)
    runs = [r for r in experiment_runs(pipeline, "mtard") if not r.info.run_name.startswith("tuning/")]
    assert sorted(r.info.run_name for r in runs) == sorted(f"{n}/seed{s}" for n in METHODS for s in SEEDS)
    run = next(r for r in runs if r.info.run_name == "mtard/seed1")
    assert run.data.tags["method"] == "mtard" and run.data.params["method.nlb.step"] == "0.025"
    points = client.get_metric_history(run.info.run_id, "batch_tau_nat")
    assert len(points) >= 3 and len({p.step for p in points}) == len(points)  # every log_every batches
    assert len(client.get_metric_history(run.info.run_id, "w_nat")) == 1  # one per epoch (1 epoch)


def _mtard_jobs(jobs):
    return {rule for rule in jobs if rule.startswith("mtard_")}


def _with_sweep(*methods):
    """The jobs of tuned smoke methods: the sweep of two candidates (one job:
    tuning.candidates_per_job 0), the selection, the final job."""
    return {f"mtard_{m}{suffix}" for m in methods for suffix in ("", "_tune0", "_select")}


def test_mtard_hyperparameter_reruns_only_the_mtard_student_its_sweep_and_the_report(pipeline):
    jobs = planned_jobs(pipeline, {"mtard": {"methods": {"mtard": {"nlb": {"enabled": False}}}}})
    assert _mtard_jobs(jobs) == _with_sweep("mtard") and jobs["report"] == 1
    assert not any(rule.startswith("pretrain_") for rule in jobs) and "prepare_data" not in jobs


def test_ard_hyperparameter_reruns_only_ard(pipeline):
    jobs = planned_jobs(pipeline, {"mtard": {"methods": {"ard": {"tau": 10.0}}}})  # smoke tunes alpha only
    assert _mtard_jobs(jobs) == _with_sweep("ard") and not any(rule.startswith("pretrain_") for rule in jobs)


def test_robust_teacher_change_reruns_it_and_its_students(pipeline):
    robust = {"mnist1d_convnet_pgd": {"model": {"channels": [8, 12]}}}
    jobs = planned_jobs(pipeline, {"profiles": {"smoke": {"teachers": robust}}})
    assert {rule for rule in jobs if rule.startswith("pretrain_")} == {"pretrain_mnist1d_convnet_pgd"}
    assert _mtard_jobs(jobs) == _with_sweep("ard", "rslad", "mtard", "mtard_no_ebb")


def test_shared_training_setting_reruns_every_student(pipeline):
    jobs = planned_jobs(pipeline, {"profiles": {"smoke": {"mtard": {"attack": {"steps": 2}}}}})
    assert _mtard_jobs(jobs) == {f"mtard_{m}" for m in METHODS} | _with_sweep(*TUNED)
    assert not any(rule.startswith("pretrain_") for rule in jobs)


def test_another_distillation_method_does_not_rerun_mtard(pipeline):
    with edited(pipeline / "src" / "lifelearn" / "distill" / "tgeo.py", '"""', '""" '):
        jobs = planned_jobs(pipeline)
    assert not any(rule.startswith("mtard_") for rule in jobs) and "report" in jobs
