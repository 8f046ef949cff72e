"""The MTARD study's jobs run in-process at tiny size: every method of the default profile
(the paper's baselines, MTARD with and without EBB) trains, and every student gets PGD-20
and AutoAttack metrics on test; the robust teacher too."""
from __future__ import annotations

import json

import pytest

from lifelearn.config import load_config
from lifelearn.jobs import Layout
from lifelearn.studies import study

from conftest import REPO, run_job

TINY_AA = {"samples": 24, "iterations": 3, "targets": 1, "square_queries": 5}


def _config():
    cfg = load_config(REPO / "config", "smoke")
    for name in ("mnist1d_convnet", "mnist1d_convnet_pgd"):
        cfg["teachers"][name] |= {"dataset": "digits", "seeds": [0], "train": cfg["teachers"][name]["train"] | {
            "epochs": 1}}
    cfg["teachers"]["mnist1d_convnet_pgd"]["autoattack"] |= TINY_AA
    cfg["mtard"] |= {"dataset": "digits", "seeds": [0], "autoattack": cfg["mtard"]["autoattack"] | TINY_AA}
    for entry in cfg["mtard"]["methods"].values():
        entry.pop("tune", None)  # the final jobs only (the sweeps are tested in test_tuning)
    cfg["claims"] = []
    return cfg


def _run(job, out, data_dir, ctx):
    from lifelearn.data.arrays import DATASET_FILES

    inputs = {k: [out / p for p in v] for k, v in job.inputs.items()} | {"data": [data_dir / f for f in DATASET_FILES]}
    run_job(job.study, job.step, job.name, job.spec, job.seeds, ctx, inputs,
            {k: [out / p for p in v] for k, v in job.outputs.items()})
    return json.loads((out / job.outputs["metrics"][0]).read_text())["metrics"]


def test_every_method_trains_and_gets_autoattack_on_test(tmp_path, digits_dir, run_ctx):
    cfg = _config()
    layout = Layout("t")
    teachers = [j for j in study("teachers").jobs(cfg, layout) if j.name in cfg["mtard"]["teachers"].values()]
    metrics, jobs = {}, {}
    for job in teachers + study("mtard").jobs(cfg, layout):
        metrics[(job.study, job.name)] = _run(job, tmp_path, digits_dir, run_ctx)
        jobs[job.name] = job
    names = {n for s, n in metrics if s == "mtard"}
    assert names == {"natural", "pgd_at", "trades", "ard", "rslad", "mtard", "mtard_no_ebb"}
    for (st, name), m in metrics.items():
        if st == "teachers" and name == "mnist1d_convnet":
            assert "test_autoattack_acc" not in m  # no eval_attack, no autoattack
            continue
        assert m["test_autoattack_samples"] == 24, name
        assert 0 <= m["test_autoattack_acc"] <= m["test_autoattack_clean_acc"] <= 1, name
        assert "test_autoattack_acc_square" in m  # digits are 8x8 images: Square runs
        assert 0 <= m["test_pgd_acc"] <= m["test_clean_acc"] + 1e-9, name
    import pandas as pd

    history = {n: pd.read_csv(tmp_path / jobs[n].outputs["history"][0]) for n in ("mtard", "mtard_no_ebb")}
    assert (history["mtard_no_ebb"][["tau_adv", "tau_nat"]] == 1.0).all().all()  # EBB off: both at 1
    assert (history["mtard"]["tau_nat"] != 1.0).any() or (history["mtard"]["tau_adv"] != 1.0).any()
