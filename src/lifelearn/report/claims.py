"""Paper claims as data, judged by a seed-paired Student-t interval.

A claim compares method `a` with method `b` (same seeds only) or with a constant `value`.
With d = a - b (or a - value) per seed, "greater" claims d > margin and "less" claims
d < margin; the margin is a signed threshold on the difference, used as written.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lifelearn.stats import paired_interval

DIRECTIONS = ("greater", "less")
VERDICT_RULE = (
    "A claim **holds** when the whole 95% Student-t interval of the mean per-seed difference "
    "(A - B on shared seeds, or A - value) lies strictly on the claimed side of the margin, "
    "**does not hold** when it lies strictly on the other side, and is **inconclusive** "
    "otherwise (including an interval touching the margin, or fewer than two seeds); "
    "**not run** means the study, a method or the metric has no results."
)


def beyond(x: float, margin: float, direction: str) -> bool:
    """True when `x` is strictly on the claimed side of `margin`."""
    return x > margin if direction == "greater" else x < margin


def verdict(low: float, high: float, margin: float, direction: str) -> str:
    """Verdict for an interval [low, high]; touching the margin is inconclusive."""
    near, far = (low, high) if direction == "greater" else (high, low)
    if beyond(near, margin, direction):
        return "holds"
    if beyond(margin, far, direction):
        return "does not hold"
    return "inconclusive"


def _spec(claim: dict) -> dict:
    missing = [k for k in ("id", "study", "metric", "a") if not claim.get(k)]
    if missing:
        raise ValueError(f"claim {claim.get('id')!r} lacks {missing}")
    if (claim.get("b") is None) == (claim.get("value") is None):
        raise ValueError(f"claim {claim['id']!r} needs exactly one of 'b' and 'value'")
    direction = claim.get("direction", "greater")
    if direction not in DIRECTIONS:
        raise ValueError(f"claim {claim['id']!r}: direction must be one of {DIRECTIONS}")
    return {
        "id": claim["id"], "study": claim["study"], "stage": claim.get("stage"),
        "source": claim.get("source", ""), "statement": claim.get("statement", ""),
        "metric": claim["metric"], "a": claim["a"], "b": claim.get("b"),
        "value": None if claim.get("value") is None else float(claim["value"]),
        "margin": float(claim.get("margin", 0.0)), "direction": direction,
    }


def _values(df: pd.DataFrame, spec: dict, name: str) -> pd.Series:
    """Metric values of one method in the claim's study (and stage, if given), indexed by seed."""
    rows = df[(df["study"] == spec["study"]) & (df["name"] == name)]
    if spec["stage"] is not None:
        rows = rows[rows["stage"] == spec["stage"]]
    if spec["metric"] not in rows:
        return pd.Series(dtype=float)
    values = rows.set_index("seed")[spec["metric"]].dropna()
    if not values.index.is_unique:
        raise ValueError(f"claim {spec['id']!r}: {name!r} has several runs per seed; set 'stage'")
    return values.astype(float)


def _pair(a: pd.Series, b: pd.Series) -> tuple[list[int], str]:
    seeds = sorted(set(a.index) & set(b.index))
    dropped = [f"{n} {sorted(set(s.index) - set(seeds))}" for n, s in (("A", a), ("B", b))
               if set(s.index) - set(seeds)]
    return seeds, ("unpaired seeds dropped: " + ", ".join(dropped)) if dropped else ""


def evaluate_claim(claim: dict, results: pd.DataFrame) -> dict:
    """Judge one claim against the results table; returns a JSON-serialisable dict."""
    spec = _spec(claim)
    out = spec | {"n": 0, "seeds": [], "mean_a": None, "mean_b": spec["value"],
                  "mean_diff": None, "ci_low": None, "ci_high": None, "seeds_won": 0,
                  "verdict": "not run", "note": ""}
    if not (results["study"] == spec["study"]).any():
        return out | {"note": f"no results for study {spec['study']!r}"}
    a = _values(results, spec, spec["a"])
    b = None if spec["b"] is None else _values(results, spec, spec["b"])
    absent = [n for n, s in ((spec["a"], a), (spec["b"], b)) if s is not None and s.empty]
    if absent:
        return out | {"note": f"no {spec['metric']} results for " + ", ".join(map(repr, absent))}
    seeds, note = (sorted(a.index), "") if b is None else _pair(a, b)
    if not seeds:
        return out | {"verdict": "inconclusive", "note": "A and B share no seeds"}
    a = a.loc[seeds]
    base = spec["value"] if b is None else b.loc[seeds]
    diffs = (a - base).to_numpy()
    mean, low, high = paired_interval(diffs)
    out |= {"n": len(seeds), "seeds": [int(s) for s in seeds], "mean_a": float(a.mean()),
            "mean_b": float(np.mean(base)), "mean_diff": mean, "ci_low": low, "ci_high": high,
            "seeds_won": int(sum(beyond(d, spec["margin"], spec["direction"]) for d in diffs))}
    if low is None:
        notes = [note, "only 1 seed: no interval possible"]
        return out | {"verdict": "inconclusive", "note": "; ".join(filter(None, notes))}
    return out | {"verdict": verdict(low, high, spec["margin"], spec["direction"]), "note": note}


def evaluate_claims(claims: list[dict], results: pd.DataFrame) -> list[dict]:
    """Judge every claim, in the given order; claim ids must be unique."""
    ids = [c.get("id") for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids in {ids}")
    return [evaluate_claim(c, results) for c in claims]
