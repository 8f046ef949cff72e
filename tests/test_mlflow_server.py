"""The smoke pipeline's MLflow store as the UI reads it: `mlflow server` on 127.0.0.1 and
its REST API. Every study is a model-training experiment; every seed run is nested under
its configuration's parent run in the same experiment; the parent carries the seeds'
mean, std and 95% interval; training runs have their dataset as an input whose digest is
the data's md5; every run has MLflow's source tags."""
from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request

import pytest

from conftest import mlflow_server_on
from lifelearn.io import md5_tree, read_json
from lifelearn.stats import paired_interval

pytestmark = pytest.mark.slow

STUDIES = ("teachers", "mtard", "tgeo_kd", "dataset_distillation", "continual")
TEACHERS = {"mnist1d_convnet", "mnist1d_mlp", "digits_convnet", "mnist1d_convnet_pgd"}
SEEDS = (0, 1)
REQUEST_TIMEOUT = 30  # seconds, every request


@pytest.fixture(scope="module")
def server(pipeline):
    with mlflow_server_on(f"sqlite:///{pipeline / 'mlflow.db'}", "--artifacts-destination",
                          str(pipeline / "mlartifacts")) as port:
        yield f"http://127.0.0.1:{port}/api/2.0/mlflow"


def get(api: str, path: str, **query) -> dict:
    with urllib.request.urlopen(f"{api}/{path}?{urllib.parse.urlencode(query)}", timeout=REQUEST_TIMEOUT) as resp:
        return json.load(resp)


