"""Continual-learning metrics from a run's records (PAPERS.md section 6). numpy + pandas only.

Inputs, as the continual stage writes them:
- R: T x T accuracy matrix, R[i, j] = accuracy on task j after training task i (0-based);
  NaN = never evaluated.
- stream: rows (iteration, current_task, eval_task, accuracy[, loss]) of the per-iteration
  continual evaluation, in any order. Every function sorts by (eval_task, iteration) itself;
  rows sharing (eval_task, iteration, current_task) are averaged, so results do not depend
  on row order.
- initial: accuracy of the untrained model on each task (row "-1" of R).
- random_init: b_j, accuracy of a randomly initialised model on each task (FWT baseline).
- expert_stream: the stream of a single-task-expert run (model reset before every task).

Docstrings use 0-based task indices; METRIC_DEFINITIONS (for the report) uses 1-based ones,
with row 0 = `initial`. T = number of tasks; a_j(t) = stream accuracy of task j.
Every metric returns a float, or None when undefined (e.g. forgetting with T == 1).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

STREAM_COLUMNS = ("iteration", "current_task", "eval_task", "accuracy")
TRANSFER_METHODS = ("contrast", "ratio")
_TOL = 1e-12


def _windowed_definition(kind: str, w: int) -> str:
    """LaTeX line for WF^w (kind "f", largest drop) or WP^w (kind "p", largest rise)."""
    change = r"a_j(m) - a_j(n)" if kind == "f" else r"a_j(n) - a_j(m)"
    return rf"W{kind.upper()}^{{{w}}} = \frac{{1}}{{|J|}}\sum_j \max_{{m<n,\ n-m<{w}}} \left({change}\right)^+"


METRIC_DEFINITIONS: dict[str, str] = {
    "avg_acc": r"ACC = \frac{1}{T}\sum_{j=1}^{T} R_{T,j}",
    "avg_incremental_acc": r"\bar{A} = \frac{1}{T}\sum_{i=1}^{T} \frac{1}{i}\sum_{j=1}^{i} R_{i,j}",
    "forgetting": r"F = \frac{1}{T-1}\sum_{j=1}^{T-1} \left(\max_{l<T} R_{l,j} - R_{T,j}\right)",
    "bwt": r"BWT = \frac{1}{T-1}\sum_{j=1}^{T-1} \left(R_{T,j} - R_{j,j}\right)",
    "fwt": r"FWT = \frac{1}{T-1}\sum_{j=2}^{T} \left(R_{j-1,j} - b_j\right)",
    "min_acc": r"\text{min-ACC} = \frac{1}{T-1}\sum_{j<T} \min_{t > t_{end}(j)} a_j(t)",
    "wc_acc": r"\text{WC-ACC} = \frac{1}{T} R_{T,T} + \left(1 - \frac{1}{T}\right)\text{min-ACC}",
    **{f"w{kind}{w}": _windowed_definition(kind, w) for w in (10, 100) for kind in ("f", "p")},
    "gap_depth": r"\text{gap depth} = \frac{1}{T-1}\sum_{j<T} \left(R_{j,j} - \min_{t > t_{end}(j)} a_j(t)\right)",
    "gap_drop": r"\text{gap drop} = \mathrm{mean}_{i \ge 2, j<i} "
                r"\left(a_j(t^{pre}_i) - \min_{t \in \text{task } i} a_j(t)\right)",
    "gap_recovery": r"\text{gap recovery} = \mathrm{mean}_{i,j} "
                    r"\left(a_j(t^{end}_i) - \min_{t \in \text{task } i} a_j(t)\right)",
    "gap_recover_iters": r"\text{iters from } t^{min} \text{ to first } a_j(t) \ge low + \tfrac{1}{2}\,drop",
    "gap_low_after": r"\text{gap low after} = \mathrm{mean}_{i,j} \left(t^{min}_{ij} - t^{start}_i\right)",
    "perf_maintenance": r"PM = \frac{1}{T-1}\sum_{j<T} \frac{1}{T-j}\sum_{i>j} \left(R_{i,j} - R_{j,j}\right)",
    "forward_transfer": r"FT = \mathrm{mean}_{j \ge 2} \frac{R_{j-1,j} - R_{j-2,j}}{R_{j-1,j} + R_{j-2,j}},\ "
                        r"R_{0,\cdot} = \text{initial} \ (\text{ratio: } R_{j-1,j}/R_{j-2,j})",
    "backward_transfer": r"BT = \mathrm{mean}_{j<k} \frac{R_{k,j} - R_{k-1,j}}{R_{k,j} + R_{k-1,j}}"
                         r"\ (\text{ratio: } R_{k,j}/R_{k-1,j})",
    "relative_to_expert": r"RP = \frac{1}{T}\sum_j \frac{\sum_{n<N_j} a^{LL}_j(n)}{\sum_{n<N_j} a^{STE}_j(n)},\ "
                          r"N_j = \min(|a^{LL}_j|, |a^{STE}_j|)",
    "sample_efficiency": r"SE = \frac{1}{T}\sum_j \frac{s^{LL}_j}{s^{STE}_j} \cdot \frac{e^{STE}_j}{e^{LL}_j},\ "
                         r"s = \max \text{smoothed curve},\ e = \text{evaluations to } s",
}


# Every value each metric can take, read off its definition below (accuracies lie in
# [0, 1]). A claim's statistic must be able to fall on either side of its margin: a bound
# here that a claim's margin sits on (gap_recovery > 0) means the claim cannot fail.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "avg_acc": (0.0, 1.0), "avg_incremental_acc": (0.0, 1.0),   # means of accuracies
    "forgetting": (-1.0, 1.0),  # negative when R[T, j] exceeds every earlier R[l, j]
    "bwt": (-1.0, 1.0), "fwt": (-1.0, 1.0),
    "min_acc": (0.0, 1.0), "wc_acc": (0.0, 1.0),
    # R[j, j] minus the minimum over evaluations AFTER at least one step of a later task: the
    # window never holds the state R[j, j] was measured at, so every later evaluation can lie
    # above it (backward transfer) and the depth is negative. Bounded below by
    # R[j, j] - a_j(last evaluation) (= -BWT_j when the subset is the whole test split).
    "gap_depth": (-1.0, 1.0),
    # pre (last evaluation before task i) is outside the window of the minimum: can be negative
    "gap_drop": (-1.0, 1.0),
    # end - low, low = min over a window CONTAINING end: >= 0 by construction
    "gap_recovery": (0.0, 1.0),
    "gap_recover_iters": (0.0, math.inf), "gap_low_after": (0.0, math.inf),   # iterations
    "perf_maintenance": (-1.0, 1.0),
    # contrast (the method continual_metrics uses); the ratio would be [0, inf)
    "forward_transfer": (-1.0, 1.0), "backward_transfer": (-1.0, 1.0),
    "relative_to_expert": (0.0, math.inf), "sample_efficiency": (0.0, math.inf),  # ratios of accuracies
}
WINDOWED_RANGE = (0.0, 1.0)  # WF^w, WP^w: the largest drop / rise, floored at 0


def metric_range(key: str) -> tuple[float, float] | None:
    """METRIC_RANGES[key], WINDOWED_RANGE for wf<w> / wp<w>, None for a key not defined here."""
    if key[:2] in ("wf", "wp") and key[2:].isdigit():
        return WINDOWED_RANGE
    return METRIC_RANGES.get(key)


def metric_definitions(windows: Sequence[int] = (10, 100)) -> dict[str, str]:
    """METRIC_DEFINITIONS with the WF^w / WP^w lines of the configured windows."""
    fixed = {k: v for k, v in METRIC_DEFINITIONS.items() if not (k[:2] in ("wf", "wp") and k[2:].isdigit())}
    windowed = {f"w{kind}{w}": _windowed_definition(kind, w) for w in windows for kind in ("f", "p")}
    keys = list(fixed)
    at = keys.index("gap_depth") + 1
    return {k: (fixed | windowed)[k] for k in keys[:at] + list(windowed) + keys[at:]}

# ---- small helpers ----------------------------------------------------------------------
def _matrix(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"R must be a square T x T matrix, got shape {R.shape}")
    return R


def _mean(values: Iterable[float | None]) -> float | None:
    """Mean of the finite values, None if there are none."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _finite(x: float) -> bool:
    return x is not None and bool(np.isfinite(x))


