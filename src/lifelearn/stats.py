"""Statistics over seeds, shared by the claims, the figures and the evaluation jobs.

Only numpy is imported with the module; scipy and pandas are loaded by the functions that
need them, so an evaluation job does not pay for scipy.stats unless it computes an interval.
"""
from __future__ import annotations

import numpy as np


def paired_interval(diffs, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean of `diffs` and its two-sided Student-t interval; bounds are None when n < 2."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        raise ValueError("paired_interval needs at least one difference")
    mean = float(d.mean())
    if d.size < 2:
        return mean, None, None
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return mean, mean - half, mean + half


def seed_summary(rows: list[dict]) -> dict[str, dict]:
    """Per metric over seeds (`rows`: one metrics dict per seed; non-numbers, lists and
    missing values left out): n, mean, std (ddof=1; None for one seed), 95% t interval."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    out = {}
    for metric in sorted(frame.columns):
        values = pd.to_numeric(frame[metric], errors="coerce").dropna()
        if values.empty:
            continue
        mean, low, high = paired_interval(values.to_numpy())
        out[metric] = {"n": int(values.size), "mean": mean, "std": float(values.std(ddof=1)) if values.size > 1 else None,
                       "low": low, "high": high}
    return out


def t_interval(values) -> tuple[float, float]:
    """The 95% Student-t interval of the mean of `values` as (low, high), a point when n < 2
    (seaborn's `errorbar` callable)."""
    mean, low, high = paired_interval(values)
    return (mean, mean) if low is None else (low, high)
