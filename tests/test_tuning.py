"""Hyper-parameter selection on the validation split (lifelearn.tuning, issue 13): grids,
selection, budgets, the planned jobs, the config's tune blocks, and a tuning sweep run
in-process whose choice does not move when the test split is poisoned."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from lifelearn import tuning
from lifelearn.config import load_config
from lifelearn.io import md5_file
from lifelearn.jobs import JobSpec, Layout
from lifelearn.studies import study

TUNE = {"grid": {"alpha": [0.5, 0.9], "tau": [2.0, 4.0]}, "metric": "val_acc", "seeds": [3]}


def test_points_are_every_combination_in_grid_order():
    spec = {"m": {"alpha": 0.9, "tau": 4.0}}
    assert tuning.points(TUNE, spec, ("m",), "m") == [
        {"alpha": 0.5, "tau": 2.0}, {"alpha": 0.5, "tau": 4.0}, {"alpha": 0.9, "tau": 2.0}, {"alpha": 0.9, "tau": 4.0}]


def test_points_reach_nested_keys_and_reject_unknown_or_empty_ones():
    spec = {"method": {"ebb": {"step": 0.001}, "nlb": {"step": 0.025}}, "train": {"lr": 0.1}}
    grid = {"grid": {"ebb.step": [1, 2]}, "metric": "val_acc", "seeds": [0]}
    point = tuning.points(grid, spec, ("method",), "m")[1]
    assert tuning.apply_point(spec, ("method",), point)["method"] == {"ebb": {"step": 2}, "nlb": {"step": 0.025}}
    assert spec["method"]["ebb"]["step"] == 0.001  # not mutated
    with pytest.raises(ValueError, match=r"mtard.methods.ard.tune.grid: 'alpah' is not a key"):
        tuning.points({"grid": {"alpah": [1]}}, {"m": {"alpha": 1}}, ("m",), "mtard.methods.ard")
    with pytest.raises(ValueError, match=r"m.tune.grid.alpha: a non-empty list"):
        tuning.points({"grid": {"alpha": []}}, {"m": {"alpha": 1}}, ("m",), "m")


def test_train_keys_reach_the_methods_training_settings():
    """`train.lr` is the study's training section for a method entry without its own
    `train`, and the run's own `train` for a continual run (entry = the whole spec)."""
    spec = {"method_cfg": {"alpha": 0.9}, "train": {"lr": 0.1, "epochs": 3}}
    out = tuning.apply_point(spec, ("method_cfg",), {"train.lr": 0.01, "alpha": 0.5})
    assert out == {"method_cfg": {"alpha": 0.5}, "train": {"lr": 0.01, "epochs": 3}}
    run = {"strategies": {"l2": {"weight": 1.0}}, "train": {"lr": 0.1}}
    assert tuning.apply_point(run, (), {"train.lr": 0.3})["train"]["lr"] == 0.3


def test_select_takes_the_best_mean_over_seeds_first_of_equals_and_never_nan():
    assert tuning.select([[0.5, 0.7], [0.8, 0.2], [0.6, 0.6]]) == 0  # means 0.6, 0.5, 0.6: the first 0.6
    assert tuning.select([[0.5], [0.4]], "min") == 1
    assert tuning.select([[math.nan], [0.1]]) == 1
    with pytest.raises(ValueError, match="no candidate has a finite"):
        tuning.select([[math.nan]])
    with pytest.raises(ValueError, match="tune.mode"):
        tuning.select([[1.0]], "best")


def test_budget_counts_points_seeds_and_epochs():
    assert tuning.budget(TUNE | {"epochs": 5}, 20) == {"points": 4, "seeds": [3], "epochs": 5, "runs": 4,
                                                        "epochs_total": 20}
    assert tuning.budget(TUNE, 20)["epochs"] == 20


def _make_job(spec, seeds, out_name, step, rule):
    return JobSpec("s", step, "kd", rule, spec=spec, seeds=seeds,
                   outputs={"metrics": [f"r/{out_name}/seed{s}/metrics.json" for s in seeds]})


