"""Report: claim statistics by hand, result loading, and an end-to-end report."""
from __future__ import annotations

import math
import pkgutil
from importlib import import_module

import pandas as pd
import pytest

from lifelearn.io import read_json, write_json, write_text
from lifelearn.report import (
    evaluate_claim,
    evaluate_claims,
    load_histories,
    load_results,
    sections,
    write_report,
)
from lifelearn.report.sections import generic
from lifelearn.report.writer import DATA_DIFFERS, section_of
from lifelearn.stats import paired_interval

T_975_DF2 = 4.302652729911275
A = {0: 0.90, 1: 0.92, 2: 0.94}
B = {0: 0.80, 1: 0.85, 2: 0.80}


def frame(methods: dict[str, dict[int, float]], study="teachers", metric="test_acc"):
    rows = [{"study": study, "stage": "pretrain", "name": name, "seed": seed, metric: v}
            for name, per_seed in methods.items() for seed, v in per_seed.items()]
    return pd.DataFrame(rows)


def claim(**kw):
    return {"id": "c", "study": "teachers", "metric": "test_acc", "a": "A", "b": "B",
            "margin": 0.0, "direction": "greater"} | kw


def hand_interval(diffs):
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = T_975_DF2 * sd / math.sqrt(n)
    return mean, mean - half, mean + half


HAND = hand_interval([0.10, 0.07, 0.14])


def test_paired_interval_by_hand():
    mean, low, high = paired_interval([0.10, 0.07, 0.14])
    assert mean == pytest.approx(0.1033333333333, abs=1e-9)
    assert (mean, low, high) == pytest.approx(HAND, abs=1e-9)
    assert paired_interval([0.5]) == (0.5, None, None)


@pytest.mark.parametrize("margin, verdict, won", [
    (0.0, "holds", 3), (0.2, "does not hold", 0), (0.1, "inconclusive", 1)])
def test_greater_verdicts(margin, verdict, won):
    r = evaluate_claim(claim(margin=margin), frame({"A": A, "B": B}))
    assert r["verdict"] == verdict and r["seeds_won"] == won and r["n"] == 3
    assert (r["mean_diff"], r["ci_low"], r["ci_high"]) == pytest.approx(HAND, abs=1e-9)
    assert r["mean_a"] == pytest.approx(0.92) and r["mean_b"] == pytest.approx(0.816666666667)


def test_interval_touching_margin_is_inconclusive():
    df = frame({"A": A, "B": B})
    r = evaluate_claim(claim(), df)
    low, high = r["ci_low"], r["ci_high"]  # exact bounds, margin placed on them
    assert evaluate_claim(claim(margin=low), df)["verdict"] == "inconclusive"
    assert evaluate_claim(claim(margin=high), df)["verdict"] == "inconclusive"
    assert evaluate_claim(claim(margin=high, direction="less"), df)["verdict"] == "inconclusive"


def test_less_direction():
    df = frame({"A": A, "B": B})
    assert evaluate_claim(claim(a="B", b="A", direction="less"), df)["verdict"] == "holds"
    assert evaluate_claim(claim(a="B", b="A", direction="less", margin=-0.2), df)["verdict"] \
        == "does not hold"
    r = evaluate_claim(claim(direction="less", margin=0.2), df)
    assert r["verdict"] == "holds" and r["seeds_won"] == 3


def test_pairs_only_common_seeds():
    a = A | {5: 0.10}           # seed 5 has no B partner
    b = {1: B[1], 2: B[2], 7: 0.99}  # seed 0 missing, extra seed 7
    r = evaluate_claim(claim(), frame({"A": a, "B": b}))
    assert r["seeds"] == [1, 2] and r["n"] == 2
    assert r["mean_diff"] == pytest.approx((0.07 + 0.14) / 2, abs=1e-12)
    assert "unpaired seeds dropped" in r["note"]


def test_constant_value():
    r = evaluate_claim(claim(b=None, value=0.68, margin=0.1), frame({"A": A}))
    assert r["n"] == 3 and r["mean_b"] == 0.68 and r["verdict"] == "holds"
    assert r["mean_diff"] == pytest.approx(0.92 - 0.68, abs=1e-12)


def test_one_seed_is_inconclusive():
    r = evaluate_claim(claim(), frame({"A": {0: 0.9}, "B": {0: 0.8}}))
    assert r["verdict"] == "inconclusive" and r["ci_low"] is None and "1 seed" in r["note"]


