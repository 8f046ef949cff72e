"""Every configured claim can fail (issue 13): for every claim of every profile, synthetic
results over 10 seeds in which the claimed effect is clearly present must read "holds",
clearly reversed "does not hold", and a reversed premise "premise not met". The values
are attainable ones: each metric stays inside the range its defining module declares
(lifelearn.evaluate.metric_range), so a claim whose statistic cannot be reversed (e.g.
gap_recovery > 0, with gap_recovery >= 0 by construction) fails here, named."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from lifelearn.config import load_config
from lifelearn.evaluate import metric_range
from lifelearn.report.claims import evaluate_claims

from conftest import REPO

PROFILES = ("default", "smoke", "paper")
SEEDS = list(range(10))
NOISE = np.linspace(-1.0, 1.0, len(SEEDS)) / 4  # per-seed spread, in units of the effect


class ImpossibleResults(AssertionError):
    """The synthetic results a claim needs lie outside its metric's range."""


def profile_claims(profile: str) -> dict[str, dict]:
    return {c["id"]: c for c in load_config(REPO / "config", profile)["claims"]}


CLAIMS = {profile: profile_claims(profile) for profile in PROFILES}
CASES = [pytest.param(p, cid, id=f"{p}-{cid}") for p in PROFILES for cid in CLAIMS[p]]
PREMISE_CASES = [pytest.param(p, cid, req, id=f"{p}-{cid}-{req}")
                 for p in PROFILES for cid, c in CLAIMS[p].items() for req in c.get("requires") or []]


def effect(metric: str) -> float:
    """A clear effect: 5% of the metric's range (5 points of accuracy), at most 0.05."""
    low, high = metric_range(metric)
    return 0.05 * min(high - low, 1.0)


def centre(low: float, high: float) -> float:
    """Where a free set of values is centred: the range's midpoint, else 1 inside its finite bound."""
    if math.isfinite(high - low):
        return (low + high) / 2
    return low + 1.0 if math.isfinite(low) else (high - 1.0 if math.isfinite(high) else 0.0)


def node(claim: dict, name: str) -> tuple:
    return claim["study"], claim.get("stage") or "run", name, claim["metric"]


def constraint(claim: dict, present: bool) -> tuple:
    """(A node, baseline node or None, constant or None, per-seed d): d lies a clear effect
    beyond the margin on the claimed side (present) or on the other side (reversed)."""
    sign = 1.0 if claim["direction"] == "greater" else -1.0
    d = claim["margin"] + sign * effect(claim["metric"]) * ((1.0 if present else -1.0) + NOISE)
    base = claim.get("b") or claim.get("control")
    return node(claim, claim["a"]), None if base is None else node(claim, base), claim.get("value"), d


def _set(values: dict, groups: dict, key, value: np.ndarray, group, claim_id: str) -> None:
    if key in values and not np.allclose(values[key], value):
        raise ImpossibleResults(f"claim {claim_id!r}: the claims it depends on set {key[2]!r} inconsistently")
    values[key], groups[key] = value, group


def solve(constraints: list[tuple], ids: list[str]) -> tuple[dict, dict]:
    """Per-seed values of every node meeting every constraint a - b = d (a = value + d):
    a constant fixes its node (group None); a set of nodes tied only to each other
    (group k) starts at 0 and is shifted later."""
    values, groups, todo, fresh = {}, {}, list(zip(constraints, ids)), itertools.count()
    while todo:
        ready = [t for t in todo if t[0][1] is None or t[0][0] in values or t[0][1] in values]
        if not ready:
            ready = todo[:1]
            _set(values, groups, todo[0][0][1], np.zeros(len(SEEDS)), next(fresh), todo[0][1])
        (a, b, value, d), cid = ready[0]
        todo.remove(ready[0])
        if b is None:
            _set(values, groups, a, value + d, None, cid)
        elif b in values:
            _set(values, groups, a, values[b] + d, groups[b], cid)
        else:
            _set(values, groups, b, values[a] - d, groups[a], cid)
    return values, groups


def place(values: dict, groups: dict) -> dict:
    """Each free group shifted so that its values are centred in its metric's range."""
    for group in {g for g in groups.values() if g is not None}:
        keys = [k for k, g in groups.items() if g == group]
        span = np.concatenate([values[k] for k in keys])
        shift = centre(*metric_range(keys[0][3])) - (span.min() + span.max()) / 2
        values |= {k: values[k] + shift for k in keys}
    return values


def check_ranges(values: dict, what: str) -> None:
    for (study, _, name, metric), v in values.items():
        low, high = metric_range(metric)
        if v.min() < low or v.max() > high:
            raise ImpossibleResults(
                f"{what} needs {metric} of {study}/{name} in [{v.min():.3g}, {v.max():.3g}], outside the "
                f"values {metric} can take, [{low:g}, {high:g}] (lifelearn.evaluate.metric_range): "
                f"rewrite or remove the claim")


