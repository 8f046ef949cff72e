"""The continual evaluation job: evaluation.json per seed and summary.json over seeds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lifelearn.studies.continual import evaluate_run
from lifelearn.io import read_json, write_json


def _seed_dir(root, name, seed, final_acc):
    d = root / name / f"seed{seed}"
    d.mkdir(parents=True)
    write_json(d / "metrics.json", {"study": "continual", "stage": "continual", "name": name, "method": "er",
                                    "seed": seed, "dataset": "digits", "model": "mlp", "run_id": f"run{seed}",
                                    "git_commit": "abc", "scenario": "class_incremental", "metrics": {"iterations": 4}})
    write_json(d / "accuracy_matrix.json", {"accuracy": [[0.9, 0.0], [final_acc, 0.8]], "initial": [0.1, 0.1],
                                            "random_init": [0.1, 0.05]})
    rows = [(1, 0, 0, 0.5), (2, 0, 0, 0.9), (3, 1, 0, 0.3), (3, 1, 1, 0.6), (4, 1, 0, final_acc), (4, 1, 1, 0.8)]
    pd.DataFrame(rows, columns=["iteration", "current_task", "eval_task", "accuracy"]).assign(loss=0.0) \
        .to_csv(d / "stream.csv", index=False)
    return d


def test_evaluation_adds_the_metrics_and_summary_aggregates_seeds(tmp_path):
    dirs = [_seed_dir(tmp_path, "er", s, acc) for s, acc in ((0, 0.7), (1, 0.5), (2, 0.6))]
    records = evaluate_run(dirs, None, tmp_path / "summary.json")
    first = read_json(dirs[0] / "evaluation.json")
    assert first == records[0].to_dict() and first["run_id"] == "run0" and first["scenario"] == "class_incremental"
    m = first["metrics"]
    assert m["iterations"] == 4  # the run's own metrics are kept
    assert m["avg_acc"] == pytest.approx((0.7 + 0.8) / 2)
    assert m["min_acc"] == pytest.approx(0.3)
    assert m["fwt"] == pytest.approx(0.0 - 0.05)
    assert m["gap_depth"] == pytest.approx(0.9 - 0.3)
    assert m["gap_recovery"] == pytest.approx(0.7 - 0.3)
    summary = read_json(tmp_path / "summary.json")
    assert summary["seeds"] == [0, 1, 2]
    acc = summary["metrics"]["avg_acc"]
    values = np.array([0.75, 0.65, 0.7])
    half = 4.302652729911275 * values.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert acc["n"] == 3 and acc["mean"] == pytest.approx(0.7) and acc["std"] == pytest.approx(0.05)
    assert (acc["low"], acc["high"]) == (pytest.approx(0.7 - half), pytest.approx(0.7 + half))


def test_expert_stream_adds_the_lifelong_metrics(tmp_path):
    run = _seed_dir(tmp_path, "er", 0, 0.7)
    expert = _seed_dir(tmp_path, "expert", 0, 0.9)
    m = evaluate_run([run], [expert], tmp_path / "summary.json")[0].metrics
    # task curves while trained: run [0.5, 0.9] vs expert [0.5, 0.9]; [0.6, 0.8] vs [0.6, 0.8]
    assert m["relative_to_expert"] == pytest.approx(1.0)
    assert read_json(tmp_path / "summary.json")["metrics"]["relative_to_expert"]["std"] is None
