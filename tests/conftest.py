"""Shared fixtures: the repository root, a scratch copy of the workflow, and one
smoke-profile pipeline run shared by every end-to-end test of the session."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ["Snakefile", "config", "workflow", "src", "data.dvc", ".dvc", ".dvcignore"]
SMOKE = ["--config", "profile=smoke"]
# What a dry run plans when only the report has to be redone: the report, the run's cost
# table after it (pipeline_cost) and `all`.
REPORT_ONLY = {"report": 1, "pipeline_cost": 1, "all": 1}


def copy_workflow(dest: Path) -> Path:
    """Copy what `snakemake` needs to run the pipeline into `dest` (no results, no git)."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "tmp"))
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


@pytest.fixture(autouse=True)
def processes_only_in_slow_tests(request, monkeypatch):
    """A test that starts a Python, Snakemake, DVC or MLflow process is marked slow, so
    that `make test-fast` (pytest -m "not slow") runs in-process tests only."""
    if request.node.get_closest_marker("slow"):
        return
    start = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        if argv and Path(str(argv[0])).name.startswith(("python", "snakemake", "dvc", "mlflow")):
            pytest.fail(f"{request.node.nodeid} starts {[str(a) for a in argv[:3]]}: mark it @pytest.mark.slow")
        start(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests train on one thread (as pipeline jobs do, `threads: 1`): stable and fair on 2 cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated_mlflow_env(monkeypatch):
    """Each test starts without MLflow's tracking variables and leaves none behind
    (Lightning's MLFlowLogger calls mlflow.set_tracking_uri, which exports
    MLFLOW_TRACKING_URI to every later subprocess of the test session)."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, "")  # records the original state, restored at teardown
        monkeypatch.delenv(name)


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    return copy_workflow(tmp_path / "repo")


def snakemake(workdir: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    """Run snakemake on the smoke profile in `workdir`; fail the test on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args, *SMOKE], cwd=workdir,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def planned_jobs(workdir: Path, override: dict | None = None) -> dict[str, int]:
    """Rule -> job count of a dry run ({} when there is nothing to do), with `override`
    (config values, as a `--configfile` on top of config/) when given."""
    args = ["--configfile", str(write_override(workdir, "planned.yaml", override))] if override else []
    out = snakemake(workdir, "-n", *args).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def mlflow_client(workdir: Path):
    """A client of the SQLite MLflow store a pipeline run in `workdir` wrote."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def experiment_runs(workdir: Path, experiment: str, level: str | None = "seed", **search) -> list:
    """The runs of `experiment` in `workdir`'s MLflow store (search_runs keywords allowed)
    at `level` (tag run_level): "seed" (one per job and seed, nested), "parent" (one per
    configuration) or None (every run, also those of no level, such as the report's)."""
    client = mlflow_client(workdir)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], **search)
    return [r for r in runs if level is None or r.data.tags.get("run_level") == level]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server_on(backend_uri: str, *args: str, timeout: float = 120) -> Iterator[int]:
    """`mlflow server` on 127.0.0.1 (a free port, one worker) against `backend_uri`, with
    more server `args`; yields its port once /health answers (within `timeout` s), stops it after."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend_uri, "--workers", "1", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield port
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@contextmanager
def edited(path: Path, old: str, new: str):
    """Temporarily replace `old` by `new` in `path`; restore content and mtime after."""
    text, stat = path.read_text(), path.stat()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
    try:
        yield
    finally:
        path.write_text(text)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Path:
    """The whole smoke pipeline, run once on a fresh MLflow store with 4 parallel jobs
    (no run may be lost or duplicated: see test_pipeline)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("pipeline") / "repo")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    snakemake(workdir, "--cores", "4", env=env)
    return workdir


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """The embedded digits dataset, prepared once per test module."""
    from lifelearn.data import prepare_dataset

    root = tmp_path_factory.mktemp("data")
    prepare_dataset("digits", data_root=root)
    return root / "digits"


@pytest.fixture
def run_ctx(tmp_path):
    """An MLflow context on a fresh SQLite store of the test's own."""
    from lifelearn.tracking import RunContext, ensure_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_store(uri)
    return RunContext(uri, "test")


def trained_model_paths(root: Path, seeds) -> dict[str, list[Path]]:
    """Output paths of a Lightning training job (checkpoints / metrics / history per seed)."""
    return {"checkpoints": [root / f"seed{s}.pt" for s in seeds], "metrics": [root / f"seed{s}.json" for s in seeds],
            "history": [root / f"seed{s}.csv" for s in seeds]}


def run_job(study_name: str, step: str, name: str, spec: dict, seeds, ctx, inputs: dict, outputs: dict,
            trainer: dict | None = None) -> list:
    """Run one study job in this process, as the rule's glue does (lifelearn.studies.run_job)."""
    from lifelearn.jobs import Job, Paths
    from lifelearn.studies import run_job as run_study_job

    trainer = trainer or {"accelerator": "cpu", "devices": 1, "deterministic": True}
    job = Job(study_name, step, name, spec, list(seeds), ctx, 1, {**trainer, "progress_bar": False})
    return run_study_job(job, Paths({k: [Path(p) for p in v] for k, v in inputs.items()},
                                    {k: [Path(p) for p in v] for k, v in outputs.items()}))


def write_override(workdir: Path, name: str, values: dict) -> Path:
    """A config file for `--configfile`, merged on top of config/ (a profile's own
    values win over the base's: override `profiles.<name>.<key>` to change those)."""
    import yaml

    path = workdir / "overrides" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values))
    return path


def identity_head():
    """A 2 -> 2 linear layer computing the identity (hand-computed loss cases)."""
    import torch
    from torch import nn

    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.eye(2))
        m.bias.zero_()
    return m