def with_premises(claims: dict[str, dict], cid: str) -> list[dict]:
    """The claim `cid` and every claim it requires, transitively."""
    out, todo = [], [cid]
    while todo:
        claim = claims[todo.pop()]
        if claim not in out:
            out.append(claim)
            todo += claim.get("requires") or []
    return out


def results_for(claims: dict[str, dict], cid: str, reversed_id: str | None) -> tuple[list[dict], pd.DataFrame]:
    """(claim `cid` with its premises, a results table in which every one of their effects
    is present except `reversed_id`'s, which is reversed)."""
    judged = with_premises(claims, cid)
    what = f"claim {cid!r} with " + {None: "its effect present", cid: "its effect reversed"}.get(
        reversed_id, f"premise {reversed_id!r} reversed")
    values, groups = solve([constraint(c, c["id"] != reversed_id) for c in judged], [c["id"] for c in judged])
    values = place(values, groups)
    check_ranges(values, what)
    rows: dict[tuple, dict] = {}
    for (study, stage, name, metric), v in values.items():
        for seed, x in zip(SEEDS, v):
            rows.setdefault((study, stage, name, seed), {})[metric] = float(x)
    frame = pd.DataFrame([{"study": s, "stage": st, "name": n, "seed": seed} | m
                          for (s, st, n, seed), m in rows.items()])
    return judged, frame


def verdict(claims: dict[str, dict], cid: str, reversed_id: str | None) -> str:
    judged, frame = results_for(claims, cid, reversed_id)
    return next(r["verdict"] for r in evaluate_claims(judged, frame) if r["id"] == cid)


@pytest.mark.parametrize("profile, cid", CASES)
def test_claim_holds_when_its_effect_is_present(profile, cid):
    assert verdict(CLAIMS[profile], cid, None) == "holds"


@pytest.mark.parametrize("profile, cid", CASES)
def test_claim_does_not_hold_when_its_effect_is_reversed(profile, cid):
    assert verdict(CLAIMS[profile], cid, cid) == "does not hold"


@pytest.mark.parametrize("profile, cid, premise", PREMISE_CASES)
def test_claim_is_premise_not_met_when_its_premise_is_reversed(profile, cid, premise):
    assert verdict(CLAIMS[profile], cid, premise) == "premise not met"


def test_the_tgeo_kd_claims_are_among_the_premise_cases():
    assert {"smoke-tgeo_beats_kd-kd_beats_ce", "paper-tgeo_beats_wls-kd_beats_ce"} <= {p.id for p in PREMISE_CASES}


# ---- the check itself, on hand-made claims -------------------------------------------------
RECOVERY = {"id": "recovers", "study": "continual", "metric": "gap_recovery", "a": "er", "value": 0.0,
            "margin": 0.0, "direction": "greater"}


def test_a_claim_on_a_bound_of_its_metric_cannot_be_reversed_and_is_named():
    claims = {"recovers": RECOVERY}
    assert verdict(claims, "recovers", None) == "holds"
    with pytest.raises(ImpossibleResults, match=r"claim 'recovers' with its effect reversed needs gap_recovery "
                                                r"of continual/er in \[-0.0625, -0.0375\], outside .* \[0, 1\]"):
        verdict(claims, "recovers", "recovers")


def test_a_chain_of_methods_is_placed_inside_the_range():
    # c - b > 0 requiring b - a > 0: a, b, c step by 0.05 around 0.5; with b - a reversed, b below a
    claims = {"cb": {"id": "cb", "study": "s", "metric": "test_acc", "a": "c", "b": "b", "margin": 0.0,
                     "direction": "greater", "requires": ["ba"]},
              "ba": {"id": "ba", "study": "s", "metric": "test_acc", "a": "b", "b": "a", "margin": 0.0,
                     "direction": "greater"}}
    _, frame = results_for(claims, "cb", None)
    means = frame.groupby("name")["test_acc"].mean()
    assert means.to_dict() == pytest.approx({"a": 0.45, "b": 0.5, "c": 0.55})
    assert verdict(claims, "cb", "ba") == "premise not met" and verdict(claims, "cb", "cb") == "does not hold"


def test_a_control_claim_can_hold_and_fail():
    claims = {"vs": {"id": "vs", "study": "continual", "metric": "gap_depth", "a": "er", "control": "no_switch",
                     "margin": 0.0, "direction": "greater"}}
    assert verdict(claims, "vs", None) == "holds" and verdict(claims, "vs", "vs") == "does not hold"
