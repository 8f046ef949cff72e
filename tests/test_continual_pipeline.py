"""End to end: the continual study inside the session's smoke pipeline, and what reruns
when one strategy's hyper-parameter changes."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import REPORT_ONLY, edited, mlflow_client, planned_jobs

pytestmark = pytest.mark.slow


def test_continual_runs_write_stream_matrix_metrics_and_mlflow_series(pipeline):
    root = pipeline / "results" / "smoke" / "continual"
    names = {p.name for p in root.iterdir()}
    assert {"ci_er", "ci_er_refresh", "online_er_m100", "online_uer_m100", "pt_lwf_l2", "pt_lwf_ewc"} <= names
    seed_dir = root / "online_uer_m100" / "seed2"
    record = json.loads((seed_dir / "metrics.json").read_text())
    assert record["stage"] == "continual" and record["method"] == "uer" and record["seed"] == 2
    evaluation = json.loads((seed_dir / "evaluation.json").read_text())
    assert evaluation["run_id"] == record["run_id"]
    m = evaluation["metrics"]
    assert 0.0 <= m["avg_acc"] <= 1.0 and -1.0 <= m["forgetting"] <= 1.0 and m["iterations"] > 0
    assert "relative_to_expert" not in m  # the smoke profile has no online single-task experts
    er = json.loads((root / "ci_er" / "seed0" / "evaluation.json").read_text())["metrics"]
    assert er["relative_to_expert"] > 0 and er["sample_efficiency"] >= 0  # against ci_single_task
    matrix = json.loads((seed_dir / "accuracy_matrix.json").read_text())
    assert len(matrix["accuracy"]) == 5 and all(len(r) == 5 for r in matrix["accuracy"])
    assert len(matrix["initial"]) == len(matrix["random_init"]) == 5
    summary = json.loads((root / "online_uer_m100" / "summary.json").read_text())
    acc = summary["metrics"]["avg_acc"]
    assert summary["seeds"] == [0, 1, 2] and acc["n"] == 3 and acc["low"] <= acc["mean"] <= acc["high"]
    stream = pd.read_csv(seed_dir / "stream.csv")
    assert list(stream.columns) == ["iteration", "current_task", "eval_task", "accuracy", "loss"]
    assert stream["iteration"].max() == m["iterations"]  # online setting evaluates every iteration
    assert (stream["eval_task"] <= stream["current_task"]).all()
    client = mlflow_client(pipeline)
    series = client.get_metric_history(record["run_id"], "stream_acc_task0")
    assert len(series) == int((stream["eval_task"] == 0).sum())
    assert sorted(p.step for p in series) == sorted(stream.loc[stream["eval_task"] == 0, "iteration"])
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["avg_acc"] == pytest.approx(m["avg_acc"])  # the evaluation job logs into the run
    assert run.data.metrics["wf10"] == pytest.approx(m["wf10"])
    pt = json.loads((root / "pt_lwf_l2" / "seed0" / "metrics.json").read_text())
    assert pt["model"] == "convnet"  # started from the digits_convnet teacher
    ref = json.loads((root / "ci_derpp_refresh" / "seed0" / "metrics.json").read_text())
    assert ref["method"] == "derpp+refresh" and 0 < ref["metrics"]["refresh_sgd_ratio_mean"] < 1
    ratios = client.get_metric_history(ref["run_id"], "refresh_sgd_ratio")
    assert sorted(p.step for p in ratios) == list(range(5))
    assert [p.value for p in sorted(ratios, key=lambda p: p.step)] == pytest.approx(
        [ref["metrics"][f"refresh_sgd_ratio_task{j}"] for j in range(5)])
    assert "refresh_sgd_ratio_mean" not in json.loads((root / "ci_derpp_wd" / "seed0" / "metrics.json").read_text())["metrics"]
    readme = (pipeline / "results" / "smoke" / "report" / "README.md").read_text()
    assert "## Continual fine-tuning" in readme and "uer_beats_er_online_m100" in readme
    assert "refresh_improves_derpp" in readme and "||refresh update|| / ||SGD update|| per task" in readme
    assert "`ci_derpp_wd` (the weight-decay control" in readme
    assert (pipeline / "results" / "smoke" / "report" / "figures" / "continual-online_ci-stream.png").exists()


def test_strategy_hyperparameter_reruns_only_that_run_and_the_report(pipeline):
    jobs = planned_jobs(pipeline, {"continual": {"runs": {"ci_er": {"strategies": {"er": {"buffer": 150}}}}}})
    assert jobs == {"continual_ci_er": 1, "continual_eval_ci_er": 1, **REPORT_ONLY}


def test_metric_code_change_reruns_the_evaluations_not_the_training(pipeline):
    with edited(pipeline / "src" / "lifelearn" / "evaluate" / "continual_metrics.py", '"""', '""" '):
        jobs = planned_jobs(pipeline)
    evals = {rule for rule in jobs if rule.startswith("continual_eval_")}
    assert evals and set(jobs) == evals | set(REPORT_ONLY)
    assert all(count == 1 for count in jobs.values())


def test_synthetic_replay_reads_the_distilled_set_of_its_seed(pipeline):
    record = json.loads((pipeline / "results" / "smoke" / "continual" / "ci_synthetic_er" / "seed1"
                         / "evaluation.json").read_text())
    assert record["method"] == "synthetic_er" and 0.0 <= record["metrics"]["avg_acc"] <= 1.0
    jobs = planned_jobs(pipeline, {"profiles": {"smoke": {"dataset_distillation": {"distill": {"iterations": 5}}}}})
    assert {"dd_distill_mtt", "continual_ci_synthetic_er", "continual_eval_ci_synthetic_er"} <= set(jobs)
    assert "continual_ci_er" not in jobs

def test_a_distilled_student_is_fine_tuned_on_a_domain_incremental_stream(pipeline):
    """pretrain -> distil (MTARD) -> continual: the stream starts from the student's weights."""
    import torch

    from lifelearn.models.checkpoint import load_model

    record = json.loads((pipeline / "results" / "smoke" / "continual" / "di_student_finetune" / "seed1"
                         / "metrics.json").read_text())
    assert record["scenario"] == "domain_incremental" and record["model"] == "convnet"

    tags = mlflow_client(pipeline).get_run(record["run_id"]).data.tags
    assert tags["init"] == "student:mtard/mtard"
    student = load_model(pipeline / "checkpoints" / "smoke" / "mtard" / "mtard" / "seed1.pt")
    assert student.head.out_features == 10 and isinstance(student.head, torch.nn.Linear)
    matrix = json.loads((pipeline / "results" / "smoke" / "continual" / "di_student_finetune" / "seed1"
                         / "accuracy_matrix.json").read_text())
    assert len(matrix["accuracy"]) == 3  # three permutations of MNIST-1D


def test_distilled_student_change_reruns_the_stream_built_on_it(pipeline):
    jobs = planned_jobs(pipeline, {"profiles": {"smoke": {"mtard": {"student": {"channels": [6]}}}}})
    assert {"mtard_mtard", "continual_di_student_finetune", "report"} <= set(jobs)
    built_on_it = {"continual_di_student_finetune", "continual_eval_di_student_finetune"}
    assert not any(rule.startswith("continual_") and rule not in built_on_it for rule in jobs)
