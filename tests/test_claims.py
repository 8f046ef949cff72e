"""Claims engine beyond the interval: premises, controls, power, permutation p, Holm."""
from __future__ import annotations

import copy

import pytest

from lifelearn.config import load_config, premise_order, validate_config
from lifelearn.report.claims import VERDICT_RULE, evaluate_claim, evaluate_claims
from lifelearn.report.writer import claims_section
from lifelearn.stats import seeds_needed, t_power

from conftest import REPO
from test_report import A, B, HAND, claim, frame

REVERSED = {"A": B, "B": A}           # A - B = -(0.10, 0.07, 0.14)
SD = 0.0351188458428425               # sample sd of (0.10, 0.07, 0.14), by hand: sqrt(0.0024667 / 2)
TEN = {"X": {s: 0.5 + 0.01 * s for s in range(10)}, "Y": {s: 0.4 for s in range(10)}}


def test_power_and_permutation_fields_by_hand():
    r = evaluate_claim(claim(), frame({"A": A, "B": B}))
    assert r["sd_diff"] == pytest.approx(SD, abs=1e-12)
    assert r["mde"] == pytest.approx(3.2640 * SD, abs=1e-4)     # 3 seeds: MDE = 3.264 sd
    assert (r["perm_p"], r["perm_method"]) == (0.125, "exact")  # only the identity flip: 1/2^3
    assert r["seeds_needed"] is None                           # holds: no seeds needed


def test_seeds_needed_for_an_inconclusive_claim():
    r = evaluate_claim(claim(margin=0.1), frame({"A": A, "B": B}))
    effect = HAND[0] - 0.1                                     # 0.00333: 0.0949 sd from the margin
    assert r["verdict"] == "inconclusive" and r["seeds_needed"] == seeds_needed(effect, SD)
    # normal approximation ((1.95996 + 0.84162) / 0.09492)^2 = 871.3 seeds; the t-test needs a few more
    assert 871 < r["seeds_needed"] < 880
    assert t_power(effect / SD, r["seeds_needed"] - 1) < 0.8 <= t_power(effect / SD, r["seeds_needed"])


def premises(first_requires):
    return [claim(id="dependent", a="A", b="B", requires=first_requires),
            claim(id="kd_beats_ce"), claim(id="reversed", a="B", b="A")]


def test_premise_that_holds_leaves_the_verdict():
    out = evaluate_claims(premises(["kd_beats_ce"]), frame({"A": A, "B": B}))
    assert [r["id"] for r in out] == ["dependent", "kd_beats_ce", "reversed"]  # given order kept
    assert [r["verdict"] for r in out] == ["holds", "holds", "does not hold"]
    assert out[0]["premises_failed"] == [] and out[0]["requires"] == ["kd_beats_ce"]


def test_premise_not_met_shows_the_premise_numbers():
    dependent = evaluate_claims(premises(["kd_beats_ce", "reversed"]), frame({"A": A, "B": B}))[0]
    assert dependent["verdict"] == "premise not met" and dependent["mean_diff"] == pytest.approx(HAND[0])
    (failed,) = dependent["premises_failed"]
    assert failed["id"] == "reversed" and failed["verdict"] == "does not hold"
    assert (failed["mean_diff"], failed["ci_low"], failed["ci_high"]) == pytest.approx(
        (-HAND[0], -HAND[2], -HAND[1]), abs=1e-9)
    assert "premise `reversed` does not hold: mean diff -0.1033 [-0.1906, -0.0161]" in dependent["note"]
    assert "own interval alone: holds" in dependent["note"]
    assert dependent["holm_verdict"] == "premise not met"


def test_premise_not_met_propagates_and_not_run_stays_not_run():
    claims = premises(["reversed"]) + [claim(id="second", requires=["dependent"]),
                                       claim(id="absent", a="Z", requires=["reversed"])]
    out = {r["id"]: r for r in evaluate_claims(claims, frame({"A": A, "B": B}))}
    assert out["second"]["verdict"] == "premise not met"
    assert out["second"]["premises_failed"][0]["verdict"] == "premise not met"
    assert out["absent"]["verdict"] == "not run" and "premise `reversed`" in out["absent"]["note"]


@pytest.mark.parametrize("requires, message", [
    (["nope"], "claim 'dependent' requires unknown claim 'nope'"),
    (["dependent"], "claim 'dependent': its premises form a cycle dependent -> dependent"),
])
def test_bad_premises_are_config_errors_naming_the_claim(requires, message):
    with pytest.raises(ValueError, match=message):
        evaluate_claims(premises(requires), frame({"A": A, "B": B}))


def test_premise_cycle_is_named_when_the_config_is_validated():
    cfg = copy.deepcopy(load_config(REPO / "config", "smoke"))
    by_id = {c["id"]: c for c in cfg["claims"]}
    by_id["kd_beats_ce"]["requires"] = ["tgeo_beats_kd"]
    with pytest.raises(ValueError, match="claim .tgeo_beats_kd.: its premises form a cycle tgeo_beats_kd -> kd_beats_ce -> tgeo_beats_kd"):
        validate_config(cfg, REPO / "config")


def test_premises_come_first_in_premise_order():
    claims = [{"id": "c", "requires": ["b"]}, {"id": "b", "requires": ["a"]}, {"id": "a"}, {"id": "d"}]
    assert [c["id"] for c in premise_order(claims)] == ["a", "b", "c", "d"]


