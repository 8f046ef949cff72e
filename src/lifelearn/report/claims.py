"""Paper claims as data, judged by a seed-paired Student-t interval.

A claim compares method `a` with a baseline method `b` or a `control` run (same seeds
only), or with a constant `value`. With d = a - b (a - control, a - value) per seed,
"greater" claims d > margin and "less" claims d < margin; the margin is a signed
threshold on the difference, used as written. A claim may name premise claims
(`requires`): unless each of them holds, its verdict is "premise not met".

Beside the interval every claim gets its power at the seeds run (minimum detectable
effect; seeds needed when inconclusive), an exact sign-permutation p-value and a
Holm-adjusted verdict across the whole table (lifelearn.stats).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lifelearn.config import premise_order
from lifelearn.stats import holm, min_detectable_effect, paired_interval, seeds_needed, sign_permutation_p

DIRECTIONS = ("greater", "less")
ALPHA, POWER = 0.05, 0.8
BASELINES = ("b", "control", "value")
VERDICT_RULE = "\n".join([
    "Verdicts, from the 95% Student-t interval of the mean per-seed difference d (A - B or "
    "A - control on shared seeds, or A - value):",
    "- **holds**: the whole 95% Student-t interval lies strictly on the claimed side of the margin;",
    "- **does not hold**: it lies strictly on the other side;",
    "- **inconclusive**: otherwise (an interval containing or touching the margin, or fewer than two seeds);",
    "- **premise not met**: the claim has results, but a claim it requires (its premise) does "
    "not hold; the note gives that premise's verdict, mean difference and interval;",
    "- **not run**: the study, a method or the metric has no results.",
    "",
    f"**MDE (80% power)**: what the seeds can resolve, the smallest true distance of the mean "
    f"difference from the margin that a two-sided paired t-test (alpha {ALPHA:g}) detects with "
    f"{POWER:.0%} power at these seeds, from the observed standard deviation of d; a smaller effect "
    "will mostly read inconclusive. **seeds needed** (inconclusive claims only): the seeds at which "
    "a true difference equal to the observed one would be resolved with 80% power, into holds or "
    "does not hold by its side of the margin (n/a: at the margin, or more than 10^6). **paper's effect "
    "resolvable**: for a claim whose source reports the effect (`paper_effect`, A - B in the metric's "
    "units), whether its distance from the margin is at least the MDE, with the seeds an effect of the "
    "paper's size would need at the observed sd. **permutation p**: one-sided sign-flip p-value of mean(d) - margin in the "
    "claimed direction, exact over all 2^n flips up to 16 seeds (at least 2^-n: 0.125 at 3 seeds), "
    "Monte Carlo (MC, 2^16 seeded flips) beyond. **Holm verdict**: holds only when the claim holds "
    f"and its Holm-adjusted permutation p across every judged claim of the table is below {ALPHA:g}; "
    "a claim that holds otherwise reads inconclusive; other verdicts are unchanged.",
])


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
    if sum(claim.get(k) is not None for k in BASELINES) != 1:
        raise ValueError(f"claim {claim['id']!r} needs exactly one of 'b', 'control' and 'value'")
    direction = claim.get("direction", "greater")
    if direction not in DIRECTIONS:
        raise ValueError(f"claim {claim['id']!r}: direction must be one of {DIRECTIONS}")
    return {
        "id": claim["id"], "study": claim["study"], "stage": claim.get("stage"),
        "source": claim.get("source", ""), "statement": claim.get("statement", ""),
        "metric": claim["metric"], "a": claim["a"], "b": claim.get("b"),
        "value": None if claim.get("value") is None else float(claim["value"]),
        "margin": float(claim.get("margin", 0.0)), "direction": direction,
        "control": claim.get("control"), "requires": list(claim.get("requires") or []),
        "paper_effect": None if claim.get("paper_effect") is None else float(claim["paper_effect"]),
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


def _pair(a: pd.Series, b: pd.Series, b_label: str) -> tuple[list[int], str]:
    seeds = sorted(set(a.index) & set(b.index))
    dropped = [f"{n} {sorted(set(s.index) - set(seeds))}" for n, s in (("A", a), (b_label, b))
               if set(s.index) - set(seeds)]
    return seeds, ("unpaired seeds dropped: " + ", ".join(dropped)) if dropped else ""


def _robustness(diffs: np.ndarray, spec: dict, own: str) -> dict:
    """MDE and (for an inconclusive interval) seeds needed at the observed standard
    deviation of d, and the sign-permutation p-value of mean(d) - margin."""
    n = len(diffs)
    sd = float(np.std(diffs, ddof=1)) if n > 1 else None
    p, method = sign_permutation_p(diffs, spec["margin"], spec["direction"])
    needed = None
    if own == "inconclusive" and sd is not None:
        needed = seeds_needed(float(np.mean(diffs)) - spec["margin"], sd, ALPHA, POWER)
    mde = None if sd is None else min_detectable_effect(sd, n, ALPHA, POWER)
    return {"sd_diff": sd, "mde": mde, "seeds_needed": needed, "perm_p": p, "perm_method": method,
            **paper_power(spec, sd, mde)}


def paper_power(spec: dict, sd: float | None, mde: float | None) -> dict:
    """Whether these seeds resolve the paper's own effect (`paper_effect`, A - B in the
    metric's units): its distance from the margin at least the MDE; and the seeds a true
    effect of the paper's size would need at the observed sd."""
    effect = spec["paper_effect"]
    if effect is None or sd is None or mde is None:
        return {"paper_resolvable": None, "paper_seeds_needed": None}
    distance = effect - spec["margin"]
    return {"paper_resolvable": bool(abs(distance) >= mde),
            "paper_seeds_needed": seeds_needed(distance, sd, ALPHA, POWER)}


