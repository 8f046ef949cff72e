"""MLflow tracking helpers: params, URIs, runs (finished / failed / resumed), the
store lock under concurrent first use, the git commit and MLflow's source tags, the
experiment kind, dataset inputs, logged models, system metrics, and parent runs per
configuration with the seeds' aggregate."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lifelearn import tracking
from lifelearn.io import md5_tree
from lifelearn.tracking import MAX_PARAM_CHARS, RunContext, default_tracking_uri, flatten, git_commit, tracked_run


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _uri(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One migrated store shared by the sequential tests of this module."""
    uri = _uri(tmp_path_factory.mktemp("mlflow") / "mlflow.db")
    tracking.ensure_store(uri)
    return uri


# --- flatten / URIs ----------------------------------------------------------------

def test_flatten_nested():
    params = {"model": {"arch": "mlp", "hidden": [16, 8]}, "train": {"lr": 0.1, "opt": {"name": "sgd", "m": 0.9}},
              "seed": 3, "note": None}
    assert flatten(params) == {
        "model.arch": "mlp", "model.hidden": "[16, 8]", "train.lr": "0.1",
        "train.opt.name": "sgd", "train.opt.m": "0.9", "seed": "3", "note": "None",
    }
    assert flatten({}) == {}
    assert flatten({"a": {}}) == {}
    assert flatten({"a": 1}, prefix="x.") == {"x.a": "1"}


def test_flatten_cuts_long_values():
    long = "ab" * MAX_PARAM_CHARS
    flat = flatten({"n": {"long": long, "exact": "z" * MAX_PARAM_CHARS, "list": list(range(5000))}})
    assert flat["n.long"] == long[:MAX_PARAM_CHARS] and len(flat["n.long"]) == MAX_PARAM_CHARS
    assert flat["n.exact"] == "z" * MAX_PARAM_CHARS
    assert flat["n.list"] == str(list(range(5000)))[:MAX_PARAM_CHARS]
    assert MAX_PARAM_CHARS <= 6000  # MLflow's limit on a param value


def test_default_tracking_uri_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker.example:5000")
    assert default_tracking_uri(tmp_path) == "http://tracker.example:5000"