def tidy_stream(stream: pd.DataFrame) -> pd.DataFrame:
    """Stream rows with a finite accuracy, duplicates of (eval_task, iteration, current_task)
    averaged, sorted by (eval_task, iteration): the order-independent form every metric reads."""
    missing = [c for c in STREAM_COLUMNS if c not in stream.columns]
    if missing:
        raise ValueError(f"stream lacks columns {missing}")
    df = stream.loc[:, list(STREAM_COLUMNS)].copy()
    df["accuracy"] = df["accuracy"].astype(float)
    df = df[np.isfinite(df["accuracy"])]
    for col in ("iteration", "current_task", "eval_task"):
        df[col] = df[col].astype(int)
    df = df.groupby(["eval_task", "iteration", "current_task"], sort=True, as_index=False)["accuracy"].mean()
    return df.sort_values(["eval_task", "iteration", "current_task"], kind="mergesort").reset_index(drop=True)


def _curve(df: pd.DataFrame, eval_task: int, current_task: int | None = None,
           after_task: int | None = None) -> pd.DataFrame:
    """Evaluations of `eval_task` (tidy stream), optionally only while `current_task` trains
    or only while a task later than `after_task` trains."""
    sel = df["eval_task"] == eval_task
    if current_task is not None:
        sel &= df["current_task"] == current_task
    if after_task is not None:
        sel &= df["current_task"] > after_task
    return df[sel]


