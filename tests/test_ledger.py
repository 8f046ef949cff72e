"""Protocol ledger: built from a hand-made config (its plan) and hand-made results."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lifelearn.io import write_json, write_text
from lifelearn.jobs import JobSpec
from lifelearn.report.ledger import REPORTED_EPOCH, checkpoint_text, claim_ledger, ledger_section, plan, setting, upstream

ATTACK = {"eps": 0.1, "step_size": 0.01, "steps": 10, "random_start": "uniform"}
CONFIG = {
    "profile": "t", "studies": ["teachers", "tgeo_kd"], "seeds": [0, 1],
    "teachers": {"tch": {"dataset": "mnist1d", "model": {"arch": "mlp"}, "seeds": [0, 1], "method": "pgd_at",
                         "train": {"epochs": 3, "batch_size": 16, "optimizer": "sgd", "lr": 0.1},
                         "attack": ATTACK, "eval_attack": ATTACK | {"steps": 20}}},
    "tgeo_kd": {"dataset": "mnist1d", "teacher": "tch", "student": {"arch": "mlp"}, "seeds": [0, 1],
                "train": {"epochs": 7, "batch_size": 32, "optimizer": "adam", "lr": 0.01},
                "methods": {"kd": {"alpha": 0.9, "tau": 4.0}, "ce": {}}},
}
KD_BEATS_CE = {"id": "kd_beats_ce", "study": "tgeo_kd", "metric": "test_acc", "a": "kd", "b": "ce"}
TEACHER = {"id": "robust_teacher", "study": "teachers", "metric": "test_pgd_acc", "a": "tch", "value": 0.5}


def results() -> pd.DataFrame:
    rows = [("tgeo_kd", "tgeo_kd", "kd", 0), ("tgeo_kd", "tgeo_kd", "kd", 1), ("tgeo_kd", "tgeo_kd", "ce", 0),
            ("teachers", "pretrain", "tch", 0)]
    return pd.DataFrame([{"study": st, "stage": sg, "name": n, "seed": s, "test_acc": 0.5,
                          "result_dir": f"results/t/{st}/{n}/seed{s}"} for st, sg, n, s in rows])


def files(root):
    write_text(root / "checkpoints/t/teachers/tch/seed0.pt", "abc")  # md5("abc") = 900150983cd2...
    write_json(root / "data/mnist1d/meta.json", {"splits": {"train": 3600, "val": 400, "test": 1000}})


def test_ledger_of_a_distillation_claim(tmp_path):
    files(tmp_path)
    ledger = claim_ledger(KD_BEATS_CE, results(), plan(CONFIG), tmp_path / "data", tmp_path)
    assert list(ledger) == ["A `kd`", "B `ce`"]
    kd, ce = ledger.values()
    assert kd["reported epoch"] == REPORTED_EPOCH and kd["selection split"] == "none: hyper-parameters as configured"
    assert (kd["seeds"], ce["seeds"]) == ("0, 1", "0")
    assert (kd["epochs"], kd["batch size"], kd["training attack"]) == ("7", "32", "none")
    assert kd["test samples"] == "mnist1d: 1000"
    assert kd["teacher / expert checkpoints (md5)"] == \
        "checkpoints/t/teachers/tch/: seed0 `900150983cd2`, seed1 `not found`"


def test_ledger_names_the_attacks_and_a_tuned_method(tmp_path):
    config = CONFIG | {"tgeo_kd": CONFIG["tgeo_kd"] | {"methods": {"kd": {"alpha": 0.9, "tau": 4.0,
                                                                            "tune": {"grid": {"alpha": [0.5, 0.9]},
                                                                                     "metric": "val_acc",
                                                                                     "seeds": [0]}}}}}
    ledger = claim_ledger(TEACHER, results(), plan(config), tmp_path / "data", tmp_path)
    (teacher,) = ledger.values()
    assert teacher["training attack"] == "PGD-10, eps 0.1, step 0.01, uniform start"
    assert teacher["evaluation attack"] == "PGD-20, eps 0.1, step 0.01, uniform start"
    assert teacher["test samples"] == "n/a" and teacher["teacher / expert checkpoints (md5)"] == "none"
    kd = claim_ledger(KD_BEATS_CE, results(), plan(config), tmp_path / "data", tmp_path)["A `kd`"]
    assert kd["selection split"].startswith("validation, `val_acc` (2 points x 1 seed(s) (0) x ")


def test_settings_come_from_upstream_jobs_and_the_walk_stops_at_checkpoints():
    def job(name, spec, inputs, outputs):
        return JobSpec("s", name, name, name, spec, [0], outputs, inputs=inputs)
    pre = job("pre", {"train": {"epochs": 1}}, {}, {"checkpoints": ["c/pre.pt"]})
    train = job("train", {"train": {"epochs": 5}, "eval": {"every": 2, "subset": 9}},
                {"init": ["c/pre.pt"]}, {"metrics": ["r/train/m.json"]})
    evaluate = job("eval", {"windows": [10]}, {"runs": ["r/train/m.json"]}, {"metrics": ["r/eval/e.json"]})
    chain = upstream(evaluate, [pre, train, evaluate])
    assert chain == [evaluate, train] and setting(chain, "train") == {"epochs": 5}
    assert checkpoint_text(chain, Path("/nonexistent")) == "c/: pre `not found`"


def test_ledger_section_is_collapsible_per_claim(tmp_path):
    files(tmp_path)
    gone = {"id": "gone", "study": "tgeo_kd", "metric": "test_acc", "a": "tgeo", "b": "kd_missing"}
    text = ledger_section([KD_BEATS_CE, gone], results(), CONFIG, tmp_path)
    assert text.startswith("## Protocol ledger")
    assert "<details><summary><code>kd_beats_ce</code></summary>" in text and "`gone`: no results." in text
    assert "| epochs | 7 | 7 |" in text and "| seeds | 0, 1 | 0 |" in text


def test_ledger_names_autoattack_and_its_samples(tmp_path):
    files(tmp_path)
    teacher = CONFIG["teachers"]["tch"] | {"autoattack": {"eps": 0.1, "samples": 300}}
    ledger = claim_ledger(TEACHER, results(), plan(CONFIG | {"teachers": {"tch": teacher}}), tmp_path / "data",
                          tmp_path)
    (row,) = ledger.values()
    assert row["evaluation attack"] == ("PGD-20, eps 0.1, step 0.01, uniform start; AutoAttack (standard L-inf, "
                                        "ART: apgd-ce, apgd-t, square; Square only on image inputs), eps 0.1")
    assert row["test samples"] == "mnist1d: 1000; AutoAttack: the first 300"
