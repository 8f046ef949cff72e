"""Hand-computed worked examples for lifelearn.evaluate.continual_metrics (PAPERS.md section 6)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lifelearn.evaluate import continual_metrics as cm

NAN = float("nan")

# R[i, j]: accuracy on task j after training task i.
R3 = np.array([
    [0.9, 0.1, 0.05],
    [0.6, 0.8, 0.2],
    [0.5, 0.7, 0.85],
])
B3 = [0.1, 0.1, 0.1]      # random-init accuracies b_j
INIT3 = [0.1, 0.2, 0.1]   # accuracies before any training

# Two tasks, evaluated every iteration. Task 0 trains at iterations 1-4, task 1 at 5-10.
TASK0_CURVE = [0.3, 0.6, 0.8, 0.9, 0.5, 0.2, 0.4, 0.6, 0.7, 0.8]  # iterations 1..10
TASK1_CURVE = [0.2, 0.5, 0.6, 0.7, 0.8, 0.9]                      # iterations 5..10
R2 = np.array([[0.9, 0.1], [0.75, 0.85]])


def make_stream(curves: dict[int, list[tuple[int, int, float]]]) -> pd.DataFrame:
    """curves[eval_task] = [(iteration, current_task, accuracy), ...]."""
    rows = [{"iteration": it, "current_task": cur, "eval_task": task, "accuracy": acc, "loss": 1.0 - acc}
            for task, points in curves.items() for it, cur, acc in points]
    return pd.DataFrame(rows)


def two_task_stream() -> pd.DataFrame:
    task0 = [(it, 0 if it <= 4 else 1, acc) for it, acc in zip(range(1, 11), TASK0_CURVE)]
    task1 = [(it, 1, acc) for it, acc in zip(range(5, 11), TASK1_CURVE)]
    return make_stream({0: task0, 1: task1})


def expert_stream() -> pd.DataFrame:
    """Single-task expert: task 0 learns in 3 evaluations, task 1 in 6; one cross-task row to ignore."""
    task0 = [(1, 0, 0.5), (2, 0, 0.8), (3, 0, 0.9), (4, 1, 0.1)]
    task1 = [(4, 1, 0.4), (5, 1, 0.8), (6, 1, 0.9), (7, 1, 0.9), (8, 1, 0.9), (9, 1, 0.9)]
    return make_stream({0: task0, 1: task1})


def shuffled(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


# ---- accuracy-matrix metrics -------------------------------------------------------------
def test_average_accuracy_and_incremental():
    assert cm.average_accuracy(R3) == pytest.approx((0.5 + 0.7 + 0.85) / 3)
    expected = (0.9 + (0.6 + 0.8) / 2 + (0.5 + 0.7 + 0.85) / 3) / 3
    assert cm.average_incremental_accuracy(R3) == pytest.approx(expected)


def test_forgetting_bwt_fwt():
    assert cm.forgetting(R3) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    assert cm.bwt(R3) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert cm.fwt(R3, B3) == pytest.approx(((0.1 - 0.1) + (0.2 - 0.1)) / 2)


def test_forgetting_max_runs_over_all_earlier_rows_literally():
    # Task 1 scores 0.9 before it is trained (row 0) and 0.8 right after: PAPERS.md's
    # max_{l<T} includes row 0, so f_1 = 0.9 - 0.7, not 0.8 - 0.7.
    R = np.array([[0.9, 0.9, 0.0], [0.6, 0.8, 0.0], [0.5, 0.7, 0.85]])
    assert cm.forgetting(R) == pytest.approx(((0.9 - 0.5) + (0.9 - 0.7)) / 2)


def test_forgetting_ties_in_max():
    R = np.array([[0.8, 0.0], [0.8, 0.9]])  # max over rows {0.8} (row 0 only, l < T-1)
    assert cm.forgetting(R) == pytest.approx(0.8 - 0.8)
    R_tie = np.array([[0.7, 0.0, 0.0], [0.7, 0.9, 0.0], [0.4, 0.9, 0.9]])
    assert cm.forgetting(R_tie) == pytest.approx(((0.7 - 0.4) + (0.9 - 0.9)) / 2)


def test_single_task():
    R = np.array([[0.7]])
    assert cm.average_accuracy(R) == pytest.approx(0.7)
    assert cm.average_incremental_accuracy(R) == pytest.approx(0.7)
    for value in (cm.forgetting(R), cm.bwt(R), cm.fwt(R, [0.1]), cm.performance_maintenance(R),
                  cm.forward_transfer(R, [0.1]), cm.backward_transfer(R)):
        assert value is None
    empty = make_stream({0: [(1, 0, 0.4), (2, 0, 0.6)]})
    assert cm.min_acc(empty, 1) is None
    assert cm.wc_acc(empty, R, 1) == pytest.approx(0.7)


def test_task_never_evaluated_nan_column():
    R = R3.copy()
    R[:, 1] = NAN
    assert cm.average_accuracy(R) == pytest.approx((0.5 + 0.85) / 2)
    assert cm.average_incremental_accuracy(R) == pytest.approx((0.9 + 0.6 + (0.5 + 0.85) / 2) / 3)
    assert cm.forgetting(R) == pytest.approx(0.9 - 0.5)
    assert cm.bwt(R) == pytest.approx(0.5 - 0.9)
    assert cm.fwt(R, B3) == pytest.approx(0.2 - 0.1)  # j=1 undefined
    all_nan = np.full((2, 2), NAN)
    assert cm.average_accuracy(all_nan) is None
    assert cm.forgetting(all_nan) is None


# ---- continual evaluation (De Lange et al. 2023) -------------------------------------------
def test_min_acc_and_wc_acc():
    stream = two_task_stream()
    assert cm.min_acc(stream, 2) == pytest.approx(0.2)  # task 0 after iteration 4
    assert cm.wc_acc(stream, R2, 2) == pytest.approx(0.5 * 0.85 + 0.5 * 0.2)


def test_gap_depth_is_end_of_training_accuracy_minus_min_after():
    # task 0 reached R[0, 0] = 0.9; its lowest evaluation after its training is 0.2
    assert cm.gap_depth(two_task_stream(), R2, 2) == pytest.approx(0.9 - 0.2)
    stream = make_stream({0: [(1, 0, 0.9), (2, 1, 0.3), (3, 2, 0.5)], 1: [(2, 1, 0.6), (3, 2, 0.7)]})
    R = np.array([[0.8, 0, 0], [0.4, 0.65, 0], [0.5, 0.6, 0.8]])
    assert cm.gap_depth(stream, R, 3) == pytest.approx(((0.8 - 0.3) + (0.65 - 0.7)) / 2)
    assert cm.gap_depth(make_stream({0: [(1, 0, 0.5)]}), np.array([[0.5]]), 1) is None


def test_min_acc_ties_and_missing_tasks():
    # Three tasks; task 1's rows are absent after its training: only task 0 counts.
    stream = make_stream({
        0: [(1, 0, 0.9), (2, 1, 0.3), (3, 1, 0.3), (4, 2, 0.5)],
        1: [(2, 1, 0.6), (3, 1, 0.7)],
    })
    assert cm.min_acc(stream, 3) == pytest.approx(0.3)
    R = np.array([[0.9, 0, 0], [0.4, 0.7, 0], [0.5, 0.6, 0.8]])
    assert cm.wc_acc(stream, R, 3) == pytest.approx(0.8 / 3 + (1 - 1 / 3) * 0.3)


def test_windowed_forgetting():
    stream = two_task_stream()
    # task 1 only rises (WF = 0); task 0's worst drops:
    assert cm.windowed_forgetting(stream, 2) == pytest.approx((0.4 + 0.0) / 2)    # 0.9 -> 0.5
    assert cm.windowed_forgetting(stream, 3) == pytest.approx((0.7 + 0.0) / 2)    # 0.9 -> 0.2 (lag 2)
    assert cm.windowed_forgetting(stream, 100) == pytest.approx((0.7 + 0.0) / 2)  # window > series
    assert cm.windowed_forgetting(stream, 1) == pytest.approx(0.0)


def test_windowed_plasticity():
    stream = two_task_stream()
    assert cm.windowed_plasticity(stream, 2) == pytest.approx((0.3 + 0.3) / 2)    # 0.3->0.6, 0.2->0.5
    assert cm.windowed_plasticity(stream, 3) == pytest.approx((0.5 + 0.4) / 2)    # 0.3->0.8, 0.2->0.6
    assert cm.windowed_plasticity(stream, 100) == pytest.approx(((0.9 - 0.3) + (0.9 - 0.2)) / 2)


def test_windowed_single_evaluation_counts_zero_and_bad_window():
    stream = make_stream({0: [(1, 0, 0.9), (2, 1, 0.6)], 1: [(2, 1, 0.4)]})
    assert cm.windowed_forgetting(stream, 10) == pytest.approx((0.3 + 0.0) / 2)
    assert cm.windowed_plasticity(stream, 10) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        cm.windowed_forgetting(stream, 0)


def test_stability_gap_two_tasks():
    [pair] = cm.stability_gap(two_task_stream(), 2)
    assert (pair["new_task"], pair["old_task"]) == (1, 0)
    assert pair["pre"] == pytest.approx(0.9)
    assert pair["low"] == pytest.approx(0.2)
    assert pair["drop"] == pytest.approx(0.9 - 0.2)
    assert pair["low_after"] == 6 - 5
    assert pair["end"] == pytest.approx(0.8)
    assert pair["recovery"] == pytest.approx(0.8 - 0.2)
    # half recovery target 0.2 + 0.7 / 2 = 0.55: 0.4 at it 7 no, 0.6 at it 8 yes
    assert pair["recover_iters"] == 8 - 6
    summary = cm.stability_gap_summary(two_task_stream(), 2)
    assert summary == pytest.approx({"gap_drop": 0.7, "gap_recovery": 0.6,
                                     "gap_recover_iters": 2.0, "gap_low_after": 1.0})


def test_stability_gap_ties_no_recovery_no_drop():
    stream = make_stream({
        # task 0: pre 0.9; dips to 0.2 twice during task 1 (first at it 4); ends 0.6
        0: [(1, 0, 0.8), (2, 0, 0.9), (3, 1, 0.5), (4, 1, 0.2), (5, 1, 0.2), (6, 1, 0.6),
            # during task 2: no half recovery (target 0.6 - ... see below)
            (7, 2, 0.3), (8, 2, 0.1), (9, 2, 0.2)],
        # task 1: pre 0.5 (it 6); during task 2 never below it: drop 0 -> recover_iters 0
        1: [(3, 1, 0.1), (6, 1, 0.5), (7, 2, 0.5), (8, 2, 0.7), (9, 2, 0.8)],
    })
    pairs = {(p["new_task"], p["old_task"]): p for p in cm.stability_gap(stream, 3)}
    assert set(pairs) == {(1, 0), (2, 0), (2, 1)}
    p10 = pairs[(1, 0)]
    assert p10["drop"] == pytest.approx(0.9 - 0.2)
    assert p10["low_after"] == 4 - 3                      # first of the tied minima
    assert p10["recover_iters"] == 6 - 4                  # target 0.55 first met at it 6
    p20 = pairs[(2, 0)]
    assert p20["pre"] == pytest.approx(0.6)
    assert p20["drop"] == pytest.approx(0.6 - 0.1)
    assert p20["recover_iters"] is None                   # target 0.35 never reached
    assert p20["low_after"] == 8 - 7
    p21 = pairs[(2, 1)]
    assert p21["drop"] == pytest.approx(0.0)
    assert p21["recover_iters"] == 0
    assert p21["low_after"] == 0
    summary = cm.stability_gap_summary(stream, 3)
    assert summary["gap_drop"] == pytest.approx((0.7 + 0.5 + 0.0) / 3)
    assert summary["gap_recovery"] == pytest.approx(((0.6 - 0.2) + (0.2 - 0.1) + (0.8 - 0.5)) / 3)
    assert summary["gap_recover_iters"] == pytest.approx((2 + 0) / 2)  # mean over defined
    assert summary["gap_low_after"] == pytest.approx((1 + 1 + 0) / 3)


def test_stability_gap_skips_pairs_without_evaluations():
    stream = make_stream({0: [(1, 0, 0.9)], 1: []})  # task 1 never trained in the stream
    assert cm.stability_gap(stream, 2) == []
    assert cm.stability_gap_summary(stream, 2) == {"gap_drop": None, "gap_recovery": None,
                                                   "gap_recover_iters": None, "gap_low_after": None}


# ---- lifelong-learning metrics (New et al. 2022, l2metrics) ----------------------------------
def test_performance_maintenance():
    expected = (((0.6 - 0.9) + (0.5 - 0.9)) / 2 + (0.7 - 0.8)) / 2
    assert cm.performance_maintenance(R3) == pytest.approx(expected)


def test_forward_transfer():
    # j=1: before initial[1]=0.2, after R[0,1]=0.1; j=2: before R[0,2]=0.05, after R[1,2]=0.2
    contrast = ((0.1 - 0.2) / (0.1 + 0.2) + (0.2 - 0.05) / (0.2 + 0.05)) / 2
    ratio = (0.1 / 0.2 + 0.2 / 0.05) / 2
    assert cm.forward_transfer(R3, INIT3, "contrast") == pytest.approx(contrast)
    assert cm.forward_transfer(R3, INIT3, "ratio") == pytest.approx(ratio)
    # all prior tasks (l2metrics' pair set) adds (k=0, j=2): before initial[2]=0.1, after R[0,2]=0.05
    all_ratio = (0.1 / 0.2 + 0.05 / 0.1 + 0.2 / 0.05) / 3
    assert cm.forward_transfer(R3, INIT3, "ratio", all_prior=True) == pytest.approx(all_ratio)
    with pytest.raises(ValueError):
        cm.forward_transfer(R3, INIT3, "difference")


def test_forward_transfer_skips_zero_denominators():
    R = np.array([[0.9, 0.0, 0.0], [0.5, 0.8, 0.3], [0.4, 0.7, 0.9]])
    init = [0.1, 0.0, 0.1]
    # j=1: before 0, after 0 -> undefined for both; j=2: before R[0,2]=0, after R[1,2]=0.3
    assert cm.forward_transfer(R, init, "contrast") == pytest.approx((0.3 - 0.0) / (0.3 + 0.0))
    assert cm.forward_transfer(R, init, "ratio") is None


def test_backward_transfer():
    # pairs (j, k): (0,1) 0.9->0.6, (0,2) 0.6->0.5, (1,2) 0.8->0.7
    ratio = (0.6 / 0.9 + 0.5 / 0.6 + 0.7 / 0.8) / 3
    contrast = ((0.6 - 0.9) / 1.5 + (0.5 - 0.6) / 1.1 + (0.7 - 0.8) / 1.5) / 3
    assert cm.backward_transfer(R3, "ratio") == pytest.approx(ratio)
    assert cm.backward_transfer(R3, "contrast") == pytest.approx(contrast)


def test_relative_to_expert():
    # task 0: LL 4 evals, expert 3 -> first 3; task 1: 6 and 6.
    task0 = (0.3 + 0.6 + 0.8) / (0.5 + 0.8 + 0.9)
    task1 = (0.2 + 0.5 + 0.6 + 0.7 + 0.8 + 0.9) / (0.4 + 0.8 + 0.9 + 0.9 + 0.9 + 0.9)
    assert cm.relative_to_expert(two_task_stream(), expert_stream()) == pytest.approx((task0 + task1) / 2)


def test_sample_efficiency():
    # task 0: LL max 0.9 at index 3, expert 0.9 at index 2; task 1: LL 0.9 at 5, expert 0.9 first at 2
    expected = ((0.9 / 0.9) * (2 / 3) + (0.9 / 0.9) * (2 / 5)) / 2
    assert cm.sample_efficiency(two_task_stream(), expert_stream()) == pytest.approx(expected)


def test_sample_efficiency_l2metrics_guards():
    expert = make_stream({0: [(1, 0, 0.2), (2, 0, 0.9)], 1: [(1, 1, 0.9), (2, 1, 0.8)]})
    # task 0 LL falls overall (slope < 0) -> 0; task 1: expert saturates at index 0 -> skipped
    falling = make_stream({0: [(1, 0, 0.5), (2, 0, 0.9), (3, 0, 0.4), (4, 0, 0.3)],
                           1: [(5, 1, 0.1), (6, 1, 0.5)]})
    assert cm.sample_efficiency(falling, expert) == pytest.approx(0.0)
    # LL saturation below 20% of the expert's -> 0
    weak = make_stream({0: [(1, 0, 0.05), (2, 0, 0.1)]})
    assert cm.sample_efficiency(weak, expert) == pytest.approx(0.0)


def test_l2_smooth_matches_hand_moving_average():
    x = np.arange(15.0)  # n = 15 -> window int(0.2 * 15) = 3, reflected padding
    y = cm.l2_smooth(x)
    assert len(y) == 15
    assert y[0] == pytest.approx((2 + 1 + 0) / 3)
    assert y[1] == pytest.approx((1 + 0 + 1) / 3)
    assert y[2] == pytest.approx((0 + 1 + 2) / 3)
    assert y[14] == pytest.approx((12 + 13 + 14) / 3)
    short = np.arange(14.0)  # window int(2.8) = 2 < 3 -> unchanged
    assert np.array_equal(cm.l2_smooth(short), short)


# ---- invariance and the flat dict ------------------------------------------------------------
def test_row_order_invariance():
    stream, expert = two_task_stream(), expert_stream()
    base = cm.continual_metrics(R2, stream, [0.1, 0.1], [0.1, 0.1], expert, windows=(2, 3, 100))
    for seed in range(3):
        other = cm.continual_metrics(R2, shuffled(stream, seed), [0.1, 0.1], [0.1, 0.1],
                                     shuffled(expert, seed + 10), windows=(2, 3, 100))
        assert other == pytest.approx(base)
    assert cm.stability_gap(shuffled(stream, 5), 2) == cm.stability_gap(stream, 2)


def test_continual_metrics_keys_and_values():
    stream = two_task_stream()
    out = cm.continual_metrics(R2, stream, [0.1, 0.2], [0.1, 0.1])
    expected_keys = ["avg_acc", "avg_incremental_acc", "forgetting", "bwt", "fwt", "min_acc", "wc_acc",
                     "gap_depth", "wf10", "wp10", "wf100", "wp100", "gap_drop", "gap_recovery", "gap_recover_iters",
                     "gap_low_after", "perf_maintenance", "forward_transfer", "backward_transfer"]
    assert list(out) == expected_keys
    assert out["avg_acc"] == pytest.approx((0.75 + 0.85) / 2)
    assert out["forgetting"] == pytest.approx(0.9 - 0.75)
    assert out["fwt"] == pytest.approx(0.1 - 0.1)
    assert out["wf10"] == pytest.approx((0.7 + 0.0) / 2)
    assert out["forward_transfer"] == pytest.approx((0.1 - 0.2) / (0.1 + 0.2))
    with_expert = cm.continual_metrics(R2, stream, [0.1, 0.2], [0.1, 0.1], expert_stream())
    assert list(with_expert) == expected_keys + ["relative_to_expert", "sample_efficiency"]
    assert set(with_expert) <= set(cm.METRIC_DEFINITIONS)


def test_continual_metrics_single_task_keeps_none():
    stream = make_stream({0: [(1, 0, 0.4), (2, 0, 0.6)]})
    out = cm.continual_metrics(np.array([[0.7]]), stream, [0.1], [0.1])
    assert out["avg_acc"] == pytest.approx(0.7)
    assert out["wc_acc"] == pytest.approx(0.7)
    for key in ("forgetting", "bwt", "fwt", "min_acc", "gap_drop", "perf_maintenance",
                "forward_transfer", "backward_transfer"):
        assert key in out and out[key] is None
    assert out["wp10"] == pytest.approx(0.6 - 0.4)


def test_every_metric_declares_its_range_and_the_examples_lie_in_it():
    out = cm.continual_metrics(R2, two_task_stream(), [0.1, 0.2], [0.1, 0.1], expert_stream(), windows=(2, 10))
    for key, value in out.items():
        low, high = cm.metric_range(key)
        assert low <= value <= high, key
    assert set(cm.METRIC_RANGES) | {"wf10", "wp10", "wf100", "wp100"} == set(cm.METRIC_DEFINITIONS)
    assert cm.metric_range("wf7") == (0.0, 1.0) and cm.metric_range("test_acc") is None


def test_gap_depth_is_negative_under_backward_transfer_and_recovery_never_is():
    # task 0 reaches R[0, 0] = 0.6; every evaluation while task 1 trains lies above it
    stream = make_stream({0: [(1, 0, 0.6), (2, 1, 0.7), (3, 1, 0.65), (4, 1, 0.8)],
                          1: [(2, 1, 0.5), (3, 1, 0.6), (4, 1, 0.7)]})
    assert cm.gap_depth(stream, np.array([[0.6, 0.1], [0.8, 0.7]]), 2) == pytest.approx(0.6 - 0.65)
    assert cm.stability_gap_summary(stream, 2)["gap_recovery"] == pytest.approx(0.8 - 0.65)
    assert cm.metric_range("gap_depth") == (-1.0, 1.0) and cm.metric_range("gap_recovery") == (0.0, 1.0)
