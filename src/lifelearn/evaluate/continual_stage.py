"""The evaluation job of one continual run (all its seeds; PAPERS.md section 6).

Per seed it reads what the continual stage wrote (accuracy_matrix.json, stream.csv,
metrics.json) and, when the run's setting has a single-task-expert run, that run's
stream of the same seed; it writes evaluation.json (the run record with every metric of
continual_metrics added) and logs the metrics into the seed's MLflow run. summary.json
aggregates the seeds: mean, std (ddof=1) and the 95% Student-t interval of the mean.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lifelearn.evaluate.continual_metrics import continual_metrics
from lifelearn.io import read_json, write_json
from lifelearn.stats import paired_interval

EVALUATION, SUMMARY = "evaluation.json", "summary.json"


def load_stream(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "stream.csv")


def evaluate_seed(run_dir: Path, expert_dir: Path | None = None, windows=(10, 100)) -> dict:
    """The run record of `run_dir` with the continual metrics merged into its metrics."""
    run_dir = Path(run_dir)
    record, matrix = read_json(run_dir / "metrics.json"), read_json(run_dir / "accuracy_matrix.json")
    expert = load_stream(expert_dir) if expert_dir is not None else None
    values = continual_metrics(np.asarray(matrix["accuracy"], dtype=float), load_stream(run_dir),
                               np.asarray(matrix["initial"], dtype=float),
                               np.asarray(matrix["random_init"], dtype=float), expert, tuple(windows))
    return record | {"metrics": record["metrics"] | values}


def aggregate(records: list[dict]) -> dict[str, dict]:
    """Per metric over seeds: n, mean, std (ddof=1; None for one seed), 95% t interval."""
    frame = pd.DataFrame([r["metrics"] for r in records])
    out = {}
    for metric in sorted(frame.columns):
        values = pd.to_numeric(frame[metric], errors="coerce").dropna()
        if values.empty:
            continue
        mean, low, high = paired_interval(values.to_numpy())
        out[metric] = {"n": int(values.size), "mean": mean, "std": float(values.std(ddof=1)) if values.size > 1 else None,
                       "low": low, "high": high}
    return out


def log_to_run(tracking_uri: str, record: dict, evaluation_path: Path) -> None:
    """Add the metrics (step 0) and evaluation.json to the seed's MLflow run; a run the
    store does not have (a deleted store) is reported and skipped, not fatal."""
    from mlflow.exceptions import MlflowException

    from lifelearn.tracking import TrackedRun

    run = TrackedRun(record["run_id"], record["study"], tracking_uri)
    finite = {k: v for k, v in record["metrics"].items() if v is not None and np.isfinite(v)}
    try:
        run.log_metrics(finite)
        run.log_artifact(evaluation_path)
    except MlflowException as err:
        print(f"warning: MLflow run {record['run_id']} of {evaluation_path} not logged: {err}", file=sys.stderr)


def evaluate_run(run_dirs: list[Path], expert_dirs: list[Path] | None, summary_path: Path,
                 tracking_uri: str | None = None, windows=(10, 100)) -> list[dict]:
    """Every seed of one continual run (`expert_dirs` paired with `run_dirs`, or None)."""
    experts = expert_dirs or [None] * len(run_dirs)
    records = []
    for run_dir, expert_dir in zip(run_dirs, experts):
        record = evaluate_seed(run_dir, expert_dir, windows)
        path = Path(run_dir) / EVALUATION
        write_json(path, record)
        if tracking_uri:
            log_to_run(tracking_uri, record, path)
        records.append(record)
    first = records[0]
    write_json(summary_path, {"study": first["study"], "name": first["name"], "method": first["method"],
                              "seeds": [r["seed"] for r in records], "metrics": aggregate(records)})
    return records
