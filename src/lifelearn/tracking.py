"""MLflow, through MlflowClient: experiment = study (a model-training experiment), one
run per job and seed.

Tags on every run: stage, method, dataset, model, seed, profile, git commit, data
version (md5 from data.dvc), MLflow's own source / git / user system tags, and for a
run that trains on a dataset its md5 (also the digest of the run's MLflow dataset
input). Params are the job's resolved config section, flattened. A job's own metrics
and series (many points logged after the fact) go through TrackedRun.log_series;
per-epoch metrics come from Lightning's MLFlowLogger attached to the same run (always
with an explicit tracking URI: MLflow >= 3.13 refuses the ./mlruns fallback).
"""
from __future__ import annotations

import contextlib
import fcntl
import getpass
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

from lifelearn.io import md5_tree, read_json, write_json
from lifelearn.phases import timed

MAX_PARAM_CHARS = 6000
MAX_BATCH_METRICS = 1000  # MLflow's limit on metrics per log_batch call
# The experiment tag MLflow 3's UI reads an experiment's kind from; "custom_model_development"
# is its model-training kind ("Machine learning": runs table and charts), the other being
# "genai_development" (traces). MLflow 3.17's UI shows the view of its own workflow switch
# instead (README "Looking at the runs"), the tag being the kind the API and other versions read.
EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's nesting: the UI groups a parent's runs under it
RUN_LEVEL_TAG = "run_level"  # "parent" (one per configuration) or "seed" (nested): a filter in the UI
SEED_TAGS = ("seed", "dataset_md5")  # what a parent run does not share with its seed runs
AGGREGATE_SUFFIXES = {"mean": "mean", "std": "std", "low": "ci_low", "high": "ci_high"}


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


@timed("logging")
def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=without_credentials(uri))


@timed("logging")
def ensure_store(uri: str) -> None:
    """Create (migrate) the store once, under a lock; call before parallel jobs start."""
    with _store_lock(uri):
        _client(uri).search_experiments(max_results=1)


@timed("logging")
def experiment_id(uri: str, name: str) -> str:
    """Id of the model-training experiment `name`, created (under the store lock) if
    missing; an existing one without that kind gets it."""
    with _store_lock(uri):
        client = _client(uri)  # opening a fresh SQLite store migrates it: under the lock
        found = client.get_experiment_by_name(name)
        if found is None:
            db = _sqlite_path(uri)
            location = (db.parent / "mlartifacts" / name).as_uri() if db is not None else None
            return client.create_experiment(name, artifact_location=location,
                                            tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        if found.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        return found.experiment_id


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


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        return "unknown"


@dataclass(frozen=True)
class RunContext:
    """What every job knows about the pipeline invocation it runs in: its store, profile,
    code and data versions, the source MLflow shows (the job's Snakemake rule, by name: the
    runs table's narrow Source column shows its start), whether its runs sample system
    metrics, and the parent runs its seed runs nest under."""

    tracking_uri: str
    profile: str
    git_commit: str = "unknown"
    data_version: str = "unknown"
    extra_tags: dict = field(default_factory=dict)
    source: str = "lifelearn"
    system_metrics_interval: float | None = None  # seconds between samples; None: no system metrics
    parents: "ParentRuns | None" = None

    @classmethod
    def for_job(cls, profile: str, data_version: str, root: str | os.PathLike = ".", rule: str = "",
                system_metrics_interval: float | None = None) -> "RunContext":
        """The context of a job run in the workflow directory `root`: its tracking store
        (MLFLOW_TRACKING_URI or <root>/mlflow.db), the commit of its code, the data version
        its rule carries (a param: a new data version reruns the job), its rule as source."""
        return cls(default_tracking_uri(root), profile, git_commit(root), data_version,
                   source=rule or "lifelearn", system_metrics_interval=system_metrics_interval)

    def tags(self, **job_tags) -> dict[str, str]:
        base = {"profile": self.profile, "git_commit": self.git_commit, "data_version": self.data_version}
        return {k: str(v) for k, v in {**self.system_tags(), **base, **self.extra_tags, **job_tags}.items()}

    def system_tags(self) -> dict[str, str]:
        """MLflow's own tags for source, user and git commit (the UI's Source and Version)."""
        from mlflow.entities import SourceType
        from mlflow.utils import mlflow_tags

        tags = {mlflow_tags.MLFLOW_SOURCE_NAME: self.source, mlflow_tags.MLFLOW_USER: _user(),
                mlflow_tags.MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL)}
        commit = self.git_commit.removesuffix("+dirty")
        if commit != "unknown":
            tags |= {mlflow_tags.MLFLOW_GIT_COMMIT: commit,
                     mlflow_tags.MLFLOW_GIT_DIRTY: str(commit != self.git_commit).lower()}
        return tags