def _learning_curve(df: pd.DataFrame, task: int) -> np.ndarray:
    """Accuracy of `task` while it is being trained (current_task == eval_task == task)."""
    return _curve(df, task, current_task=task)["accuracy"].to_numpy()


# ---- accuracy-matrix metrics -------------------------------------------------------------
def average_accuracy(R) -> float | None:
    """ACC = (1/T) sum_j R[T-1, j]  (final-row average; NaN entries ignored)."""
    return _mean(_matrix(R)[-1])


def average_incremental_accuracy(R) -> float | None:
    """Average incremental accuracy (Rebuffi et al. 2017, iCaRL):
    (1/T) sum_i (1/(i+1)) sum_{j<=i} R[i, j]; NaN entries and all-NaN rows ignored."""
    R = _matrix(R)
    return _mean(_mean(R[i, : i + 1]) for i in range(R.shape[0]))


def forgetting(R) -> float | None:
    """Average forgetting (Chaudhry et al. 2018, "Riemannian Walk", Eq. 2 at the last task):
    f_j = max_{l<T-1} R[l, j] - R[T-1, j], mean over j < T-1.

    As PAPERS.md writes it, the max runs over every earlier row l = 0..T-2, including rows
    l < j taken before task j was trained (in practice max_{j<=l<T-1}; they coincide unless
    an untrained task scores above its post-training accuracy). None if T == 1.
    """
    R = _matrix(R)
    T = R.shape[0]
    if T < 2:
        return None
    per_task = []
    for j in range(T - 1):
        earlier = R[: T - 1, j]
        if np.isfinite(earlier).any() and np.isfinite(R[T - 1, j]):
            per_task.append(np.nanmax(earlier) - R[T - 1, j])
    return _mean(per_task)


def bwt(R) -> float | None:
    """Backward transfer (Lopez-Paz & Ranzato 2017, GEM, Eq. 3):
    BWT = (1/(T-1)) sum_{j<T-1} (R[T-1, j] - R[j, j]). None if T == 1."""
    R = _matrix(R)
    T = R.shape[0]
    return _mean(R[T - 1, j] - R[j, j] for j in range(T - 1)) if T > 1 else None