def post(api: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{api}/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as resp:
        return json.load(resp)


def tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics(run: dict) -> dict:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def experiment(api: str, name: str) -> dict:
    return get(api, "experiments/get-by-name", experiment_name=name)["experiment"]


def runs_of(api: str, name: str) -> list[dict]:
    """Every run of experiment `name`, page by page."""
    body, runs = {"experiment_ids": [experiment(api, name)["experiment_id"]], "max_results": 500}, []
    while True:
        page = post(api, "runs/search", body)
        runs += page.get("runs", [])
        if not page.get("next_page_token"):
            return runs
        body["page_token"] = page["next_page_token"]


def by_level(runs: list[dict]) -> dict[str, list[dict]]:
    return {level: [r for r in runs if tags(r).get("run_level") == level] for level in ("parent", "seed")}


def test_every_study_is_a_model_training_experiment(server):
    for name in (*STUDIES, "report"):
        kind = {t["key"]: t["value"] for t in experiment(server, name).get("tags", [])}.get("mlflow.experimentKind")
        assert kind == "custom_model_development", name


def test_each_seed_run_is_nested_under_its_parent_in_the_same_experiment(server):
    for name in STUDIES:
        runs = by_level(runs_of(server, name))
        parents = {r["info"]["run_id"]: r for r in runs["parent"]}
        assert runs["seed"] and parents, name
        for run in runs["seed"]:
            parent = parents[tags(run)["mlflow.parentRunId"]]  # a parent of this experiment
            assert run["info"]["run_name"].replace(f"/seed{tags(run)['seed']}", "") == parent["info"]["run_name"]
            assert parent["info"]["status"] == "FINISHED"
    teachers = by_level(runs_of(server, "teachers"))
    assert sorted(r["info"]["run_name"] for r in teachers["parent"]) == sorted(TEACHERS)
    children = [tags(r)["mlflow.parentRunId"] for r in teachers["seed"]]
    assert sorted(children.count(p["info"]["run_id"]) for p in teachers["parent"]) == [len(SEEDS)] * len(TEACHERS)


def test_the_parent_carries_the_seed_aggregate(server, pipeline):
    runs = by_level(runs_of(server, "teachers"))
    parent = next(r for r in runs["parent"] if r["info"]["run_name"] == "mnist1d_mlp")
    results = pipeline / "results" / "smoke" / "teachers" / "mnist1d_mlp"
    accs = [read_json(results / f"seed{s}" / "metrics.json")["metrics"]["test_acc"] for s in SEEDS]
    seeds = [metrics(r)["test_acc"] for r in runs["seed"] if tags(r)["mlflow.parentRunId"] == parent["info"]["run_id"]]
    assert sorted(seeds) == pytest.approx(sorted(accs))
    mean, low, high = paired_interval(accs)
    got = metrics(parent)
    assert got["n_seeds"] == len(SEEDS)
    assert (got["test_acc_mean"], got["test_acc_ci_low"], got["test_acc_ci_high"]) == pytest.approx((mean, low, high))
    assert got["test_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    assert {"val_acc_mean", "test_loss_mean", "epochs_mean"} <= set(got)


def test_the_continual_parent_has_the_evaluation_summary(server, pipeline):
    """The evaluate job's summary.json (every continual metric over seeds) on the train job's parent."""
    parents = [r for r in by_level(runs_of(server, "continual"))["parent"]
               if not r["info"]["run_name"].startswith("tuning/")]  # a sweep's candidates: no evaluate step
    assert parents
    for parent in parents:
        name = parent["info"]["run_name"]
        summary = read_json(pipeline / "results" / "smoke" / "continual" / name / "summary.json")
        got = metrics(parent)
        assert got["n_seeds"] == len(summary["seeds"])
        assert "avg_acc" in summary["metrics"]
        for metric, values in summary["metrics"].items():
            for key, suffix in (("mean", "mean"), ("std", "std"), ("low", "ci_low"), ("high", "ci_high")):
                if values[key] is not None and math.isfinite(values[key]):
                    assert got[f"{metric}_{suffix}"] == pytest.approx(values[key]), (name, metric, key)


def dataset_inputs(api: str, run_id: str) -> list[dict]:
    return get(api, "runs/get", run_id=run_id)["run"]["inputs"].get("dataset_inputs", [])


def test_training_runs_have_their_dataset_as_an_input(server, pipeline):
    """Each seed run its dataset (digest: the data's md5); each parent the datasets of its seeds."""
    for name in STUDIES:
        runs, seeds_data = by_level(runs_of(server, name)), {}
        for run in runs["seed"]:
            [entry] = dataset_inputs(server, run["info"]["run_id"])
            dataset = entry["dataset"]
            assert dataset["digest"] == tags(run)["dataset_md5"], run["info"]["run_name"]
            assert {"key": "mlflow.data.context", "value": "train"} in entry["tags"]
            assert dataset["source_type"] == "local"
            seeds_data.setdefault(tags(run)["mlflow.parentRunId"], set()).add(dataset["digest"])
        for parent in runs["parent"]:
            digests = [i["dataset"]["digest"] for i in dataset_inputs(server, parent["info"]["run_id"])]
            assert sorted(digests) == sorted(seeds_data[parent["info"]["run_id"]]), parent["info"]["run_name"]
    teacher = next(r for r in runs_of(server, "teachers") if r["info"]["run_name"] == "mnist1d_mlp/seed0")
    dataset = dataset_inputs(server, teacher["info"]["run_id"])[0]["dataset"]
    assert dataset["name"] == "mnist1d" and dataset["digest"] == md5_tree(pipeline / "data" / "mnist1d")
    assert json.loads(dataset["source"]) == {"uri": str((pipeline / "data" / "mnist1d").resolve())}


def test_training_runs_have_system_metrics(server):
    """MLflow samples a run every tracking.system_metrics_interval seconds (the smoke profile: 1),
    logging nothing for a run shorter than that: some smoke runs are."""
    sampled = [r["info"]["run_name"] for name in STUDIES for r in by_level(runs_of(server, name))["seed"]
               if {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics(r))]
    assert sampled


def test_every_run_has_mlflows_source_tags(server, pipeline):
    rules = {log.stem for log in (pipeline / "logs" / "smoke").glob("*.log")}  # one log per rule
    for name in (*STUDIES, "report"):
        for run in runs_of(server, name):
            t = tags(run)
            assert t["mlflow.source.type"] == "LOCAL" and t["mlflow.user"], run["info"]["run_name"]
            assert t["mlflow.source.name"] in rules, run["info"]["run_name"]  # the job's Snakemake rule
            # the test's copy of the workflow is no git checkout: no commit to show (tests/test_tracking)
            commit = t["git_commit"].removesuffix("+dirty")
            assert t.get("mlflow.source.git.commit") == (None if commit == "unknown" else commit)
    teacher = next(r for r in runs_of(server, "teachers") if r["info"]["run_name"] == "digits_convnet/seed1")
    assert tags(teacher)["mlflow.source.name"] == "pretrain_digits_convnet"