def test_not_run():
    df = frame({"A": A})
    r = evaluate_claim(claim(), df)
    assert r["verdict"] == "not run" and "'B'" in r["note"]
    r = evaluate_claim(claim(study="distill"), df)
    assert r["verdict"] == "not run" and "distill" in r["note"]


def test_invalid_claims_raise():
    with pytest.raises(ValueError):
        evaluate_claim(claim(value=0.5), frame({"A": A, "B": B}))
    with pytest.raises(ValueError):
        evaluate_claims([claim(), claim()], frame({"A": A, "B": B}))


# ---------------------------------------------------------------- synthetic pipeline output

def write_run(root, study, stage, name, dataset, seed, test_acc, epochs=3):
    run = root / study / name / str(seed)
    write_json(run / "metrics.json", {
        "study": study, "stage": stage, "name": name, "seed": seed, "dataset": dataset,
        "model": name.split("_")[-1], "run_id": f"run-{name}-{seed}", "git_commit": "abc123",
        "metrics": {"test_acc": test_acc, "val_acc": test_acc - 0.01, "test_loss": 1 - test_acc,
                    "train_seconds": 10.0 + seed, "per_class_acc": [test_acc] * 3}})
    lines = ["epoch,train_loss,train_acc,val_loss,val_acc"]
    for e in range(epochs):
        frac, loss = (e + 1) / epochs, 1 / (e + 1)
        accs = test_acc * frac, (test_acc - 0.01) * frac
        lines.append(f"{e},{loss:.4f},{accs[0]:.4f},{loss:.4f},{accs[1]:.4f}")
    write_text(run / "history.csv", "\n".join(lines) + "\n")
    return run / "metrics.json", run / "history.csv"


@pytest.fixture
def runs(tmp_path):
    specs = [("teachers", "pretrain", "mnist1d_convnet", "mnist1d", A),
             ("teachers", "pretrain", "mnist1d_mlp", "mnist1d", {0: 0.70, 1: 0.66, 2: 0.68}),
             ("teachers", "pretrain", "digits_mlp", "digits", {0: 0.97, 1: 0.96}),
             ("distill", "kd", "kd_student", "mnist1d", {0: 0.85, 1: 0.86})]
    pairs = [write_run(tmp_path / "runs", st, sg, nm, ds, seed, acc)
             for st, sg, nm, ds, per_seed in specs for seed, acc in per_seed.items()]
    return [m for m, _ in pairs], [h for _, h in pairs]


def test_load_results(runs):
    df = load_results(reversed(runs[0]))
    assert len(df) == 10 and "per_class_acc" not in df
    assert list(df.columns[:7]) == ["study", "stage", "name", "seed", "dataset", "model", "run_id"]
    assert list(df["study"]) == ["distill"] * 2 + ["teachers"] * 8
    assert list(df["name"].iloc[2:4]) == ["digits_mlp"] * 2
    assert df["seed"].dtype == "int64"
    row = df[(df["name"] == "mnist1d_mlp") & (df["seed"] == 1)].iloc[0]
    assert row["test_acc"] == 0.66 and row["train_seconds"] == 11.0 and row["model"] == "mlp"


def test_load_histories_pairs_by_directory(runs):
    hist = load_histories(runs[1], runs[0])
    assert len(hist) == 10 * 3
    sub = hist[(hist["name"] == "mnist1d_mlp") & (hist["seed"] == 1)]
    assert list(sub["epoch"]) == [0, 1, 2] and set(sub["study"]) == {"teachers"}
    assert {"train_loss", "val_acc", "dataset"} <= set(hist.columns)


CLAIMS = [
    {"id": "mnist1d_cnn_beats_mlp", "study": "teachers",
     "source": "Greydanus 2020, MNIST-1D, Table 1: CNN 94% vs MLP 68%",
     "statement": "A ConvNet beats an MLP on MNIST-1D by more than 10 points of test accuracy",
     "metric": "test_acc", "a": "mnist1d_convnet", "b": "mnist1d_mlp", "margin": 0.10,
     "direction": "greater"},
    {"id": "kd_beats_scratch", "study": "distill", "statement": "KD beats scratch",
     "source": "Hinton 2015", "metric": "test_acc", "a": "kd_student", "b": "scratch_student"},
]