def test_plan_gives_candidates_a_selection_and_a_final_job_reading_it():
    spec = {"train": {"epochs": 20}, "method_cfg": {"alpha": 0.9, "tau": 4.0, "tune": TUNE | {"epochs": 5}}}
    jobs = tuning.plan("s_kd", "kd", spec, ("method_cfg",), [0, 1], "s.methods.kd", _make_job, "r/tuning", per_job=1)
    assert [j.rule for j in jobs] == ["s_kd_tune0", "s_kd_tune1", "s_kd_tune2", "s_kd_tune3", "s_kd_select", "s_kd"]
    [cand] = jobs[3].spec["candidates"]
    assert jobs[3].step == tuning.SWEEP and jobs[3].seeds == [3] and cand["train"]["epochs"] == 5
    assert cand["method_cfg"] == {"alpha": 0.9, "tau": 4.0} and cand["tuning"]["index"] == 3
    assert jobs[3].report_inputs() == {} and jobs[3].outputs == {"c3_metrics": ["r/tuning/kd/c3/seed3/metrics.json"]}
    select = jobs[4]
    assert select.inputs["candidates"] == [f"r/tuning/kd/c{i}/seed3/metrics.json" for i in range(4)]
    final = jobs[5]
    assert final.seeds == [0, 1] and final.spec["train"]["epochs"] == 20
    assert final.spec["method_cfg"] == {"alpha": tuning.TUNED, "tau": tuning.TUNED}  # no default leaks in
    assert final.inputs["selection"] == ["r/tuning/kd/selection.json"]


@pytest.mark.parametrize("per_job, groups", [(0, [[0, 1, 2, 3]]), (3, [[0, 1, 2], [3]]), (4, [[0, 1, 2, 3]])])
def test_sweep_jobs_hold_per_job_candidates_each_with_its_own_outputs(per_job, groups):
    """tuning.candidates_per_job: 0 puts the whole grid in one job; each candidate keeps its
    own outputs (c<i>_<key>), and sweep_candidates gives back each one's job and paths."""
    from lifelearn.jobs import Job, Paths

    spec = {"train": {"epochs": 20}, "method_cfg": {"alpha": 0.9, "tau": 4.0, "tune": TUNE}}
    jobs = tuning.plan("s_kd", "kd", spec, ("method_cfg",), [0], "s.methods.kd", _make_job, "r/tuning", per_job)
    sweeps = [j for j in jobs if j.step == tuning.SWEEP]
    assert [j.rule for j in sweeps] == [f"s_kd_tune{j}" for j in range(len(groups))]
    assert [[c["tuning"]["index"] for c in j.spec["candidates"]] for j in sweeps] == groups
    single = {j.spec["candidates"][0]["tuning"]["index"]: j for j in tuning.plan(
        "s_kd", "kd", spec, ("method_cfg",), [0], "s.methods.kd", _make_job, "r/tuning", 1) if j.step == tuning.SWEEP}
    for sweep in sweeps:
        job = Job(sweep.study, sweep.step, sweep.name, sweep.spec, sweep.seeds, ctx=None)
        paths = Paths({"data": ["d"]}, {k: [Path(f) for f in v] for k, v in sweep.outputs.items()})
        for cand_job, cand_paths in tuning.sweep_candidates(job, paths):
            i = cand_job.spec["tuning"]["index"]
            alone = single[i]
            assert cand_job.step == "tune" and [cand_job.spec] == alone.spec["candidates"]
            assert cand_paths.outputs == {"metrics": [Path(f"r/tuning/kd/c{i}/seed3/metrics.json")]}
            assert cand_paths.inputs == {"data": ["d"]} and tuning.run_name(cand_job) == f"tuning/kd/c{i}"
    with pytest.raises(ValueError, match="tuning.candidates_per_job: 0"):
        tuning.plan("s_kd", "kd", spec, ("method_cfg",), [0], "s.methods.kd", _make_job, "r/tuning", -1)


def test_sweep_candidates_must_read_the_same_inputs():
    def make_job(spec, seeds, out_name, step, rule):  # a grid key that changes an input: refused
        return JobSpec("s", step, "kd", rule, spec=spec, seeds=seeds, inputs={"t": [f"t{spec['method_cfg']['tau']}"]},
                       outputs={"metrics": [f"r/{out_name}/metrics.json"]})

    spec = {"train": {"epochs": 2}, "method_cfg": {"alpha": 0.9, "tau": 4.0, "tune": TUNE}}
    with pytest.raises(ValueError, match="s_kd_tune1: tuning candidates of one sweep differ in inputs"):
        tuning.plan("s_kd", "kd", spec, ("method_cfg",), [0], "s.methods.kd", make_job, "r/tuning")


def test_plan_without_a_tune_block_is_the_one_job_unchanged():
    spec = {"train": {"epochs": 2}, "method_cfg": {"alpha": 0.9}}
    [job] = tuning.plan("s_kd", "kd", spec, ("method_cfg",), [0], "s.methods.kd", _make_job, "r/tuning")
    assert job.spec == spec and "selection" not in job.inputs


