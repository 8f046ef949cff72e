"""MLflow: one run per job and seed; experiment = study.

Tags on every run: stage, method, dataset, model, seed, profile, git commit, data
version (md5 from data.dvc) and the md5 of the dataset files the job read. Params
are the job's resolved config section, flattened. A job's own metrics and series
(many points logged after the fact) go through TrackedRun.log_series; per-epoch
metrics come from Lightning's MLFlowLogger attached to the same run (always with an
explicit tracking URI: MLflow >= 3.13 refuses the ./mlruns fallback).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

MAX_PARAM_CHARS = 6000
MAX_BATCH_METRICS = 1000  # MLflow's limit on metrics per log_batch call


def default_tracking_uri(root: str | os.PathLike = ".") -> str:
    """MLFLOW_TRACKING_URI if set, else sqlite:///<root>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Exclusive lock beside a SQLite store (its first migrations race otherwise)."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def without_credentials(uri: str) -> str:
    """`uri` minus any user:password, which move to MLFLOW_TRACKING_USERNAME/PASSWORD
    (MLflow's own basic-auth variables), so no URL printed or logged carries them."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    if parts.username:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(parts.username))
    if parts.password:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(parts.password))
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=without_credentials(uri))


def ensure_store(uri: str) -> None:
    """Create (migrate) the store once, under a lock; call before parallel jobs start."""
    with _store_lock(uri):
        _client(uri).search_experiments(max_results=1)


def experiment_id(uri: str, name: str) -> str:
    """Id of experiment `name`, created (under the store lock) if missing."""
    with _store_lock(uri):
        client = _client(uri)  # opening a fresh SQLite store migrates it: under the lock
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        db = _sqlite_path(uri)
        location = (db.parent / "mlartifacts" / name).as_uri() if db is not None else None
        return client.create_experiment(name, artifact_location=location)


def git_commit(root: str | os.PathLike = ".") -> str:
    """HEAD's hash, '+dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def flatten(params: dict, prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 0.1}} -> {"train.lr": "0.1"}; values cut to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_CHARS]
    return flat


@dataclass(frozen=True)
class RunContext:
    """What every job knows about the pipeline invocation it runs in."""

    tracking_uri: str
    profile: str
    git_commit: str = "unknown"
    data_version: str = "unknown"
    extra_tags: dict = field(default_factory=dict)

    @classmethod
    def for_job(cls, profile: str, data_version: str, root: str | os.PathLike = ".") -> "RunContext":
        """The context of a job run in the workflow directory `root`: its tracking store
        (MLFLOW_TRACKING_URI or <root>/mlflow.db), the commit of its code, the data version
        its rule carries (a param: a new data version reruns the job)."""
        return cls(default_tracking_uri(root), profile, git_commit(root), data_version)

    def tags(self, **job_tags) -> dict[str, str]:
        base = {"profile": self.profile, "git_commit": self.git_commit, "data_version": self.data_version}
        return {k: str(v) for k, v in {**base, **self.extra_tags, **job_tags}.items()}


@dataclass
class TrackedRun:
    run_id: str
    experiment: str
    tracking_uri: str

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """The numeric entries of `metrics`, all at `step` (0 when None)."""
        self.log_series((k, v, step or 0) for k, v in metrics.items() if isinstance(v, (int, float)))

    def log_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Log (key, value, step) points, one timestamp for all, in log_batch calls of at
        most MAX_BATCH_METRICS (a call per point would cost a store write each)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, int(step)) for key, value, step in points]
        if not metrics:
            return
        client = _client(self.tracking_uri)
        for i in range(0, len(metrics), MAX_BATCH_METRICS):
            client.log_batch(self.run_id, metrics=metrics[i:i + MAX_BATCH_METRICS])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        _client(self.tracking_uri).log_artifact(self.run_id, str(path), artifact_path)

    def lightning_logger(self):
        """Lightning's MLFlowLogger writing into this run."""
        from pytorch_lightning.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name=self.experiment, run_id=self.run_id, tracking_uri=self.tracking_uri)


@contextlib.contextmanager
def tracked_run(ctx: RunContext, experiment: str, run_name: str, tags: dict, params: dict,
                resume_run_id: str | None = None) -> Iterator[TrackedRun]:
    """One MLflow run for one job (and seed): FINISHED on success, FAILED on error.

    `resume_run_id` continues the run a killed job left behind instead of opening a new one.
    """
    exp_id = experiment_id(ctx.tracking_uri, experiment)  # creates the store first, under the lock
    client = _client(ctx.tracking_uri)
    if resume_run_id:
        run_id = resume_run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(exp_id, run_name=run_name, tags=ctx.tags(**tags)).info.run_id
        from mlflow.entities import Param

        client.log_batch(run_id, params=[Param(k, v) for k, v in sorted(flatten(params).items())])
    try:
        yield TrackedRun(run_id, experiment, without_credentials(ctx.tracking_uri))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