def _baseline(results: pd.DataFrame, spec: dict) -> tuple[str | None, str, pd.Series | None]:
    """(name, label, values) of the claim's baseline method or control; values None for a constant."""
    for key, label in (("b", "B"), ("control", "control")):
        if spec[key] is not None:
            return spec[key], label, _values(results, spec, spec[key])
    return None, "value", None


def evaluate_claim(claim: dict, results: pd.DataFrame) -> dict:
    """Judge one claim by its own results; returns a JSON-serialisable dict. Premises and
    the Holm adjustment need the whole table: evaluate_claims applies them."""
    spec = _spec(claim)
    out = spec | {"n": 0, "seeds": [], "mean_a": None, "mean_b": spec["value"],
                  "mean_diff": None, "ci_low": None, "ci_high": None, "seeds_won": 0,
                  "verdict": "not run", "note": "", "sd_diff": None, "mde": None,
                  "seeds_needed": None, "perm_p": None, "perm_method": None,
                  "paper_resolvable": None, "paper_seeds_needed": None,
                  "premises_failed": [], "holm_p": None, "holm_verdict": "not run"}
    if not (results["study"] == spec["study"]).any():
        return out | {"note": f"no results for study {spec['study']!r}"}
    a = _values(results, spec, spec["a"])
    name, label, b = _baseline(results, spec)
    absent = [n for n, s in ((spec["a"], a), (name, b)) if s is not None and s.empty]
    if absent:
        return out | {"note": f"no {spec['metric']} results for " + ", ".join(map(repr, absent))}
    seeds, note = (sorted(a.index), "") if b is None else _pair(a, b, label)
    if not seeds:
        return out | {"verdict": "inconclusive", "note": f"A and {label} share no seeds"}
    a = a.loc[seeds]
    base = spec["value"] if b is None else b.loc[seeds]
    diffs = (a - base).to_numpy()
    mean, low, high = paired_interval(diffs)
    own = "inconclusive" if low is None else verdict(low, high, spec["margin"], spec["direction"])
    notes = [note] + (["only 1 seed: no interval possible"] if low is None else [])
    if len(diffs) > 1 and np.ptp(diffs) <= 1e-12:
        same = abs(diffs[0]) <= 1e-12
        notes.append(f"A - {label} is exactly {diffs[0]:+.4g} on every seed (zero-width interval)"
                     + (f": A and {label} give identical values, so there is no effect to resolve" if same else ""))
    return out | _robustness(diffs, spec, own) | {
        "n": len(seeds), "seeds": [int(s) for s in seeds], "mean_a": float(a.mean()),
        "mean_b": float(np.mean(base)), "mean_diff": mean, "ci_low": low, "ci_high": high,
        "seeds_won": int(sum(beyond(d, spec["margin"], spec["direction"]) for d in diffs)),
        "verdict": own, "note": "; ".join(filter(None, notes))}