def test_a_control_borrows_the_selection_of_the_entry_it_controls():
    """`tune_from`: the control's grid keys read TUNED and its selection is the source's file."""
    real = {"train": {"lr": 0.1}, "tune": TUNE | {"grid": {"train.lr": [0.03, 0.1]}}}
    control = {"train": {"lr": 0.1}, "tune_from": "real"}
    entries = {"real": real, "control": control}
    spec, path = tuning.borrowed_selection(entries, "control", control, (), "c.runs.control", "r/tuning")
    assert spec["train"]["lr"] == tuning.TUNED and path == "r/tuning/real/selection.json"
    assert tuning.borrowed_selection(entries, "real", real, (), "c.runs.real", "r/tuning") == (real, None)
    with pytest.raises(ValueError, match=r"c.runs.control.tune_from: 'nope' is not an entry with a tune block"):
        tuning.borrowed_selection(entries, "control", control | {"tune_from": "nope"}, (), "c.runs.control", "r")
    with pytest.raises(ValueError, match="not both"):
        tuning.borrowed_selection(entries, "control", control | {"tune": TUNE}, (), "c.runs.control", "r")


def test_claims_between_tuned_methods_need_the_same_budget():
    claims = [{"id": "a_beats_b", "study": "s", "a": "a", "b": "b"}]
    tunes = {"a": TUNE, "b": TUNE | {"grid": {"tau": [1.0, 2.0, 4.0]}}}
    with pytest.raises(ValueError, match=r"claim 'a_beats_b': a and b must have the same tuning budget"):
        tuning.check_budgets(claims, tunes, {"a": 10, "b": 10}, "s")
    tuning.check_budgets(claims, {"a": TUNE, "b": TUNE | {"grid": {"tau": [1, 2, 3, 4]}}}, {"a": 10, "b": 10}, "s")
    with pytest.raises(ValueError, match="same tuning budget"):
        tuning.check_budgets(claims, {"a": TUNE, "b": TUNE | {"epochs": 3}}, {"a": 10, "b": 10}, "s")


@pytest.mark.parametrize("profile", ["default", "smoke", "paper"])
def test_the_papers_baselines_are_tuned_with_the_budget_of_their_method(profile):
    """Acceptance: EWC and L2 weights, ARD tau and alpha, KD alpha and tau have tune blocks;
    every claim between two tuned methods has equal budgets (planning checks it)."""
    cfg = load_config("config", profile)
    jobs = [j for name in cfg["studies"] for j in study(name).jobs(cfg, Layout(profile))]
    selects = {(j.study, j.name): j.spec for j in jobs if j.step == "select"}
    grids = {key: set(spec["grid"]) for key, spec in selects.items()}
    assert grids[("continual", "pt_lwf_l2")] == {"strategies.l2.weight"}
    assert grids[("continual", "pt_lwf_ewc")] == {"strategies.ewc.weight"}
    if profile != "smoke":  # the smoke profile tunes one key per method, two points
        assert grids[("mtard", "ard")] == {"alpha", "tau"}
        assert grids[("tgeo_kd", "kd")] == {"alpha", "tau", "train.weight_decay"}
        assert grids[("tgeo_kd", "ce")] == {"train.lr", "train.weight_decay"}
    for claim in cfg["claims"]:
        a, b = (claim["study"], claim["a"]), (claim["study"], claim.get("b"))
        if a in selects and b in selects:
            assert {k: selects[a]["budget"][k] for k in ("points", "seeds", "epochs")} == \
                   {k: selects[b]["budget"][k] for k in ("points", "seeds", "epochs")}, claim["id"]
    assert all(spec["metric"].startswith("val_") for spec in selects.values())


# ------------------------------------------------------------------ a sweep, run in-process
def _teacher(data_dir, path):
    """An untrained MLP as the teacher: the sweep only needs one to distil."""
    import torch

    from lifelearn.data import load_dataset
    from lifelearn.models import build_model
    from lifelearn.models.checkpoint import save_model

    ds = load_dataset(data_dir)
    torch.manual_seed(0)
    spec = {"arch": "mlp", "hidden": [16]}
    save_model(path, build_model(spec, ds.input_shape, ds.num_classes, ds.mean, ds.std), spec, ds.input_shape,
               ds.num_classes)