def test_default_tracking_uri_sqlite(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    expected = "sqlite:///" + os.path.join(os.path.realpath(tmp_path), "mlflow.db")
    assert default_tracking_uri(tmp_path) == expected
    assert expected.startswith("sqlite:////")  # absolute path: four slashes
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert default_tracking_uri("..") == expected
    assert default_tracking_uri() == "sqlite:///" + os.path.join(os.path.realpath(tmp_path), "sub", "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # empty counts as unset
    assert default_tracking_uri("..") == expected


def test_run_context_tags():
    ctx = RunContext("sqlite:////x.db", "smoke", git_commit="abc", data_version="d1", extra_tags={"host": "h"})
    tags = ctx.tags(stage="pretrain", seed=2)
    assert {k: v for k, v in tags.items() if not k.startswith("mlflow.")} == {
        "profile": "smoke", "git_commit": "abc", "data_version": "d1", "host": "h", "stage": "pretrain", "seed": "2"}
    assert {k: tags[k] for k in ("mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit",
                                 "mlflow.source.git.dirty")} == {
        "mlflow.source.name": "lifelearn", "mlflow.source.type": "LOCAL", "mlflow.source.git.commit": "abc",
        "mlflow.source.git.dirty": "false"}
    assert tags["mlflow.user"]


def test_run_context_of_a_job_names_its_rule_and_a_dirty_commit(monkeypatch, tmp_path):
    monkeypatch.setattr(tracking, "git_commit", lambda root: "f00d+dirty")
    tags = RunContext.for_job("smoke", "d1", tmp_path, rule="pretrain_digits_mlp").tags()
    assert tags["mlflow.source.name"] == "pretrain_digits_mlp"
    assert tags["mlflow.source.git.commit"] == "f00d" and tags["mlflow.source.git.dirty"] == "true"
    assert tags["git_commit"] == "f00d+dirty"
    assert "mlflow.source.git.commit" not in RunContext("sqlite:////x.db", "smoke").tags()  # commit unknown


# --- concurrent first use of a fresh store ------------------------------------------

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lifelearn.tracking import RunContext, tracked_run
    import mlflow  # imported before the barrier so all workers reach the store together

    uri, index, sync = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    (sync / f"ready{index}").touch()
    deadline = time.time() + 120
    while not (sync / "go").exists():
        if time.time() > deadline:
            sys.exit("no go signal")
        time.sleep(0.005)
    ctx = RunContext(uri, "par", git_commit="c0ffee", data_version="dv1")
    with tracked_run(ctx, "parallel", f"worker{index}", {"stage": "test", "seed": index},
                     {"train": {"lr": 0.1, "seed": index}, "name": "w"}) as run:
        run.log_metrics({"value": index * 1.5})
""")


@pytest.mark.slow
def test_parallel_writers_on_fresh_store(tmp_path):
    n = 4
    db = tmp_path / "store" / "mlflow.db"  # parent does not exist yet either
    uri = _uri(db)
    sync = tmp_path / "sync"
    sync.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [subprocess.Popen([sys.executable, str(script), uri, str(i), str(sync)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(n)]
    try:
        deadline = time.time() + 120
        while len(list(sync.glob("ready*"))) < n and time.time() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.01)
        assert not db.exists()  # nobody touched the store before the go signal
        (sync / "go").touch()
        outputs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"worker {i} failed:\n{out[-4000:]}"

    client = _client(uri)
    exp = client.get_experiment_by_name("parallel")
    assert exp is not None
    assert len(client.search_experiments()) == 2  # "Default" + "parallel": created once
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == n
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {f"worker{i}" for i in range(n)}
    for i in range(n):
        r = by_name[f"worker{i}"]
        assert r.info.status == "FINISHED"
        tags = r.data.tags
        assert {k: tags.get(k) for k in ("profile", "git_commit", "data_version", "stage", "seed")} == \
               {"profile": "par", "git_commit": "c0ffee", "data_version": "dv1", "stage": "test", "seed": str(i)}
        assert r.data.params == {"train.lr": "0.1", "train.seed": str(i), "name": "w"}
        assert r.data.metrics == {"value": i * 1.5}


# --- run lifecycle ---------------------------------------------------------------------

def test_finished_run(store):
    ctx = RunContext(store, "unit", git_commit="abc", data_version="v")
    with tracked_run(ctx, "lifecycle", "ok", {"stage": "unit", "seed": 0}, {"a": {"b": 1}}) as run:
        assert _client(store).get_run(run.run_id).info.status == "RUNNING"
        run.log_metrics({"acc": 0.5, "skipped": [1, 2], "n": 3})
    got = _client(store).get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "ok"
    assert got.data.params == {"a.b": "1"}
    assert got.data.metrics == {"acc": 0.5, "n": 3.0}  # non-numbers are not logged
    assert run.experiment == "lifecycle" and run.tracking_uri == store


def test_failing_body_marks_run_failed(store):
    ctx = RunContext(store, "unit")
    captured = {}
    with pytest.raises(RuntimeError, match="boom"):
        with tracked_run(ctx, "lifecycle", "fails", {"stage": "unit"}, {}) as run:
            captured["id"] = run.run_id
            raise RuntimeError("boom")
    assert _client(store).get_run(captured["id"]).info.status == "FAILED"


def test_interrupt_marks_run_failed(store):
    ctx = RunContext(store, "unit")
    captured = {}
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(ctx, "lifecycle", "killed", {"stage": "unit"}, {}) as run:
            captured["id"] = run.run_id
            raise KeyboardInterrupt
    assert _client(store).get_run(captured["id"]).info.status == "FAILED"


def test_resume_run_id_continues_same_run(store):
    ctx = RunContext(store, "unit")
    params = {"train": {"lr": 0.1}}
    with pytest.raises(RuntimeError):
        with tracked_run(ctx, "resume", "job/seed0", {"stage": "unit"}, params) as run:
            first_id = run.run_id
            run.log_metrics({"loss": 2.0}, step=0)
            raise RuntimeError("killed")
    client = _client(store)
    assert client.get_run(first_id).info.status == "FAILED"
    with tracked_run(ctx, "resume", "job/seed0", {"stage": "unit"}, params, resume_run_id=first_id) as run:
        assert run.run_id == first_id
        assert client.get_run(first_id).info.status == "RUNNING"
        run.log_metrics({"loss": 1.0}, step=1)
    exp = client.get_experiment_by_name("resume")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [first_id]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params == {"train.lr": "0.1"}
    history = client.get_metric_history(first_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 2.0), (1, 1.0)]


def test_log_series_logs_every_point_in_calls_within_mlflows_limit(tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH

    assert tracking.MAX_BATCH_METRICS == MAX_METRICS_PER_BATCH
    sizes, log_batch = [], MlflowClient.log_batch

    def counted(self, run_id, metrics=(), **kwargs):
        sizes.append(len(metrics))
        return log_batch(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counted)
    uri = _uri(tmp_path / "mlflow.db")
    points = [(f"acc_task{i % 2}", i / 2500, i // 2) for i in range(2500)]  # 1250 steps per key
    with tracked_run(RunContext(uri, "unit"), "series", "s", {"stage": "unit"}, {}) as run:
        sizes.clear()  # the run's params went through log_batch too
        run.log_series(iter(points))
    assert sizes == [1000, 1000, 500]
    for key in ("acc_task0", "acc_task1"):
        got = sorted((m.step, m.value) for m in _client(uri).get_metric_history(run.run_id, key))
        assert got == [(step, value) for k, value, step in points if k == key]


def test_experiment_id_is_stable(store):
    a = tracking.experiment_id(store, "stable")
    assert tracking.experiment_id(store, "stable") == a
    assert tracking.experiment_id(store, "other") != a
    location = _client(store).get_experiment(a).artifact_location
    assert location == (Path(store.removeprefix("sqlite:///")).parent / "mlartifacts" / "stable").as_uri()


def test_experiments_are_model_training_experiments(store):
    created = _client(store).get_experiment(tracking.experiment_id(store, "kind"))
    assert created.tags["mlflow.experimentKind"] == "custom_model_development"
    older = _client(store).create_experiment("made before")  # e.g. by an earlier version of the pipeline
    assert tracking.experiment_id(store, "made before") == older
    assert _client(store).get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"


# --- datasets, models, system metrics ----------------------------------------------------

def test_dataset_is_an_mlflow_input_with_the_md5_as_digest(store, tmp_path):
    data = tmp_path / "digits"
    data.mkdir()
    (data / "x_train.npy").write_bytes(b"x")
    ref = tracking.DatasetRef.of("digits", data)
    assert ref.digest == md5_tree(data)
    with tracked_run(RunContext(store, "unit"), "inputs", "d", {"dataset": "digits"}, {}, dataset=ref) as run:
        pass
    got = _client(store).get_run(run.run_id)
    assert got.data.tags["dataset_md5"] == ref.digest
    [entry] = got.inputs.dataset_inputs
    assert (entry.dataset.name, entry.dataset.digest, entry.dataset.source_type) == ("digits", ref.digest, "local")
    assert json.loads(entry.dataset.source) == {"uri": str(data.resolve())}
    assert {t.key: t.value for t in entry.tags} == {"mlflow.data.context": "train"}


def test_checkpoint_is_a_logged_model_of_the_run(store, tmp_path):
    checkpoint = tmp_path / "seed0.pt"
    checkpoint.write_bytes(b"weights")
    with tracked_run(RunContext(store, "unit"), "models", "m/seed0", {}, {}) as run:
        uri = run.log_checkpoint(checkpoint, "m-seed0")
    client = _client(store)
    got = client.get_run(run.run_id)
    [output] = got.outputs.model_outputs
    assert uri == f"models:/{output.model_id}" == got.data.tags["model_uri"]
    model = client.get_logged_model(output.model_id)
    assert (model.name, model.source_run_id, str(model.status)) == ("m-seed0", run.run_id, "READY")
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(f"{model.artifact_location}/seed0.pt", dst_path=str(tmp_path / "dl"))
    assert Path(local).read_bytes() == b"weights"


def test_system_metrics_are_sampled_into_the_run_when_switched_on(store):
    with tracked_run(RunContext(store, "unit", system_metrics_interval=0.2), "system", "s", {}, {}) as run:
        time.sleep(1.0)
    metrics = _client(store).get_run(run.run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    with tracked_run(RunContext(store, "unit"), "system", "off", {}, {}) as run:
        time.sleep(0.3)
    assert not _client(store).get_run(run.run_id).data.metrics


# --- parent runs -------------------------------------------------------------------------

def _seeds(ctx, experiment, seeds, fail_after=None):
    """Seed runs cfg/seed<k> on one dataset with metric acc = k / 10; raises after seed `fail_after`."""
    from lifelearn.jobs import RunRecord

    records, data = [], tracking.DatasetRef("digits", Path("/data/digits"), "d1g357")
    for seed in seeds:
        with tracked_run(ctx, experiment, f"cfg/seed{seed}", {"stage": "unit", "name": "cfg", "seed": seed},
                         {"lr": 0.1, "seed": seed}, dataset=data) as run:
            run.log_metrics({"acc": seed / 10})
        records.append(RunRecord(experiment, "unit", "cfg", "m", seed, "digits", "mlp", run.run_id, "abc",
                                 {"acc": seed / 10, "per_class": [1, 2], "note": "x"}))
        if seed == fail_after:
            raise KeyboardInterrupt
    return records


def _runs_by_level(store, experiment):
    client = _client(store)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {level: [r for r in runs if r.data.tags.get("run_level") == level] for level in ("parent", "seed")}


def test_seed_runs_nest_under_one_parent_with_their_aggregate(store, tmp_path):
    from lifelearn.stats import paired_interval

    state = tmp_path / "parents.json"
    with tracking.parent_runs(RunContext(store, "unit"), state, "job") as ctx:
        records = _seeds(ctx, "nested", [1, 2, 3])
        assert state.exists()
        tracking.log_seed_aggregates(ctx.tracking_uri, records)
    assert not state.exists()
    runs = _runs_by_level(store, "nested")
    [parent] = runs["parent"]
    assert parent.info.run_name == "cfg" and parent.info.status == "FINISHED"
    assert parent.data.params == {"lr": "0.1"} and "seed" not in parent.data.tags and "dataset_md5" not in parent.data.tags
    assert parent.data.tags["name"] == "cfg" and parent.data.tags["mlflow.source.type"] == "LOCAL"
    assert [i.dataset.digest for i in parent.inputs.dataset_inputs] == ["d1g357"]  # its seeds' dataset, once
    assert sorted(r.info.run_name for r in runs["seed"]) == ["cfg/seed1", "cfg/seed2", "cfg/seed3"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs["seed"]} == {parent.info.run_id}
    mean, low, high = paired_interval([0.1, 0.2, 0.3])
    assert parent.data.metrics == pytest.approx({"acc_mean": mean, "acc_std": 0.1, "acc_ci_low": low,
                                                 "acc_ci_high": high, "n_seeds": 3})


def test_a_killed_jobs_rerun_keeps_its_parent_and_a_finished_jobs_rerun_gets_a_new_one(store, tmp_path):
    state = tmp_path / "parents.json"
    with pytest.raises(KeyboardInterrupt):
        with tracking.parent_runs(RunContext(store, "unit"), state, "job") as ctx:
            _seeds(ctx, "rerun", [0, 1], fail_after=0)
    [killed] = _runs_by_level(store, "rerun")["parent"]
    assert killed.info.status == "FAILED" and state.exists()
    with tracking.parent_runs(RunContext(store, "unit"), state, "job") as ctx:
        tracking.log_seed_aggregates(ctx.tracking_uri, _seeds(ctx, "rerun", [1]))
    runs = _runs_by_level(store, "rerun")
    [parent] = runs["parent"]
    assert parent.info.run_id == killed.info.run_id and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs["seed"]} == {parent.info.run_id}
    with tracking.parent_runs(RunContext(store, "unit"), state, "job") as ctx:  # the job again, from scratch
        _seeds(ctx, "rerun", [0, 1])
    parents = _runs_by_level(store, "rerun")["parent"]
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}


def test_aggregates_go_to_the_parent_of_runs_made_by_an_earlier_job(store, tmp_path, capsys):
    """The continual evaluation adds metrics to the train job's seed runs: their parent gets
    the aggregate; a run the store does not have is skipped with a warning."""
    with tracking.parent_runs(RunContext(store, "unit"), tmp_path / "train.json", "job") as ctx:
        records = _seeds(ctx, "later", [0, 1])
    for record in records:
        record.metrics = {"final_acc": 0.5 + record.seed / 10}
    missing = replace(records[0], run_id="0" * 32)
    tracking.log_seed_aggregates(store, [*records, missing])
    [parent] = _runs_by_level(store, "later")["parent"]
    assert parent.data.metrics["final_acc_mean"] == pytest.approx(0.55) and parent.data.metrics["n_seeds"] == 2
    assert "no seed aggregate logged" in capsys.readouterr().err


def test_aggregate_metrics_names():
    summary = {"acc": {"n": 2, "mean": 0.5, "std": 0.1, "low": 0.4, "high": 0.6},
               "one": {"n": 1, "mean": 3.0, "std": None, "low": None, "high": None}}
    assert tracking.aggregate_metrics(summary) == {"acc_mean": 0.5, "acc_std": 0.1, "acc_ci_low": 0.4,
                                                   "acc_ci_high": 0.6, "one_mean": 3.0}


# --- git commit --------------------------------------------------------------------------

def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=Test",
                           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_outside_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    for var in ("GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "does-not-exist") == "unknown"


def test_git_commit_inside_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    for var in ("GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)
    _git(tmp_path, "init", "-q")
    (tmp_path / "f.txt").write_text("one\n")
    _git(tmp_path, "add", "f.txt")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")
    got = git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", got)
    assert got == head
    (tmp_path / "untracked.txt").write_text("x")  # untracked files do not count
    assert git_commit(tmp_path) == head
    (tmp_path / "f.txt").write_text("two\n")
    assert git_commit(tmp_path) == head + "+dirty"


def test_credentials_leave_the_uri_for_mlflows_auth_variables(monkeypatch):
    from lifelearn.tracking import without_credentials

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert without_credentials("https://ann:p%40ss@mlflow.lab:5000/base") == "https://mlflow.lab:5000/base"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "ann" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss"
    assert without_credentials("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"


def test_system_metrics_setting():
    from lifelearn.studies import system_metrics_interval

    assert system_metrics_interval({}) is None
    assert system_metrics_interval({"tracking": {"system_metrics": True}}) == 10
    assert system_metrics_interval({"tracking": {"system_metrics": True, "system_metrics_interval": 2}}) == 2
    assert system_metrics_interval({"tracking": {"system_metrics": False, "system_metrics_interval": 2}}) is None