@dataclass(frozen=True)
class DatasetRef:
    """The dataset a run trains on: its name, directory and digest (md5_tree of the directory)."""

    name: str
    path: Path
    digest: str

    @classmethod
    def of(cls, name: str, path: str | os.PathLike) -> "DatasetRef":
        return cls(name, Path(path), md5_tree(path))

    def tags(self) -> dict[str, str]:
        return {"dataset_md5": self.digest}

    def mlflow_input(self):
        """As an MLflow dataset input: mlflow.data's metadata-only dataset (the files stay
        where they are), its source the directory, context "train"."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        meta = MetaDataset(LocalArtifactDatasetSource(str(self.path.resolve())), name=self.name, digest=self.digest)
        return DatasetInput(Dataset(**meta.to_dict()), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "train")])


@timed("logging")
def log_points(client, run_id: str, points: Iterable[tuple[str, float, int]]) -> None:
    """Log (key, value, step) points, one timestamp for all, in log_batch calls of at
    most MAX_BATCH_METRICS (a call per point would cost a store write each)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, int(step)) for key, value, step in points]
    for i in range(0, len(metrics), MAX_BATCH_METRICS):
        client.log_batch(run_id, metrics=metrics[i:i + MAX_BATCH_METRICS])


@dataclass
class TrackedRun:
    run_id: str
    experiment: str
    tracking_uri: str
    experiment_id: str | None = None

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """The numeric entries of `metrics`, all at `step` (0 when None)."""
        self.log_series((k, v, step or 0) for k, v in metrics.items() if isinstance(v, (int, float)))

    def log_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Log (key, value, step) points in as few store writes as MLflow allows."""
        log_points(_client(self.tracking_uri), self.run_id, points)

    def points(self, key: str) -> int:
        """How many points of metric `key` the run holds."""
        return len(_client(self.tracking_uri).get_metric_history(self.run_id, key))

    @timed("logging")
    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        _client(self.tracking_uri).log_artifact(self.run_id, str(path), artifact_path)

    @timed("logging")
    def log_checkpoint(self, path: str | os.PathLike, name: str) -> str:
        """The checkpoint file `path` (lifelearn.models.checkpoint) as an MLflow logged model
        `name` of this run, READY and linked as the run's output (the run page's Logged
        models, the runs table's Models column); returns its models:/ URI, also tag `model_uri`."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        client = _client(self.tracking_uri)
        model = client.create_logged_model(self.experiment_id, name=name, source_run_id=self.run_id,
                                           model_type="lifelearn-checkpoint")
        client.log_model_artifact(model.model_id, str(path))
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=0)])
        uri = f"models:/{model.model_id}"
        client.set_tag(self.run_id, "model_uri", uri)
        return uri

    def lightning_logger(self):
        """Lightning's MLFlowLogger writing into this run."""
        from pytorch_lightning.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name=self.experiment, run_id=self.run_id, tracking_uri=self.tracking_uri)


@timed("logging")
def _create_run(client, exp_id: str, run_name: str, tags: dict, params: dict) -> str:
    from mlflow.entities import Param

    run_id = client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in sorted(flatten(params).items())])
    return run_id


@dataclass
class ParentRuns:
    """The parent runs of one job, one per configuration, named as its seed runs less their
    `/seed<k>` (`default_name` for a run without a seed tag), each created when its first
    seed run starts. Their ids stay in `state` (a JSON file) until the job has ended well:
    a killed job's rerun nests its seed runs under the same parents, a rerun of a finished
    job gets new ones."""

    state: Path
    default_name: str
    ids: dict = field(default_factory=dict)

    def run_id(self, ctx: RunContext, exp_id: str, run_name: str, tags: dict, params: dict) -> str:
        """The parent of a new seed run; its tags and params are the seed run's, less the seed's."""
        name = run_name.replace(f"/seed{tags['seed']}", "") if "seed" in tags else self.default_name
        if name not in self.ids:
            own = {k: v for k, v in tags.items() if k not in SEED_TAGS} | {RUN_LEVEL_TAG: "parent"}
            self.ids[name] = _create_run(_client(ctx.tracking_uri), exp_id, name, ctx.tags(**own),
                                         {k: v for k, v in params.items() if k != "seed"})
            write_json(self.state, self.ids)
        return self.ids[name]

    @timed("logging")
    def end(self, uri: str, status: str) -> None:
        client = _client(uri)
        for run_id in self.ids.values():
            client.set_terminated(run_id, status=status)


