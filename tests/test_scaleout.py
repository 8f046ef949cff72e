"""Scale-out without code changes: cluster submission with the rules' resources, the
SLURM profile, a shared MLflow server, a second DVC remote."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SMOKE, copy_workflow, mlflow_server_on, planned_jobs

pytestmark = pytest.mark.slow


def run(cmd, cwd, env=None, timeout=600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def snakemake_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args, *SMOKE]


def test_cluster_submission_passes_each_rules_resources(tmp_path):
    """Snakemake's cluster-generic executor with a stand-in `sbatch` that runs the job
    scripts on this machine: real job scripts, per-rule resources, shared filesystem."""
    work = copy_workflow(tmp_path / "repo")
    log = tmp_path / "sbatch.log"
    submit = f"{REPO / 'tests' / 'cluster' / 'sbatch'} --mem={{resources.mem_mb}} --cpus={{threads}} " \
             f"--gpus={{resources.gpu}} --time={{resources.runtime}}"
    run(snakemake_cmd("pretrain_digits_convnet", "--executor", "cluster-generic",
                      "--cluster-generic-submit-cmd", submit, "--default-resources", "mem_mb=1000", "runtime=10", "gpu=0",
                      "--jobs", "2", "--latency-wait", "5", "--seconds-between-status-checks", "1"),
        work, env={**os.environ, "FAKE_SBATCH_LOG": str(log)})
    submitted = log.read_text().splitlines()
    assert any("snakejob.prepare_data" in line and "--mem=1000 --cpus=1 --gpus=0 --time=10" in line for line in submitted)
    assert any("snakejob.pretrain_digits_convnet" in line and "--mem=4000 --cpus=1 --gpus=0 --time=30" in line
               for line in submitted)
    for seed in (0, 1):
        assert (work / "results" / "smoke" / "teachers" / "digits_convnet" / f"seed{seed}" / "metrics.json").exists()


def test_slurm_profile_plans_the_pipeline(workflow_copy):
    out = run(snakemake_cmd("-n", "--profile", "workflow/profiles/slurm"), workflow_copy)
    assert "pretrain_mnist1d_convnet" in out and "mem_mb=4000" in out and "gpu=0" in out


@pytest.fixture
def mlflow_server(tmp_path):
    with mlflow_server_on(f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts")) \
            as port:
        yield port


def test_jobs_log_to_a_shared_mlflow_server_without_leaking_credentials(tmp_path, mlflow_server):
    from mlflow import MlflowClient

    work = copy_workflow(tmp_path / "repo")
    uri = f"http://lab-user:s3cret-token@127.0.0.1:{mlflow_server}"
    out = run(snakemake_cmd("--cores", "2", "pretrain_mnist1d_mlp", "pretrain_digits_convnet"), work,
              env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert not (work / "mlflow.db").exists()  # nothing went to the local default store
    client = MlflowClient(f"http://127.0.0.1:{mlflow_server}")
    runs = client.search_runs([client.get_experiment_by_name("teachers").experiment_id],
                              filter_string="tags.run_level = 'seed'")
    names = sorted(r.info.run_name for r in runs)
    assert names == [f"{t}/seed{s}" for t in ("digits_convnet", "mnist1d_mlp") for s in (0, 1)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert "metrics.json" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    for r in runs:
        assert not any("s3cret" in str(v) for v in [*r.data.params.values(), *r.data.tags.values()])
    assert "s3cret" not in out


def test_dvc_push_and_pull_through_a_second_remote(tmp_path):
    """Data and checkpoints pushed to a remote directory come back bit-identical in a
    fresh clone, and Snakemake then does not prepare the data again."""
    from lifelearn.data.version import check_data_version

    dvc = [sys.executable, "-m", "dvc"]
    remote = tmp_path / "remote"
    origin = copy_workflow(tmp_path / "origin")
    run(["git", "init", "-q"], origin)
    run(snakemake_cmd("--cores", "2", "data/digits/meta.json", "data/mnist1d/meta.json"), origin)
    (origin / "checkpoints" / "smoke").mkdir(parents=True)
    (origin / "checkpoints" / "smoke" / "model.pt").write_bytes(b"weights")
    run([*dvc, "commit", "-f", "-q", "data.dvc"], origin)
    run([*dvc, "add", "-q", "checkpoints"], origin)
    run([*dvc, "remote", "add", "-f", "second", str(remote)], origin)
    run([*dvc, "push", "-q", "-r", "second"], origin)

    clone = copy_workflow(tmp_path / "clone")  # code, data.dvc and .dvc/, no data
    shutil.copy2(origin / "checkpoints.dvc", clone / "checkpoints.dvc")
    shutil.copy2(origin / ".dvc" / "config", clone / ".dvc" / "config")
    run(["git", "init", "-q"], clone)
    assert not (clone / "data").exists()
    run([*dvc, "pull", "-q", "-r", "second"], clone)
    assert check_data_version(clone / "data", clone / "data.dvc")["status"] == "match"
    assert (clone / "checkpoints" / "smoke" / "model.pt").read_bytes() == b"weights"
    assert "prepare_data" not in planned_jobs(clone)  # pulled data is not made again (mtimes: ancient)
