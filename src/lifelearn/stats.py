"""Statistics over seeds, shared by the claims, the figures and the evaluation jobs.

Only numpy is imported with the module; scipy and pandas are loaded by the functions that
need them. The t quantile of an interval is scipy.special.stdtrit, the very function
scipy.stats.t.ppf calls (t_gen._ppf), without importing scipy.stats (about 1 s a job on
the loaded 2-core machine; every job's parent-run aggregates compute intervals): the
power and sample-size functions, which only the report runs, use scipy.stats.
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
    from scipy.special import stdtrit  # = scipy.stats.t.ppf(q, df), which returns stdtrit(df, q)

    half = float(stdtrit(d.size - 1, 0.5 + level / 2) * d.std(ddof=1) / np.sqrt(d.size))
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


def t_power(effect_sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired (one-sample) t-test on n differences whose true mean is
    `effect_sd` standard deviations from the null: P(|T| > t_{1-alpha/2, n-1}) for
    T ~ noncentral t(df = n - 1, nc = effect_sd * sqrt(n)) (Cohen 1988, ch. 2; G*Power's
    "one-sample / matched pairs" test). The lower tail underflows to NaN far from 0: read as 0."""
    from scipy.stats import nct, t as student_t

    df, nc = n - 1, abs(effect_sd) * np.sqrt(n)
    crit = student_t.ppf(1 - alpha / 2, df)
    return float(nct.sf(crit, df, nc) + np.nan_to_num(nct.cdf(-crit, df, nc)))


def min_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Minimum detectable effect of the two-sided paired t-test at n seeds: the true
    |mean difference| delta with t_power(delta / sd, n, alpha) = power, solved for the
    noncentrality nc = delta sqrt(n) / sd (Brent's method). Units of `sd`; n = 10 gives
    0.996 sd (G*Power: d = 0.996). None when n < 2, 0 when sd == 0."""
    if n < 2:
        return None
    if sd == 0:
        return 0.0
    from scipy.optimize import brentq

    high = 1.0
    while t_power(high / np.sqrt(n), n, alpha) < power:
        high *= 2
    nc = brentq(lambda x: t_power(x / np.sqrt(n), n, alpha) - power, 0.0, high, xtol=1e-12)
    return float(nc * sd / np.sqrt(n))


def seeds_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8,
                 max_n: int = 10**6) -> int | None:
    """Smallest n >= 2 at which the two-sided paired t-test reaches `power` for a true mean
    difference `effect` with per-seed standard deviation `sd`. The search starts at the
    normal approximation n0 = ((z_{1-alpha/2} + z_{power}) sd / effect)^2, which the t-test
    never beats, and steps up (effect 0.5 sd: 34, as G*Power). None when effect == 0 or the
    answer exceeds `max_n`."""
    if effect == 0:
        return None
    if sd == 0:
        return 2
    from scipy.stats import norm

    n0 = ((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd / effect) ** 2
    if n0 > max_n:
        return None
    n = max(2, int(n0))
    while t_power(effect / sd, n, alpha) < power:
        n += 1
    return n if n <= max_n else None


def _sign_vectors(n: int, draws: int, seed: int) -> tuple[np.ndarray, str]:
    """Every vector of {-1, +1}^n (2^n rows) when 2^n <= draws, else `draws` random ones."""
    if 2**n <= draws:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        return 1.0 - 2.0 * bits, "exact"
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=(draws, n)), "monte carlo"


def sign_permutation_p(diffs, margin: float = 0.0, direction: str = "greater",
                       draws: int = 2**16, seed: int = 0) -> tuple[float, str]:
    """One-sided paired sign-permutation p-value of the claim mean(d) > margin ("greater")
    or < margin ("less"). Under H0 the x_i = d_i - margin are symmetric about 0, so every
    sign flip s is equally likely; statistic sum(x) (equivalently mean(d) - margin).
    n <= 16 ("exact"): p = #{s in {-1, 1}^n : sum(s x) >= sum(x)} / 2^n over all 2^n flips
    (the identity included, so p >= 2^-n). n > 16 (2^n > draws, "monte carlo"): `draws` flips from a
    generator seeded with `seed`, p = (1 + hits) / (1 + draws) (Phipson & Smyth 2010).
    For "less" the inequality is reversed. Returns (p, method)."""
    x = np.asarray(diffs, dtype=float) - margin
    if x.size == 0:
        raise ValueError("sign_permutation_p needs at least one difference")
    x = x if direction == "greater" else -x
    signs, method = _sign_vectors(x.size, draws, seed)
    observed = x.sum()
    hits = int(np.sum(signs @ x >= observed - 1e-12 * (np.abs(x).sum() + 1.0)))
    if method == "exact":
        return hits / len(signs), method
    return (1 + hits) / (1 + len(signs)), method


def holm(pvalues) -> list[float]:
    """Holm (1979) step-down adjusted p-values, in input order: with the m p-values sorted
    p_(1) <= ... <= p_(m), adjusted p_(i) = max_{k <= i} min(1, (m - k + 1) p_(k))."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()