def _sweep(out, data_dir, teacher, ctx, per_job=0):
    """tgeo_kd's kd, tuned over 2 alphas x 1 seed (`per_job` candidates a job), then its
    final job, run in this process on `data_dir` with outputs under `out`. Returns the
    planned jobs."""
    from conftest import run_job
    from lifelearn.data.arrays import DATASET_FILES

    cfg = load_config("config", "smoke")
    cfg["teachers"]["mnist1d_convnet"]["seeds"] = [0]
    cfg["tgeo_kd"] |= {"dataset": "digits", "seeds": [0], "methods": {"kd": {"alpha": 0.9, "tau": 4.0, "tune": {
        "grid": {"alpha": [0.1, 0.9]}, "metric": "val_acc", "seeds": [0]}}}}
    cfg["claims"] = []
    cfg["tuning"] = {"candidates_per_job": per_job}
    jobs = study("tgeo_kd").jobs(cfg, Layout("smoke"))
    for job in jobs:
        inputs = {k: [out / p for p in v] for k, v in job.inputs.items()} | {
            "teachers": [teacher] * len(job.seeds), "data": [data_dir / f for f in DATASET_FILES]}
        run_job("tgeo_kd", job.step, job.name, job.spec, job.seeds, ctx, inputs,
                {k: [out / p for p in v] for k, v in job.outputs.items()})
    return jobs


def test_a_sweep_selects_on_val_and_a_poisoned_test_split_changes_nothing(tmp_path, digits_dir, run_ctx):
    teacher = tmp_path / "teacher.pt"
    _teacher(digits_dir, teacher)
    jobs = _sweep(tmp_path / "clean", digits_dir, teacher, run_ctx)
    assert [j.step for j in jobs] == [tuning.SWEEP, "select", "train"]
    selection = json.loads((tmp_path / "clean" / jobs[1].outputs["selection"][0]).read_text())
    assert selection["split"] == "val" and len(selection["scores"]) == 2
    assert selection["chosen"] == selection["points"][tuning.select(selection["scores"])]
    candidate = json.loads((tmp_path / "clean" / jobs[0].outputs["c0_metrics"][0]).read_text())["metrics"]
    assert "val_acc" in candidate and not any(k.startswith("test_") for k in candidate)
    final = json.loads((tmp_path / "clean" / jobs[2].outputs["metrics"][0]).read_text())["metrics"]
    assert 0 <= final["test_acc"] <= 1

    poisoned_data = tmp_path / "poisoned-data"
    shutil.copytree(digits_dir, poisoned_data)
    # garbage of another shape, labels out of range: a read of them would fail or move a score
    np.save(poisoned_data / "x_test.npy", np.full((7, 1, 3), 255, dtype=np.uint8))
    np.save(poisoned_data / "y_test.npy", np.full(7, 999, dtype=np.int64))
    # recorded as the dataset's own (meta.json's md5s): a test split that differs, not a damaged
    # file, which every job refuses, a tuning one too (test_data: the integrity check)
    meta = json.loads((poisoned_data / "meta.json").read_text())
    meta["md5"] |= {f: md5_file(poisoned_data / f) for f in ("x_test.npy", "y_test.npy")}
    (poisoned_data / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RuntimeError, match="shape"):  # the final job does read test: the poison is real
        _sweep(tmp_path / "poisoned", poisoned_data, teacher, run_ctx)
    again = json.loads((tmp_path / "poisoned" / jobs[1].outputs["selection"][0]).read_text())
    assert again["scores"] == selection["scores"] and again["chosen"] == selection["chosen"]

    # the same candidates, each in a job of its own: the same validation scores, bit for bit
    alone = _sweep(tmp_path / "alone", digits_dir, teacher, run_ctx, per_job=1)
    assert [j.step for j in alone] == [tuning.SWEEP, tuning.SWEEP, "select", "train"]
    single = json.loads((tmp_path / "alone" / alone[2].outputs["selection"][0]).read_text())
    assert single["scores"] == selection["scores"] and single["chosen"] == selection["chosen"]
    for i in range(2):
        one, grouped = ({k: v for k, v in json.loads(
            (tmp_path / d / f"results/smoke/tgeo_kd/tuning/kd/c{i}/seed0/metrics.json").read_text())["metrics"].items()
            if not k.endswith("_seconds")} for d in ("alone", "clean"))  # all but the wall times
        assert one == grouped and len(one) > 5


def test_a_choice_at_the_edge_of_its_grid_is_flagged():
    from lifelearn.report.selection import edge_keys, method_table

    sel = {"study": "s", "name": "ce", "metric": "val_acc", "mode": "max", "seeds": [0],
           "grid": {"train.lr": [0.01, 0.03, 0.1], "wd": [0.0, 0.1]}, "points": [{"train.lr": 0.1, "wd": 0.0}],
           "scores": [[0.5]], "scores_mean": [0.5], "chosen_index": 0, "chosen": {"train.lr": 0.1, "wd": 0.0},
           "budget": {"points": 6, "seeds": [0], "epochs": 2, "runs": 6, "epochs_total": 12}}
    assert edge_keys(sel) == ["train.lr"]  # two-value keys have no inside
    assert "**At the edge of its grid:** `train.lr`" in method_table(sel)
    assert edge_keys(sel | {"chosen": {"train.lr": 0.03, "wd": 0.1}}) == []
