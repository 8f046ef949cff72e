"""End to end: the smoke profile through Snakemake, then what reruns when something changes.

One pipeline run (module-scoped fixture) in a scratch copy of the repository; every
rerun check is a dry run against it, and each test restores what it changed
(content and mtime), so the tests are independent.
"""
from __future__ import annotations

import json
import os

import pytest
import yaml

from conftest import REPORT_ONLY, edited, experiment_runs, mlflow_client, planned_jobs, snakemake

pytestmark = pytest.mark.slow

TEACHERS = {"mnist1d_convnet", "mnist1d_mlp", "digits_convnet", "mnist1d_convnet_pgd"}
SEEDS = [0, 1]


def pretrain_jobs(jobs: dict[str, int]) -> set[str]:
    return {rule for rule in jobs if rule.startswith("pretrain_")}


def test_pipeline_writes_every_output(pipeline):
    results = pipeline / "results" / "smoke"
    for name in TEACHERS:
        for seed in SEEDS:
            record = json.loads((results / "teachers" / name / f"seed{seed}" / "metrics.json").read_text())
            assert record["name"] == name and record["seed"] == seed
            assert 0.0 <= record["metrics"]["test_acc"] <= 1.0
            assert len(record["metrics"]["test_per_class_acc"]) == 10
            assert (pipeline / "checkpoints" / "smoke" / "teachers" / name / f"seed{seed}.pt").stat().st_size > 0
    readme = (results / "report" / "README.md").read_text()
    assert "## Paper claims" in readme and "mnist1d_cnn_beats_mlp" in readme
    assert list((results / "report" / "figures").glob("*.png"))
    version = json.loads((results / "data_version.json").read_text())
    assert version["status"] == "match", version  # regenerated data equals data.dvc's md5
    assert not list(pipeline.glob("checkpoints/smoke/teachers/*/.work-*")), "scratch dirs left behind"


def test_one_finished_mlflow_run_per_job_and_seed(pipeline):
    client = mlflow_client(pipeline)
    runs = experiment_runs(pipeline, "teachers")
    assert sorted(r.info.run_name for r in runs) == sorted(f"{n}/seed{s}" for n in TEACHERS for s in SEEDS)
    assert {r.info.status for r in runs} == {"FINISHED"}
    run = next(r for r in runs if r.info.run_name == "mnist1d_mlp/seed1")
    tags = run.data.tags
    assert tags["stage"] == "pretrain" and tags["seed"] == "1" and tags["dataset"] == "mnist1d"
    assert tags["profile"] == "smoke" and tags["model"] == "mlp" and tags["method"] == "natural"
    assert tags["data_version"] == yaml.safe_load((pipeline / "data.dvc").read_text())["outs"][0]["md5"]
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.hidden"] == "[32]"
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert len(history) == 2  # one point per epoch
    assert "metrics.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    report = experiment_runs(pipeline, "report", level=None)
    assert report and {r.info.status for r in report} == {"FINISHED"}  # one per report job


def test_second_dry_run_has_nothing_to_do(pipeline):
    assert planned_jobs(pipeline) == {}


def test_missing_results_rerun_although_the_report_exists(pipeline):
    metrics = pipeline / "results" / "smoke" / "teachers" / "mnist1d_mlp" / "seed0" / "metrics.json"
    aside = metrics.with_name("aside.json")
    metrics.rename(aside)
    try:
        jobs = planned_jobs(pipeline)
    finally:
        aside.rename(metrics)
    assert pretrain_jobs(jobs) == {"pretrain_mnist1d_mlp"} and "report" in jobs and "prepare_data" not in jobs


def test_teacher_hyperparameter_reruns_that_teacher_and_the_report(pipeline):
    jobs = planned_jobs(pipeline, {"profiles": {"smoke": {"teachers": {"mnist1d_mlp": {"train": {"epochs": 3}}}}}})
    # that teacher and what depends on it (stages below add their own jobs here)
    assert pretrain_jobs(jobs) == {"pretrain_mnist1d_mlp"} and jobs["report"] == 1
    assert "prepare_data" not in jobs and "data_version" not in jobs


def test_training_code_change_reruns_training_not_data(pipeline):
    with edited(pipeline / "src" / "lifelearn" / "train" / "module.py", '"""The Lightning', '"""The  Lightning'):
        jobs = planned_jobs(pipeline)
    assert pretrain_jobs(jobs) == {f"pretrain_{n}" for n in TEACHERS}
    assert "prepare_data" not in jobs and "data_version" not in jobs


def test_report_code_change_reruns_only_the_report(pipeline):
    with edited(pipeline / "src" / "lifelearn" / "report" / "figures.py", '"""', '""" '):
        assert planned_jobs(pipeline) == REPORT_ONLY