def fwt(R, random_init: Sequence[float]) -> float | None:
    """Forward transfer (Lopez-Paz & Ranzato 2017, GEM, Eq. 4):
    FWT = (1/(T-1)) sum_{j>=1} (R[j-1, j] - b_j), b_j = accuracy at random init. None if T == 1."""
    R = _matrix(R)
    b = np.asarray(random_init, dtype=float)
    T = R.shape[0]
    return _mean(R[j - 1, j] - b[j] for j in range(1, T)) if T > 1 else None


# ---- continual evaluation (De Lange et al., ICLR 2023) -------------------------------------
def min_acc(stream: pd.DataFrame, n_tasks: int) -> float | None:
    """Average minimum accuracy (De Lange et al. 2023, "Continual evaluation for lifelong
    learning: identifying the stability gap", Sec. 3): for every task j < T-1 whose training
    ended, min_j = min accuracy over its evaluations with current_task > j; mean over the
    tasks that have such evaluations. None if none."""
    df = tidy_stream(stream)
    lows = []
    for j in range(n_tasks - 1):
        after = _curve(df, j, after_task=j)["accuracy"]
        if len(after):
            lows.append(after.min())
    return _mean(lows)


def gap_depth(stream: pd.DataFrame, R, n_tasks: int) -> float | None:
    """How far min-ACC lies below the accuracy each task reached (De Lange et al. 2023's
    stability-gap claim): mean over tasks j < T-1 with later evaluations of
    R[j, j] - min_{current_task > j} a_j. Positive: a gap."""
    df, R = tidy_stream(stream), _matrix(R)
    depths = []
    for j in range(n_tasks - 1):
        after = _curve(df, j, after_task=j)["accuracy"]
        if len(after) and np.isfinite(R[j, j]):
            depths.append(R[j, j] - after.min())
    return _mean(depths)


def wc_acc(stream: pd.DataFrame, R, n_tasks: int) -> float | None:
    """Worst-case accuracy (De Lange et al. 2023, Sec. 3) at the end of the run:
    WC-ACC = (1/k) A_k + (1 - 1/k) min-ACC, k = T, A_k = R[T-1, T-1]. For T == 1: A_1."""
    R = _matrix(R)
    k = int(n_tasks)
    last = R[k - 1, k - 1]
    if not np.isfinite(last):
        return None
    if k == 1:
        return float(last)
    low = min_acc(stream, k)
    return None if low is None else float(last / k + (1 - 1 / k) * low)


def _max_windowed_change(acc: np.ndarray, w: int, sign: float) -> float:
    """max over m < n with n - m < w of sign * (a_n - a_m), floored at 0 (0 if no pair)."""
    best = 0.0
    for lag in range(1, min(w, len(acc))):
        best = max(best, float(np.max(sign * (acc[lag:] - acc[:-lag]))))
    return best


def _windowed(stream: pd.DataFrame, w: int, sign: float) -> float | None:
    if w < 1:
        raise ValueError(f"window must be >= 1, got {w}")
    df = tidy_stream(stream)
    per_task = [_max_windowed_change(sub["accuracy"].to_numpy(), w, sign)
                for _, sub in df.groupby("eval_task", sort=True)]
    return _mean(per_task)


def windowed_forgetting(stream: pd.DataFrame, w: int) -> float | None:
    """Windowed forgetting WF^w (De Lange et al. 2023, Sec. 3; authors' code
    WindowedForgettingPluginMetric): per task j, over the sequence a_j(0..N-1) of ALL its
    stream evaluations in iteration order (during and after its own training),
    WF_j = max(0, max_{m<n, n-m<w} a_j(m) - a_j(n)), i.e. the largest drop inside any window
    of w consecutive evaluations; WF^w = mean over evaluated tasks (a task with a single
    evaluation contributes 0). Windows longer than the series use the whole series."""
    return _windowed(stream, w, sign=-1.0)