def test_tgeo_kd_claims_require_kd_beats_ce():
    claims = {c["id"]: c for c in load_config(REPO / "config")["claims"]}
    assert all(claims[f"tgeo_beats_{b}"]["requires"] == ["kd_beats_ce"] for b in ("kd", "anl", "ada", "wls"))


def test_control_is_paired_like_a_baseline_and_named_as_a_control():
    df = frame({"A": A | {5: 0.3}, "CTRL": B})
    r = evaluate_claim(claim(b=None, control="CTRL"), df)
    assert r["verdict"] == "holds" and r["control"] == "CTRL" and r["b"] is None and r["seeds"] == [0, 1, 2]
    assert (r["mean_diff"], r["ci_low"], r["ci_high"]) == pytest.approx(HAND, abs=1e-9)
    assert r["note"] == "unpaired seeds dropped: A [5]"
    assert "| A - control `CTRL` > 0 |" in claims_section(evaluate_claims([claim(b=None, control="CTRL")], df))
    reversed_ = evaluate_claim(claim(b=None, control="CTRL"), frame({"A": B, "CTRL": A}))
    assert reversed_["verdict"] == "does not hold"
    assert evaluate_claim(claim(b=None, control="NONE"), df)["note"] == "no test_acc results for 'NONE'"
    with pytest.raises(ValueError, match="exactly one of 'b', 'control' and 'value'"):
        evaluate_claim(claim(control="CTRL"), df)


def test_holm_across_the_table_by_hand():
    # p: ten seeds all won -> 1/1024; three seeds all won -> 1/8; reversed -> 1 (every flip >= the sum)
    df = frame(TEN | {"A": A, "B": B})
    out = evaluate_claims([claim(id="ten", a="X", b="Y"), claim(id="three"), claim(id="rev", a="B", b="A")], df)
    assert [r["perm_p"] for r in out] == pytest.approx([1 / 1024, 0.125, 1.0])
    # Holm: sorted 1/1024, 1/8, 1 times 3, 2, 1 -> 0.00293, 0.25, 1.0
    assert [r["holm_p"] for r in out] == pytest.approx([3 / 1024, 0.25, 1.0])
    assert [r["verdict"] for r in out] == ["holds", "holds", "does not hold"]
    assert [r["holm_verdict"] for r in out] == ["holds", "inconclusive", "does not hold"]


def test_not_run_claims_are_outside_the_holm_family():
    out = evaluate_claims([claim(id="ten", a="X", b="Y"), claim(id="gone", a="Q")], frame(TEN))
    assert out[0]["holm_p"] == pytest.approx(1 / 1024) and out[1]["holm_p"] is None
    assert out[1]["holm_verdict"] == "not run"


def test_table_has_the_power_columns_and_the_legend_five_verdicts():
    text = claims_section(evaluate_claims([claim(), claim(id="inc", margin=0.1)], frame({"A": A, "B": B})))
    for verdict in ("**holds**", "**does not hold**", "**inconclusive**", "**premise not met**", "**not run**"):
        assert verdict in VERDICT_RULE
    assert ("| MDE (80% power) | seeds needed | paper's effect resolvable | permutation p | verdict | "
            "Holm verdict |") in text
    assert "| 0.1146 |  |  | 0.125 | **holds** | **inconclusive** (p 0.25) |" in text
    # two judged claims: p < 0.025 needs 6 seeds (2^-6 = 0.0156; 2^-5 = 0.031); p < 0.05 needs 5
    assert "Holm family: 2 judged claims. Its first step needs some claim with p < 0.05/2 = 0.025" in text
    assert "takes at least 6 seeds (and any claim needs 5 to reach p < 0.05 at all)" in text


def test_the_papers_effect_is_resolvable_only_at_or_above_the_mde_by_hand():
    """d with sample sd exactly 1 over 10 seeds: MDE 0.996 (G*Power, d = 0.996 at n = 10);
    a paper effect of 0.5 is below it and needs 34 seeds (G*Power: d = 0.5 -> 34), 1.2 is above."""
    import numpy as np

    z = np.arange(10.0) - 4.5
    z = z / z.std(ddof=1)
    df = frame({"A": {s: 2.0 + z[s] for s in range(10)}, "B": {s: 0.0 for s in range(10)}})
    small = evaluate_claim(claim(paper_effect=0.5), df)
    assert small["sd_diff"] == pytest.approx(1.0) and small["mde"] == pytest.approx(0.996, abs=5e-4)
    assert small["paper_resolvable"] is False and small["paper_seeds_needed"] == 34
    large = evaluate_claim(claim(paper_effect=1.2), df)
    assert large["paper_resolvable"] is True and large["paper_seeds_needed"] == seeds_needed(1.2, 1.0)
    assert "| **no** (+0.5; needs 34 seeds) |" in claims_section([small])
    assert evaluate_claim(claim(), df)["paper_resolvable"] is None


def test_identical_results_on_every_seed_are_named_in_the_note():
    same = evaluate_claim(claim(), frame({"A": A, "B": A}))
    assert (same["verdict"], same["mean_diff"], same["ci_low"], same["ci_high"]) == ("inconclusive", 0.0, 0.0, 0.0)
    assert "exactly +0 on every seed" in same["note"] and "identical values" in same["note"]
    shifted = evaluate_claim(claim(), frame({"A": {s: v + 0.5 for s, v in A.items()}, "B": A}))
    assert "exactly +0.5 on every seed" in shifted["note"] and "identical" not in shifted["note"]
    assert "every seed" not in evaluate_claim(claim(), frame({"A": A, "B": B}))["note"]