def interval_text(r: dict) -> str:
    """'+0.0123 [-0.0040, +0.0286]' (mean difference and interval), 'n/a' when not run."""
    if r["mean_diff"] is None:
        return "n/a"
    ci = "" if r["ci_low"] is None else f" [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
    return f"{r['mean_diff']:+.4f}{ci}"


def apply_premises(r: dict, judged: dict[str, dict]) -> dict:
    """`r` with verdict "premise not met" when a premise (already in `judged`) does not
    hold and `r` has results; the failed premises' numbers go to `premises_failed` and the note."""
    failed = [judged[p] for p in r["requires"] if judged[p]["verdict"] != "holds"]
    if not failed:
        return r
    r = r | {"premises_failed": [{k: p[k] for k in ("id", "verdict", "mean_diff", "ci_low", "ci_high")}
                                 for p in failed]}
    notes = [f"premise `{p['id']}` {p['verdict']}: mean diff {interval_text(p)}" for p in failed]
    if r["verdict"] != "not run":
        notes.append(f"this claim's own interval alone: {r['verdict']}")
        r["verdict"] = "premise not met"
    return r | {"note": "; ".join(filter(None, [r["note"], *notes]))}


def apply_holm(judged: list[dict]) -> list[dict]:
    """Holm-adjusted permutation p over the claims that have one; the Holm verdict is
    "holds" only when the claim holds and its adjusted p < ALPHA, "inconclusive" when it
    holds otherwise, else the claim's verdict."""
    tested = [i for i, r in enumerate(judged) if r["perm_p"] is not None]
    adjusted = dict(zip(tested, holm([judged[i]["perm_p"] for i in tested])))
    out = []
    for i, r in enumerate(judged):
        p = adjusted.get(i)
        holds = r["verdict"] == "holds"
        holm_verdict = ("holds" if p < ALPHA else "inconclusive") if holds else r["verdict"]
        out.append(r | {"holm_p": p, "holm_verdict": holm_verdict})
    return out


def min_seeds(p_threshold: float) -> int:
    """Fewest seeds n at which an exact sign-permutation p (>= 2^-n) can be below `p_threshold`."""
    return math.floor(math.log2(1 / p_threshold)) + 1


def holm_family_text(judged: list[dict]) -> str:
    """What the Holm family asks of the seeds: its first step needs p < ALPHA / m."""
    m = sum(r["holm_p"] is not None for r in judged)
    if not m:
        return ""
    return (f"Holm family: {m} judged claims. Its first step needs some claim with p < {ALPHA:g}/{m} = "
            f"{ALPHA / m:.3g}; an exact permutation p with n seeds is at least 2^-n, so that takes at least "
            f"{min_seeds(ALPHA / m)} seeds (and any claim needs {min_seeds(ALPHA)} to reach p < {ALPHA:g} at all).")


def evaluate_claims(claims: list[dict], results: pd.DataFrame) -> list[dict]:
    """Judge every claim, premises first (lifelearn.config.premise_order: ids unique,
    premises known, no cycle), then Holm across the table; returned in the given order."""
    judged: dict[str, dict] = {}
    for claim in premise_order(claims):
        judged[claim["id"]] = apply_premises(evaluate_claim(claim, results), judged)
    return apply_holm([judged[c["id"]] for c in claims])
