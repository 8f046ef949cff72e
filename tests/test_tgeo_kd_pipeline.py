"""End to end: the tgeo_kd study in the smoke pipeline, its MLflow runs and report,
and what reruns when one of its hyper-parameters changes."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import REPORT_ONLY, experiment_runs, mlflow_client, planned_jobs

pytestmark = pytest.mark.slow

METHODS = ["ce", "kd", "anl", "ada", "wls", "tgeo"]
SEEDS = [0, 1]


def test_every_method_and_seed_writes_its_outputs(pipeline):
    results = pipeline / "results" / "smoke" / "tgeo_kd"
    for method in METHODS:
        for seed in SEEDS:
            record = json.loads((results / method / f"seed{seed}" / "metrics.json").read_text())
            assert (record["study"], record["stage"], record["name"], record["seed"]) == ("tgeo_kd", "tgeo_kd", method, seed)
            m = record["metrics"]
            assert 0.0 <= m["test_acc"] <= 1.0 and 0.0 <= m["alpha_test_teacher_correct"] <= 1.0
            assert m["teacher_test_wrong"] >= 0
            history = pd.read_csv(results / method / f"seed{seed}" / "history.csv")
            assert len(history) == 2 and history["alpha_mean"].between(0, 1).all()
            assert (history["alpha_q10"] <= history["alpha_q90"]).all()
            assert (pipeline / "checkpoints" / "smoke" / "tgeo_kd" / method / f"seed{seed}.pt").stat().st_size > 0
    ce = pd.read_csv(results / "ce" / "seed0" / "history.csv")
    assert (ce["alpha_mean"] == 0).all()
    tgeo = pd.read_csv(results / "tgeo" / "seed0" / "history.csv")
    assert tgeo["fusion_val_loss"].notna().all() and (tgeo["alpha_std"] > 0).all()


def test_report_has_the_section_figures_and_claims(pipeline):
    report = pipeline / "results" / "smoke" / "report"
    readme = (report / "README.md").read_text()
    assert "## TGeo-KD: sample-wise fusion ratios" in readme
    for claim in ("tgeo_beats_kd", "tgeo_beats_anl", "tgeo_beats_ada", "tgeo_beats_wls", "kd_beats_ce"):
        assert claim in readme
    claims = {c["id"]: c for c in json.loads((report / "claims.json").read_text())}
    assert claims["tgeo_beats_kd"]["n"] == len(SEEDS) and claims["kd_beats_ce"]["verdict"] != "not run"
    for stem in ("tgeo_kd-test_acc", "tgeo_kd-alpha-vs-teacher-correctness", "tgeo_kd-alpha-per-epoch"):
        assert (report / "figures" / f"{stem}.png").stat().st_size > 0


def test_mlflow_runs_carry_the_alpha_distribution(pipeline):
    client = mlflow_client(pipeline)
    runs = [r for r in experiment_runs(pipeline, "tgeo_kd") if not r.info.run_name.startswith("tuning/")]
    assert sorted(r.info.run_name for r in runs) == sorted(f"{m}/seed{s}" for m in METHODS for s in SEEDS)
    tgeo = next(r for r in runs if r.info.run_name == "tgeo/seed1")
    assert tgeo.data.params["method_cfg.fusion_hidden"] == "16" and tgeo.data.tags["stage"] == "tgeo_kd"
    for metric in ("alpha_mean", "alpha_std", "alpha_q25", "alpha_q75", "fusion_val_loss"):
        assert len(client.get_metric_history(tgeo.info.run_id, metric)) == 2  # one point per epoch


def test_a_tuned_method_runs_with_the_value_its_sweep_chose_on_val(pipeline):
    """kd (smoke: alpha in 0.5, 0.9 on seed 0): selection.json, the final runs' params, the
    MLflow sweep run with the candidates' configuration runs nested under it."""
    results = pipeline / "results" / "smoke" / "tgeo_kd"
    selection = json.loads((results / "tuning" / "kd" / "selection.json").read_text())
    assert selection["points"] == [{"alpha": 0.5}, {"alpha": 0.9}] and selection["split"] == "val"
    for i, scores in enumerate(selection["scores"]):
        cand = json.loads((results / "tuning" / "kd" / f"c{i}" / "seed0" / "metrics.json").read_text())["metrics"]
        assert scores == [cand["val_acc"]] and not any(k.startswith("test_") for k in cand)
    client = mlflow_client(pipeline)
    final = client.get_run(json.loads((results / "kd" / "seed1" / "metrics.json").read_text())["run_id"])
    assert final.data.params["method_cfg.alpha"] == str(selection["chosen"]["alpha"])
    sweep = client.get_run(selection["sweep_run_id"])
    assert sweep.info.run_name == "tuning/kd" and sweep.data.tags["run_level"] == "sweep"
    assert sweep.data.metrics["val_acc_chosen"] == max(selection["scores_mean"])
    nested = [r for r in experiment_runs(pipeline, "tgeo_kd", level="parent")
              if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert sorted(r.info.run_name for r in nested) == ["tuning/kd/c0", "tuning/kd/c1"]
    readme = (pipeline / "results" / "smoke" / "report" / "README.md").read_text()
    assert "## Hyper-parameter selection" in readme and "**tgeo_kd / `kd`**" in readme


def test_tgeo_hyperparameter_reruns_only_tgeo_its_sweep_and_the_report(pipeline):
    override = {"profiles": {"smoke": {"tgeo_kd": {"methods": {"tgeo": {"fusion_hidden": 8}}}}}}
    assert planned_jobs(pipeline, override) == {"tgeo_kd_tgeo_tune0": 1, "tgeo_kd_tgeo_select": 1,
                                                "tgeo_kd_tgeo": 1, **REPORT_ONLY}


def test_one_grid_value_reruns_only_its_sweep_the_selection_and_the_final_runs(pipeline):
    """The smoke grid's two candidates are one sweep job (tuning.candidates_per_job 0)."""
    override = {"profiles": {"smoke": {"tgeo_kd": {"methods": {"kd": {"tune": {"grid": {"alpha": [0.5, 0.7]}}}}}}}}
    assert planned_jobs(pipeline, override) == {"tgeo_kd_kd_tune0": 1, "tgeo_kd_kd_select": 1, "tgeo_kd_kd": 1,
                                                **REPORT_ONLY}


def test_the_configured_value_of_a_tuned_key_reruns_no_training(pipeline):
    """kd's alpha is in its grid: the selection replaces the configured value in every job;
    only the report (whose params are the resolved config it prints) reruns."""
    assert planned_jobs(pipeline, {"tgeo_kd": {"methods": {"kd": {"alpha": 0.8}}}}) == REPORT_ONLY


def test_kd_hyperparameter_outside_the_grid_reruns_only_kd_and_the_report(pipeline):
    override = {"tgeo_kd": {"methods": {"kd": {"tau": 3.0}}}}  # the smoke grid tunes alpha only
    assert planned_jobs(pipeline, override) == {"tgeo_kd_kd_tune0": 1, "tgeo_kd_kd_select": 1, "tgeo_kd_kd": 1,
                                                **REPORT_ONLY}


def test_shared_student_setting_reruns_every_method(pipeline):
    jobs = planned_jobs(pipeline, {"profiles": {"smoke": {"tgeo_kd": {"student": {"hidden": [12]}}}}})
    assert {r for r in jobs if r.startswith("tgeo_kd_") and "_tune" not in r and "_select" not in r} == \
        {f"tgeo_kd_{m}" for m in METHODS}
    assert not any(r.startswith("pretrain_") for r in jobs)
