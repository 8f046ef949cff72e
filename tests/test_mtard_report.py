"""The MTARD report section from hand-made results: AutoAttack columns beside PGD-20, the
baselines' rows (TRADES, RSLAD) and MTARD with and without EBB, teacher rows."""
from __future__ import annotations

import pandas as pd

from lifelearn.io import write_json
from lifelearn.report.sections.mtard import section

NAMES = ["mtard_no_ebb", "rslad", "natural", "mtard", "trades", "ard", "pgd_at"]
CONFIG = {"mtard": {"dataset": "mnist1d", "student": {"arch": "convnet"}, "teachers": {"robust": "tch"},
                    "eval_attack": {"eps": 0.03, "step_size": 0.003, "steps": 20},
                    "autoattack": {"eps": 0.03, "samples": 500}}}


def _row(name, seed, root, aa=True):
    base = 0.1 * NAMES.index(name)
    row = {"study": "mtard", "stage": "mtard", "name": name, "seed": seed, "result_dir": str(root / name / f"seed{seed}"),
           "test_clean_acc": 0.8, "test_pgd_acc": 0.3 + base / 10, "test_weighted_robust_acc": 0.55, "train_seconds": 2.0}
    if aa:
        row |= {"test_autoattack_clean_acc": 0.82, "test_autoattack_acc": 0.2 + base / 10,
                "test_autoattack_weighted_robust_acc": 0.51 + base / 20, "test_autoattack_acc_apgd_ce": 0.3,
                "test_autoattack_acc_apgd_t": 0.2 + base / 10, "test_autoattack_samples": 500.0,
                "test_autoattack_seconds": 12.0}
    return row


def test_section_has_autoattack_columns_every_method_and_the_teachers(tmp_path):
    root = tmp_path / "results" / "default" / "mtard"
    write_json(tmp_path / "results/default/teachers/tch/seed0/metrics.json",
               {"seed": 0, "metrics": {"test_acc": 0.9, "test_pgd_acc": 0.5, "test_autoattack_acc": 0.4,
                                       "test_autoattack_clean_acc": 0.9, "test_autoattack_seconds": 40.0}})
    df = pd.DataFrame([_row(n, s, root) for n in NAMES for s in (0, 1)])
    text = section(df, pd.DataFrame(columns=["name", "seed", "epoch"]), tmp_path / "report", CONFIG)
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert "PGD acc (%)" in header and "AutoAttack acc (%)" in header and "weighted robust acc, AA (%)" in header
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == ["natural", "pgd_at", "trades", "ard", "rslad", "mtard", "mtard_no_ebb", "robust teacher (tch)"]
    assert "on the first 500 test samples" in text and "not run: fab-t, square" in text
    assert "MTARD without EBB minus mtard" in text and "weighted (AutoAttack)" in text
    assert "robust teacher (tch): 90.0% clean / 40.0% AutoAttack." in text
    assert (tmp_path / "report" / "figures" / "mtard-accuracy-vs-robustness.png").stat().st_size > 0


def test_section_without_autoattack_results_stays_on_pgd(tmp_path):
    root = tmp_path / "results" / "default" / "mtard"
    df = pd.DataFrame([_row(n, s, root, aa=False) for n in ("natural", "pgd_at", "mtard") for s in (0, 1)])
    text = section(df, pd.DataFrame(columns=["name", "seed", "epoch"]), tmp_path / "report",
                   {"mtard": {k: v for k, v in CONFIG["mtard"].items() if k != "autoattack"}})
    assert "AutoAttack acc" not in text and "Clean vs PGD accuracy" in text
    assert "PGD-AT 80.0% / 36.0%" in text