@contextlib.contextmanager
def parent_runs(ctx: RunContext, state: str | os.PathLike, default_name: str) -> Iterator[RunContext]:
    """`ctx` with the ParentRuns of one job (see there); those a killed attempt left in
    `state` run again. All end with the job: FINISHED (and `state` removed) or FAILED."""
    state = Path(state)
    parents = ParentRuns(state, default_name, read_json(state) if state.exists() else {})
    for run_id in parents.ids.values():
        _client(ctx.tracking_uri).update_run(run_id, status="RUNNING")
    try:
        yield replace(ctx, parents=parents)
    except BaseException:
        parents.end(ctx.tracking_uri, "FAILED")
        raise
    parents.end(ctx.tracking_uri, "FINISHED")
    state.unlink(missing_ok=True)


def aggregate_metrics(summary: dict[str, dict]) -> dict[str, float]:
    """lifelearn.stats.seed_summary's {metric: {mean, std, low, high}} as parent-run metrics
    <metric>_mean, _std, _ci_low, _ci_high (those defined: one seed has no std)."""
    return {f"{metric}_{suffix}": value for metric, stats in summary.items()
            for key, suffix in AGGREGATE_SUFFIXES.items() if (value := stats[key]) is not None and math.isfinite(value)}


@timed("logging")
def log_seed_aggregates(uri: str, records: list) -> None:
    """The aggregate over seeds (aggregate_metrics) of the scalar metrics of `records`
    (RunRecords), and n_seeds, on the parent run of their seed runs; a record whose run
    has no parent is left out, one the store lacks (a deleted store) with a warning."""
    from lifelearn.stats import seed_summary

    client = _client(uri)
    groups: dict[str, list[dict]] = {}
    for record in records:
        parent = _parent_of(client, record.run_id)
        if parent:
            groups.setdefault(parent, []).append(record.metrics)
    for parent, metrics in groups.items():
        points = {**aggregate_metrics(seed_summary(metrics)), "n_seeds": len(metrics)}
        log_points(client, parent, [(k, v, 0) for k, v in points.items()])


def _parent_of(client, run_id: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).data.tags.get(PARENT_RUN_TAG)
    except MlflowException as err:
        print(f"warning: MLflow run {run_id} not in the store, no seed aggregate logged for it: {err}", file=sys.stderr)
        return None


@timed("logging")
def _system_metrics(ctx: RunContext, run_id: str, resume: bool):
    """MLflow's system-metrics monitor sampling into `run_id`, started; None when off."""
    if ctx.system_metrics_interval is None:
        return None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=ctx.system_metrics_interval, resume_logging=resume,
                                   tracking_uri=without_credentials(ctx.tracking_uri))
    monitor.start()
    return monitor


def _new_run(client, ctx: RunContext, exp_id: str, run_name: str, tags: dict, params: dict,
             dataset: DatasetRef | None) -> str:
    """A new run, nested under its parent when `ctx` has parents; its dataset an input of
    both (the parent's inputs: the datasets of its seeds, each once)."""
    parent = ctx.parents.run_id(ctx, exp_id, run_name, tags, params) if ctx.parents is not None else None
    if parent is not None:
        tags = {**tags, PARENT_RUN_TAG: parent, RUN_LEVEL_TAG: "seed"}
    run_id = _create_run(client, exp_id, run_name, ctx.tags(**tags), params)
    if dataset is not None:
        for run in filter(None, (run_id, parent)):
            client.log_inputs(run, datasets=[dataset.mlflow_input()])
    return run_id


@timed("logging")
def _end(client, run_id: str, monitor, status: str) -> None:
    if monitor is not None:
        monitor.finish()
    client.set_terminated(run_id, status=status)


@contextlib.contextmanager
def tracked_run(ctx: RunContext, experiment: str, run_name: str, tags: dict, params: dict,
                resume_run_id: str | None = None, dataset: DatasetRef | None = None) -> Iterator[TrackedRun]:
    """One MLflow run for one job (and seed): FINISHED on success, FAILED on error.

    `resume_run_id` continues the run a killed job left behind instead of opening a new one.
    A new run nests under its configuration's parent run when `ctx` has parents and records
    `dataset` (tag dataset_md5, an MLflow dataset input); with
    `ctx.system_metrics_interval` MLflow samples CPU, memory, disk and network (GPU with
    nvidia-ml-py) into it while it runs.
    """
    exp_id = experiment_id(ctx.tracking_uri, experiment)  # creates the store first, under the lock
    client = _client(ctx.tracking_uri)
    tags = {**tags, **(dataset.tags() if dataset is not None else {})}
    if resume_run_id:
        run_id = resume_run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = _new_run(client, ctx, exp_id, run_name, tags, params, dataset)
    monitor = _system_metrics(ctx, run_id, resume=bool(resume_run_id))
    try:
        yield TrackedRun(run_id, experiment, without_credentials(ctx.tracking_uri), exp_id)
    except BaseException:
        _end(client, run_id, monitor, "FAILED")
        raise
    _end(client, run_id, monitor, "FINISHED")