def windowed_plasticity(stream: pd.DataFrame, w: int) -> float | None:
    """Windowed plasticity WP^w (De Lange et al. 2023, Sec. 3; authors' code
    WindowedPlasticityPluginMetric): as WF^w with the largest rise,
    WP_j = max(0, max_{m<n, n-m<w} a_j(n) - a_j(m)); mean over evaluated tasks."""
    return _windowed(stream, w, sign=1.0)


def _first_reaching(curve: pd.DataFrame, start_pos: int, target: float) -> int | None:
    """Iteration of the first evaluation at or after position `start_pos` with acc >= target."""
    acc = curve["accuracy"].to_numpy()[start_pos:]
    hits = np.nonzero(acc >= target - _TOL)[0]
    return int(curve["iteration"].to_numpy()[start_pos + hits[0]]) if len(hits) else None


def _gap_pair(df: pd.DataFrame, new: int, old: int, start: int) -> dict | None:
    before = _curve(df, old, current_task=new - 1)
    during = _curve(df, old, current_task=new)
    if before.empty or during.empty:
        return None
    pre = float(before["accuracy"].iloc[-1])
    acc = during["accuracy"].to_numpy()
    pos = int(np.argmin(acc))  # first minimum on ties
    low, low_iter = float(acc[pos]), int(during["iteration"].iloc[pos])
    drop, end = pre - low, float(acc[-1])
    if drop <= 0:
        recover_iters = 0
    else:
        hit = _first_reaching(during, pos, low + 0.5 * drop)
        recover_iters = None if hit is None else hit - low_iter
    return {"new_task": new, "old_task": old, "pre": pre, "low": low, "drop": drop,
            "low_after": low_iter - start, "end": end, "recovery": end - low,
            "recover_iters": recover_iters}


def stability_gap(stream: pd.DataFrame, n_tasks: int) -> list[dict]:
    """Stability gap per (new task i >= 1, old task j < i) (De Lange et al. 2023, Sec. 4):
    pre = a_j at the last evaluation with current_task == i-1; low = min a_j while task i
    trains (first on ties); drop = pre - low; low_after = iteration of that minimum - first
    evaluated iteration of task i (the first training iteration when evaluating every
    iteration); end = a_j at the last evaluation of task i; recovery = end - low;
    recover_iters = iterations from the minimum to the first evaluation (within task i) with
    a_j >= low + drop/2 (None if never; 0 if drop <= 0). Pairs lacking evaluations before or
    during task i are skipped."""
    df = tidy_stream(stream)
    out = []
    for new in range(1, n_tasks):
        rows_new = df[df["current_task"] == new]
        if rows_new.empty:
            continue
        start = int(rows_new["iteration"].min())
        for old in range(new):
            pair = _gap_pair(df, new, old, start)
            if pair is not None:
                out.append(pair)
    return out


def stability_gap_summary(stream: pd.DataFrame, n_tasks: int) -> dict[str, float | None]:
    """Means over stability_gap pairs of drop, recovery, recover_iters (over the pairs where
    it is defined) and low_after; all None when there is no pair."""
    pairs = stability_gap(stream, n_tasks)
    return {f"gap_{key}": _mean(p[key] for p in pairs)
            for key in ("drop", "recovery", "recover_iters", "low_after")}


# ---- lifelong-learning metrics (New et al. 2022; package l2metrics) ----------------------
def performance_maintenance(R) -> float | None:
    """Performance maintenance (New et al. 2022, "A Domain-Agnostic Approach for
    Characterization of Lifelong Learning Systems"; l2metrics PerformanceMaintenance, method
    "mrlep"): per task j < T-1, PM_j = mean_{i>j} (R[i, j] - R[j, j]) (change of every later
    evaluation against the evaluation right after training j); PM = mean_j PM_j.
    Negative = forgetting. None if T == 1."""
    R = _matrix(R)
    T = R.shape[0]
    per_task = []
    for j in range(T - 1):
        if np.isfinite(R[j, j]):
            per_task.append(_mean(R[i, j] - R[j, j] for i in range(j + 1, T)))
    return _mean(per_task)