CLAIM_FIELDS = ["id", "study", "stage", "source", "statement", "metric", "a", "b", "value", "margin",
                "direction", "n", "seeds", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high",
                "seeds_won", "verdict", "note"]  # claims.json's fields before power and premises


def make_report(runs, tmp_path, status="match", captions=None):
    config = {"profile": "default", "claims": CLAIMS,
              "teachers": {"mnist1d_convnet": {
                  "dataset": "mnist1d", "model": {"arch": "convnet"}, "train": {"epochs": 3},
                  "seeds": [0, 1, 2]}}}
    dv = tmp_path / "data_version.json"
    write_json(dv, {"committed_md5": "d41d8", "status": status, "dvc_status": {},
                    "datasets": {"digits": "aaa", "mnist1d": "bbb"}})
    return write_report(config, runs[0], runs[1], dv, tmp_path / "report", captions)


def test_write_report_end_to_end(runs, tmp_path):
    readme = make_report(runs, tmp_path)
    text = readme.read_text(encoding="utf-8")
    assert "| mnist1d_cnn_beats_mlp | A ConvNet beats an MLP" in text
    assert "**holds**" in text and "**not run**" in text and "whole 95% Student-t" in text
    assert "## Teacher pretraining" in text and "### mnist1d" in text and "### digits" in text
    assert "| mnist1d_convnet | convnet | 3 | 92.00 ± 2.00 |" in text
    assert "## Study `distill`, stage `kd`" in text
    assert text.index("## Paper claims") < text.index("## Teacher pretraining") \
        < text.index("## Provenance")
    assert "produced at: `abc123`" in text and "`default`" in text and "run-kd_student-1" in text
    assert "```yaml" in text and "mnist1d_convnet:" in text and DATA_DIFFERS not in text
    figures = sorted((tmp_path / "report" / "figures").glob("*.png"))
    assert figures and all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    assert all(f"figures/{f.name}" in text for f in figures)
    claims = read_json(tmp_path / "report" / "claims.json")
    assert [c["verdict"] for c in claims] == ["holds", "not run"]
    assert set(CLAIM_FIELDS) <= set(claims[0]) and claims[0]["perm_p"] == 0.125
    assert [c["holm_verdict"] for c in claims] == ["inconclusive", "not run"]  # 3 seeds: p >= 1/8
    assert claims[0]["mde"] > 0 and claims[1]["mde"] is None and claims[0]["premises_failed"] == []


def test_write_report_is_deterministic(runs, tmp_path):
    first = make_report(runs, tmp_path).read_bytes()
    figs = {f.name: f.read_bytes() for f in (tmp_path / "report" / "figures").glob("*.png")}
    second = make_report(runs, tmp_path).read_bytes()
    assert first == second
    assert figs == {f.name: f.read_bytes() for f in (tmp_path / "report" / "figures").glob("*.png")}


def test_every_figure_gets_its_readme_caption_for_snakemake_report(runs, tmp_path):
    """The caption file of the report rule's report() flag: one block per figure it drew,
    the README's caption, and each figure named <study>-... (its category)."""
    readme = make_report(runs, tmp_path, captions=tmp_path / "report" / "figure-captions.rst")
    captions = (tmp_path / "report" / "figure-captions.rst").read_text()
    figures = sorted((tmp_path / "report" / "figures").glob("*.png"))
    assert figures and captions.count("{% if snakemake.wildcards.figure == ") == len(figures)
    for figure in figures:
        assert f'snakemake.wildcards.figure == "{figure.stem}"' in captions
        assert figure.stem.split("-", 1)[0] in {"teachers", "distill"}
    assert "Validation accuracy per epoch" in captions and "Validation accuracy per epoch" in readme.read_text()


def test_write_report_warns_when_data_differs(runs, tmp_path):
    text = make_report(runs, tmp_path, status="differs").read_text(encoding="utf-8")
    assert DATA_DIFFERS in text
    assert "regenerated data differs from the version recorded in data.dvc" in text


@pytest.mark.parametrize("study", sorted(m.name for m in pkgutil.iter_modules(sections.__path__)))
def test_a_study_is_written_by_its_section_module(study):
    assert section_of(study) is import_module(f"lifelearn.report.sections.{study}").section


@pytest.mark.parametrize("study", ["distill", "pretrain", "no.such.study"])
def test_a_study_without_a_module_gets_the_generic_section(study):
    assert section_of(study) is generic.section