def test_claim_change_reruns_only_the_report(pipeline):
    claims = yaml.safe_load((pipeline / "config" / "studies" / "teachers.yaml").read_text())["claims"]
    claims["teachers"][0]["margin"] = 0.20
    assert planned_jobs(pipeline, {"claims": claims}) == REPORT_ONLY


def test_tracking_settings_rerun_only_the_report(pipeline):
    """What MLflow records beside the results (system metrics) is in no study job's params;
    the report lists the resolved config, so it is redone (as for `progress_bar`)."""
    assert planned_jobs(pipeline, {"tracking": {"system_metrics": False, "system_metrics_interval": 60}}) == \
        REPORT_ONLY


def test_unrelated_config_section_reruns_nothing(pipeline):
    other = {"paper": {"teachers": {"cifar10_resnet18": {"train": {"epochs": 300}}}}}
    assert planned_jobs(pipeline, {"profiles": other}) == {}


def test_data_code_change_reruns_data_preparation(pipeline):
    with edited(pipeline / "src" / "lifelearn" / "data" / "embedded.py", '"""', '""" '):
        # training reads data as ancient() (DVC); the data check and the report rerun
        assert planned_jobs(pipeline) == {"prepare_data": 2, "data_version": 1, **REPORT_ONLY}


def test_damaged_data_reruns_its_preparation_not_training(pipeline):
    """A partial copy truncated data/digits/x_train.npy: its prepare_data is planned again, then
    the data check and the report; training read sound data (a job refuses damaged data) and
    reads data as ancient(), so it does not rerun. Sound again, nothing is left to do."""
    path = pipeline / "data" / "digits" / "x_train.npy"
    data, stat = path.read_bytes(), path.stat()
    path.write_bytes(data[: len(data) // 2])
    try:
        assert planned_jobs(pipeline) == {"prepare_data": 1, "data_version": 1, **REPORT_ONLY}
    finally:
        path.write_bytes(data)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(pipeline) == {}


def test_new_data_version_reruns_training(pipeline):
    with edited(pipeline / "data.dvc", "md5: ", "md5: 0"):
        jobs = planned_jobs(pipeline)
    assert pretrain_jobs(jobs) == {f"pretrain_{n}" for n in TEACHERS} and "prepare_data" not in jobs


def test_snakemake_html_report_has_the_figures(pipeline):
    snakemake(pipeline, "--report", "report.html")
    html = (pipeline / "report.html").read_text()
    figures = sorted((pipeline / "results" / "smoke" / "report" / "figures").glob("*.png"))
    for figure in figures:
        assert figure.stem in html
    # each figure carries its README caption (the caption file the report job writes)
    assert "Mean accuracy matrix R[i, j] (%) over seeds per run." in html
    assert ("Clean vs AutoAttack accuracy (both on the AutoAttack samples); small dots: seeds, "
            "diamonds: means over seeds.") in html
    # one category per study with its figures, and the run's cost
    start = html.index("var categories = ") + len("var categories = ")
    categories = json.loads(html[start:html.index(";", start)])
    studies = {f.stem.split("-", 1)[0] for f in figures}
    assert set(categories) == studies | {"Pipeline cost"}
    for study in studies:
        listed = sorted(p for files in categories[study].values() for p in files)
        assert listed == sorted(f"results/smoke/report/figures/{f.name}" for f in figures if f.stem.startswith(study + "-"))
    assert "This is the run of profile" in html  # the front page (workflow/report/workflow.rst)


def test_the_cost_table_has_every_job_of_the_run(pipeline):
    import pandas as pd

    table = pd.read_csv(pipeline / "results" / "smoke" / "report" / "pipeline_cost.csv", index_col="rule")
    assert {f"pretrain_{n}" for n in TEACHERS} | {"prepare_data", "data_version", "report"} <= set(table.index)
    assert table.loc["prepare_data", "jobs"] == 2 and table.loc["pretrain_mnist1d_mlp", "study"] == "teachers"
    assert (table["wall_s"] >= 0).all() and table["wall_s"].sum() > 0 and table["cpu_s"].sum() > 0
    page = (pipeline / "results" / "smoke" / "report" / "pipeline_cost.html").read_text()
    assert "<h3>Per study</h3>" in page and "pretrain_mnist1d_mlp" in page


def test_report_regenerates_identically_from_the_results(pipeline, tmp_path):
    """Delete the report, rerun: only the report job runs, and its text is the same."""
    report = pipeline / "results" / "smoke" / "report"
    before = {p.name: p.read_text() for p in (report / "README.md", report / "claims.json", report / "figure-captions.rst")}
    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    report.rename(tmp_path / "report")
    try:
        proc = snakemake(pipeline, "--cores", "2")
        assert "rule report:" in proc.stdout + proc.stderr
        after = {name: (report / name).read_text() for name in before}
        assert after == before
        assert sorted(p.name for p in (report / "figures").glob("*.png")) == figures
        assert planned_jobs(pipeline) == {}
    finally:
        if not report.exists():
            (tmp_path / "report").rename(report)