def _transfer_value(before: float, after: float, method: str) -> float | None:
    """l2metrics Transfer: ratio = after/before (before != 0);
    contrast = (after - before)/(after + before) (after + before != 0)."""
    if method not in TRANSFER_METHODS:
        raise ValueError(f"method must be one of {TRANSFER_METHODS}, got {method!r}")
    if not (_finite(before) and _finite(after)):
        return None
    if method == "ratio":
        return after / before if before != 0 else None
    total = after + before
    return (after - before) / total if total != 0 else None


def forward_transfer(R, initial: Sequence[float], method: str = "contrast",
                     all_prior: bool = False) -> float | None:
    """Forward transfer (New et al. 2022; l2metrics Transfer): for task j >= 1, its accuracy
    before vs after training the previous task j-1, before j itself is trained:
    before = R[j-2, j] (initial[j] when j == 1), after = R[j-1, j]; ratio = after/before,
    contrast = (after-before)/(after+before); mean over defined pairs.
    all_prior=True uses every earlier task k < j (before = R[k-1, j] or initial[j], after =
    R[k, j]), which is the set of pairs l2metrics itself enumerates in a sequential syllabus."""
    R = _matrix(R)
    init = np.asarray(initial, dtype=float)
    T = R.shape[0]
    values = []
    for j in range(1, T):
        for k in (range(j) if all_prior else [j - 1]):
            before = init[j] if k == 0 else R[k - 1, j]
            values.append(_transfer_value(before, R[k, j], method))
    return _mean(values)


def backward_transfer(R, method: str = "contrast") -> float | None:
    """Backward transfer (New et al. 2022; l2metrics Transfer): for task j and every later
    task k > j, before = R[k-1, j], after = R[k, j]; ratio or contrast as in
    forward_transfer; mean over defined pairs."""
    R = _matrix(R)
    T = R.shape[0]
    return _mean(_transfer_value(R[k - 1, j], R[k, j], method)
                 for j in range(T) for k in range(j + 1, T))


def l2_smooth(x: np.ndarray, window_len: int | None = None) -> np.ndarray:
    """l2metrics' flat moving average (_localutil.smooth): window L = min(int(0.2 n), 100) by
    default (no smoothing if L < 3); the series is padded with L-1 reflected values on each
    side (edge not repeated), averaged over windows of L, and n values are kept starting at
    offset floor(L/2 - 1) of the valid convolution. NaNs are dropped first."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = x.size
    if window_len is None or n < window_len:
        window_len = min(int(n * 0.2), 100)
    if window_len < 3:
        return x
    L = window_len
    padded = np.concatenate([x[L - 1:0:-1], x, x[-2:-L - 1:-1]])
    averaged = np.convolve(padded, np.full(L, 1.0 / L), mode="valid")
    offset = int(np.floor(L / 2 - 1))
    return averaged[offset: offset + n]


def _paired_curves(stream: pd.DataFrame, expert_stream: pd.DataFrame):
    """(task, lifelong learning curve, expert learning curve) for tasks present in both."""
    ll, ste = tidy_stream(stream), tidy_stream(expert_stream)
    for task in sorted(set(ll["eval_task"]) & set(ste["eval_task"])):
        a, b = _learning_curve(ll, task), _learning_curve(ste, task)
        if len(a) and len(b):
            yield task, a, b


def relative_to_expert(stream: pd.DataFrame, expert_stream: pd.DataFrame,
                       smooth: bool = True) -> float | None:
    """Performance relative to a single-task expert (New et al. 2022; l2metrics
    STERelativePerf): per task j, with a = accuracy of j while j trains
    (current_task == eval_task == j) in the lifelong run and s the same in the expert run,
    both truncated to N = min(|a|, |s|) evaluations: RP_j = sum_{n<N} a_n / sum_{n<N} s_n
    (area = sum over evaluations, as l2metrics). smooth=True first applies l2_smooth to each
    whole curve, as l2metrics' report does by default. Mean over tasks."""
    ratios = []
    for _, a, s in _paired_curves(stream, expert_stream):
        if smooth:
            a, s = l2_smooth(a), l2_smooth(s)
        n = min(len(a), len(s))
        area_expert = float(np.nansum(s[:n]))
        if area_expert != 0:
            ratios.append(float(np.nansum(a[:n])) / area_expert)
    return _mean(ratios)


