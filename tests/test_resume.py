"""A training job killed with SIGKILL half-way resumes from its last checkpoint on the
rerun (epoch count continues, same MLflow run and parent run) and ends with the metrics of an
uninterrupted run: a Lightning training job (teacher pretraining, the body of every
run_seed stage) and a dataset-distillation job (its own optimisation loop)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import SMOKE, copy_workflow, experiment_runs, mlflow_client, write_override

pytestmark = pytest.mark.slow

JOB = "pretrain_mnist1d_convnet"
LONG_TEACHER = {"teachers": {"mnist1d_convnet": {"train": {"epochs": 8}}}}  # the smoke seeds [0, 1]
OVERRIDE = "overrides/resume.yaml"
PARENTS_STATE = "checkpoints/smoke/teachers/.mlflow-parents-*.json"  # lifelearn.studies.parents_state


def workflow(dest: Path, smoke_override: dict = LONG_TEACHER) -> Path:
    """A workflow copy whose smoke profile runs longer (`--configfile` override, see start)."""
    copy_workflow(dest)
    write_override(dest, Path(OVERRIDE).name, {"profiles": {"smoke": smoke_override}})
    return dest


def start(workdir: Path, job: str = JOB) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", job, *SMOKE, "--configfile", OVERRIDE],
                            cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def job_pid(workdir: Path, script: bytes = b"run_study.py") -> int | None:
    """PID of the job's own Python process (Snakemake runs the rule's script as a child)."""
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except (OSError, ValueError):
            continue
        if cwd == str(workdir) and any(part.endswith(script) for part in cmd):
            return int(proc.name)
    return None


def kill_after_first_checkpoint(workdir: Path, proc: subprocess.Popen) -> None:
    ckpt_dir = workdir / "checkpoints" / "smoke" / "teachers" / "mnist1d_convnet"
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpt_dir.glob(".work-seed0-*/last.ckpt")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    pid = job_pid(workdir)
    assert pid is not None, "job process not found"
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=120)


def run(workdir: Path, job: str = JOB) -> str:
    proc = start(workdir, job)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_killed_job_resumes_and_matches_an_uninterrupted_run(tmp_path):
    killed, clean = workflow(tmp_path / "killed"), workflow(tmp_path / "clean")
    proc = start(killed)
    kill_after_first_checkpoint(killed, proc)
    assert proc.returncode != 0
    result = killed / "results" / "smoke" / "teachers" / "mnist1d_convnet" / "seed0"
    assert not (result / "metrics.json").exists()  # nothing half-written was kept
    work = list((killed / "checkpoints" / "smoke" / "teachers" / "mnist1d_convnet").glob(".work-seed0-*"))
    epoch_at_kill = torch.load(work[0] / "last.ckpt", weights_only=True)["epoch"]
    assert 0 <= epoch_at_kill < 7
    assert list(killed.glob(PARENTS_STATE))  # the parent run's id, for the rerun

    run(killed)
    rerun = (killed / "logs" / "smoke" / f"{JOB}.log").read_text()  # the job's output is in its log
    assert "Restoring states from the checkpoint" in rerun or "Restored all states" in rerun
    run(clean)

    a = json.loads((result / "metrics.json").read_text())
    b = json.loads((clean / result.relative_to(killed) / "metrics.json").read_text())
    for record in (a, b):
        record["metrics"].pop("train_seconds")
        record.pop("run_id")
    assert a == b and a["metrics"]["epochs"] == 8
    assert (result / "history.csv").read_bytes() == (clean / result.relative_to(killed) / "history.csv").read_bytes()

    client = mlflow_client(killed)
    runs = experiment_runs(killed, "teachers")
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [("mnist1d_convnet/seed0", "FINISHED"),
                                                                       ("mnist1d_convnet/seed1", "FINISHED")]
    seed0 = next(r for r in runs if r.info.run_name == "mnist1d_convnet/seed0")
    assert len(client.get_metric_history(seed0.info.run_id, "val_acc")) == 8
    # the killed attempt's parent run was continued: one parent, both seeds under it
    [parent] = experiment_runs(killed, "teachers", level="parent")
    assert (parent.info.run_name, parent.info.status) == ("mnist1d_convnet", "FINISHED")
    assert parent.data.metrics["n_seeds"] == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert not list(killed.glob(PARENTS_STATE))  # its state went with the finished job


DD_JOB = "dd_distill_mtt"
LONG_DISTILL = {"dataset_distillation": {"distill": {"iterations": 400}}}


def test_killed_distillation_resumes_and_matches_an_uninterrupted_run(tmp_path):
    killed, clean = workflow(tmp_path / "killed", LONG_DISTILL), workflow(tmp_path / "clean", LONG_DISTILL)
    proc = start(killed, DD_JOB)
    synthetic = killed / "checkpoints" / "smoke" / "dataset_distillation" / "synthetic" / "mtt_ipc1"
    deadline = time.time() + 180
    while time.time() < deadline and not list(synthetic.glob(".work-seed0-*/progress.pt")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.02)
    pid = job_pid(killed)
    assert pid is not None, "job process not found"
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    loss = Path("results") / "smoke" / "dataset_distillation" / "mtt_ipc1" / "seed0" / "loss.csv"
    assert not (killed / loss).exists()
    progress = next(synthetic.glob(".work-seed0-*/progress.pt"))
    at_kill = torch.load(progress, weights_only=True)["iteration"]
    assert 0 < at_kill < 400

    run(killed, DD_JOB)
    run(clean, DD_JOB)
    assert not list(synthetic.glob(".work-*"))  # the scratch state is removed once the set is written
    assert (killed / loss).read_bytes() == (clean / loss).read_bytes()
    x = Path("checkpoints") / "smoke" / "dataset_distillation" / "synthetic" / "mtt_ipc1" / "seed0" / "x_train.npy"
    assert (killed / x).read_bytes() == (clean / x).read_bytes()

    client = mlflow_client(killed)
    runs = experiment_runs(killed, "dataset_distillation",
                           filter_string="attributes.run_name = 'mtt_ipc1/seed0/distill'")
    assert [r.info.status for r in runs] == ["FINISHED"]  # the killed attempt's run was continued
    assert len(client.get_metric_history(runs[0].info.run_id, "loss")) == 400

