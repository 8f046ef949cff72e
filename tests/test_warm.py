"""Warm job processes (lifelearn.warm, issue 16): a study job forked from the server gives
the results of the same job run in a process of its own, writes its log where the glue's
output goes, reports a failure as a non-zero status, and the glue runs the job itself when
no server listens."""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from lifelearn import warm
from lifelearn.config import load_config
from lifelearn.data.arrays import DATASET_FILES
from lifelearn.jobs import Layout
from lifelearn.studies import study

from conftest import REPO

pytestmark = pytest.mark.slow  # starts a server process


def _job(workdir: Path, digits_dir: Path, spec_change=None) -> SimpleNamespace:
    """The smoke profile's `continual_ci_er` job as Snakemake's script object would hold it,
    with its files under `workdir` (picklable: the server's child unpickles it)."""
    cfg = load_config(REPO / "config", "smoke")
    [job] = [j for j in study("continual").jobs(cfg, Layout("smoke")) if j.rule == "continual_ci_er"]
    params = job.params(cfg, "test-data")
    if spec_change:
        params["spec"] = spec_change(params["spec"])
    outputs = {k: [str(workdir / p) for p in v] for k, v in job.outputs.items()}
    inputs = {k: [str(workdir / p) for p in v] for k, v in job.inputs.items()}
    inputs["data"] = [str(digits_dir / f) for f in DATASET_FILES]
    return SimpleNamespace(config={"profile": "smoke", "progress_bar": False}, rule=job.rule,
                           log=[str(workdir / "job.log")], params=SimpleNamespace(job=params), threads=1,
                           input=inputs, output=outputs)


def _metrics(workdir: Path) -> list[dict]:
    files = sorted((workdir / "results/smoke/continual/ci_er").glob("seed*/metrics.json"))
    return [{k: v for k, v in json.loads(f.read_text())["metrics"].items()
             if not k.endswith("_seconds") and k != "steps_per_second"} for f in files]  # all but speed


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, path = warm.start()
    try:
        assert warm.wait_ready(path), "the warm server did not bind its socket"
        yield path
    finally:
        warm.stop(proc, path)
    assert proc.poll() is not None and not os.path.exists(path)


def _in(workdir: Path, fn, *args):
    """Run fn in `workdir` with its own MLflow store (the child takes cwd and environment)."""
    cwd, env = os.getcwd(), dict(os.environ)
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    try:
        from lifelearn.tracking import ensure_store

        ensure_store(os.environ["MLFLOW_TRACKING_URI"])
        return fn(*args)
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)


def test_a_warm_job_gives_the_results_of_a_job_in_its_own_process(tmp_path, digits_dir, server):
    from lifelearn.studies import run_snakemake_job

    cold, hot = tmp_path / "cold", tmp_path / "warm"
    _in(cold, run_snakemake_job, _job(cold, digits_dir))
    assert _in(hot, warm.run_remote, server, _job(hot, digits_dir)) == 0
    assert _metrics(hot) == _metrics(cold) and len(_metrics(cold)) == 2
    for name in ("accuracy_matrix.json", "stream.csv", "history.csv"):
        assert (hot / f"results/smoke/continual/ci_er/seed0/{name}").read_bytes() == \
               (cold / f"results/smoke/continual/ci_er/seed0/{name}").read_bytes()
    assert (hot / "job.log").stat().st_size > 0  # the job's log, written by the child
    phases = json.loads((hot / "logs/smoke/benchmarks/continual_ci_er.phases.json").read_text())
    assert phases["warm"] and phases["cpu_s"] > 0 and phases["status"] == "ok"
    assert not json.loads((cold / "logs/smoke/benchmarks/continual_ci_er.phases.json").read_text())["warm"]


def test_a_failing_warm_job_returns_a_nonzero_status_and_logs_its_error(tmp_path, digits_dir, server):
    def broken(spec):
        return spec | {"strategies": {"no_such_strategy": {}}}

    assert _in(tmp_path, warm.run_remote, server, _job(tmp_path, digits_dir, broken)) == 1
    assert "no_such_strategy" in (tmp_path / "job.log").read_text()


def test_without_a_server_the_glue_runs_the_job_itself(tmp_path, digits_dir, monkeypatch):
    monkeypatch.setenv(warm.ENV, str(tmp_path / "no-such-socket"))
    _in(tmp_path, warm.run_job_warm_or_here, _job(tmp_path, digits_dir))
    assert len(_metrics(tmp_path)) == 2
    assert warm.run_remote(tmp_path / "no-such-socket", None) is None