def _saturation(curve: np.ndarray) -> tuple[float, int]:
    """l2metrics get_block_saturation_perf: (max of l2_smooth(curve), first index of it)."""
    smoothed = l2_smooth(curve)
    value = float(np.max(smoothed))
    return value, int(np.nonzero(smoothed == value)[0][0])


def _task_sample_efficiency(a: np.ndarray, s: np.ndarray) -> float | None:
    sat_ll, exp_ll = _saturation(a)
    sat_ste, exp_ste = _saturation(s)
    if exp_ll == 0 or exp_ste == 0 or sat_ste == 0:
        return None  # l2metrics: "saturation not achieved"
    slope = np.polyfit(np.arange(len(a)), a, 1)[0]
    if sat_ll < 0.2 * sat_ste or slope < 0:
        return 0.0  # l2metrics: "training curve violates assumptions"
    return (sat_ll / sat_ste) * (exp_ste / exp_ll)


def sample_efficiency(stream: pd.DataFrame, expert_stream: pd.DataFrame,
                      smooth: bool = True) -> float | None:
    """Sample efficiency (New et al. 2022; l2metrics SampleEfficiency): per task j, on its
    learning curves (as in relative_to_expert; smooth=True = l2metrics' report-level
    smoothing), saturation s = max of the l2_smooth-ed curve and e = index (0-based, in
    evaluations) of its first occurrence; SE_j = (s_LL / s_STE) * (e_STE / e_LL). As
    l2metrics: a task with e == 0 in either run is skipped; SE_j = 0 if s_LL < 0.2 s_STE or
    the least-squares slope of the LL curve is negative. Mean over tasks."""
    values = []
    for _, a, s in _paired_curves(stream, expert_stream):
        if smooth:
            a, s = l2_smooth(a), l2_smooth(s)
        values.append(_task_sample_efficiency(a, s))
    return _mean(values)


# ---- everything ---------------------------------------------------------------------------
def continual_metrics(R, stream: pd.DataFrame, initial: Sequence[float], random_init: Sequence[float],
                      expert_stream: pd.DataFrame | None = None, windows: Sequence[int] = (10, 100),
                      transfer_method: str = "contrast") -> dict[str, float | None]:
    """All metrics above as one flat dict (keys as in METRIC_DEFINITIONS; undefined = None).
    relative_to_expert and sample_efficiency appear only when expert_stream is given."""
    R = _matrix(R)
    T = R.shape[0]
    out: dict[str, float | None] = {
        "avg_acc": average_accuracy(R),
        "avg_incremental_acc": average_incremental_accuracy(R),
        "forgetting": forgetting(R),
        "bwt": bwt(R),
        "fwt": fwt(R, random_init),
        "min_acc": min_acc(stream, T),
        "wc_acc": wc_acc(stream, R, T),
        "gap_depth": gap_depth(stream, R, T),
    }
    for w in windows:
        out[f"wf{w}"] = windowed_forgetting(stream, w)
        out[f"wp{w}"] = windowed_plasticity(stream, w)
    out.update(stability_gap_summary(stream, T))
    out["perf_maintenance"] = performance_maintenance(R)
    out["forward_transfer"] = forward_transfer(R, initial, transfer_method)
    out["backward_transfer"] = backward_transfer(R, transfer_method)
    if expert_stream is not None:
        out["relative_to_expert"] = relative_to_expert(stream, expert_stream)
        out["sample_efficiency"] = sample_efficiency(stream, expert_stream)
    return out
