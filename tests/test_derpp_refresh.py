"""Issue 15 (refresh on DER++): the DER++ loss on a hand-computed case, the logits it
stores, and refresh's ||refresh update|| / ||SGD update|| on a hand-computed step."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.refresh import Refresh
from lifelearn.continual.scenarios import build_scenario
from lifelearn.continual.strategies import build_plugins
from lifelearn.continual.strategies.derpp import DERpp
from lifelearn.continual.template import ContinualLearner
from lifelearn.data import Dataset
from lifelearn.models import build_model
from conftest import identity_head


class _Learner:
    """The two things a strategy's batch_loss uses: the model and the (class-IL, unmasked) CE."""

    def __init__(self, model, seed=0):
        self.model, self.seed, self.generator = model, seed, torch.Generator().manual_seed(seed)

    def ce(self, out, y, t):
        return F.cross_entropy(out, y)


def _derpp_with(samples, alpha, beta):
    d = DERpp(buffer=len(samples), replay_batch=len(samples), alpha=alpha, beta=beta)
    d.buffer = ReservoirBuffer(len(samples), torch.Generator().manual_seed(0))
    for x, y, z in samples:
        d.buffer.add(torch.tensor([x]), torch.tensor([y]), torch.zeros(1, dtype=torch.long), torch.tensor([z]))
    return d


# ---- DER++ ---------------------------------------------------------------------------------------
def test_derpp_loss_is_ce_plus_alpha_mse_on_logits_plus_beta_ce_on_labels():
    # f = identity logits. current: x = (0, 0), y 0 -> CE = log 2.
    # buffer: x1 = (1, -1), y1 = 1, z1 = (0, 0);  x2 = (2, 0), y2 = 0, z2 = (2, 1);
    # each draw takes both (replay_batch = buffer size; the means do not depend on the order):
    # MSE = mean of (1, 1, 0, 1) = 0.75;  CE = (log(1 + e^2) + log(1 + e^-2)) / 2
    model = identity_head()
    d = _derpp_with([([1.0, -1.0], 1, [0.0, 0.0]), ([2.0, 0.0], 0, [2.0, 1.0])], alpha=0.5, beta=2.0)
    x, y, t = torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1, dtype=torch.long)
    loss = d.batch_loss(_Learner(model), x, y, t, x, model(x)).item()
    ce_buf = (math.log(1 + math.exp(2)) + math.log(1 + math.exp(-2))) / 2
    assert loss == pytest.approx(math.log(2) + 0.5 * 0.75 + 2.0 * ce_buf, rel=1e-6)  # = 3.322003
    assert loss == pytest.approx(3.322003, abs=1e-6)


def test_derpp_draws_its_two_terms_independently():
    # buffer of 2, draws of 1: the MSE sample and the CE sample are separate draws, so over
    # many steps all four (MSE sample, CE sample) pairs occur
    model = identity_head()
    d = _derpp_with([([1.0, 0.0], 0, [5.0, 0.0]), ([0.0, 1.0], 1, [0.0, 0.0])], alpha=1.0, beta=0.0)
    d.replay_batch = 1
    x, y = torch.zeros(1, 2), torch.tensor([0])
    # beta 0: loss = log 2 + MSE of the first draw: (1-5)^2/2 = 8 for sample 1, (0+1)/2 = 0.5 for sample 2
    pairs = set()
    for _ in range(40):
        state = d.buffer.generator.get_state()
        loss = d.batch_loss(_Learner(model), x, y, None, x, model(x)).item()
        g = torch.Generator().set_state(state)
        first, second = int(torch.randperm(2, generator=g)[0]), int(torch.randperm(2, generator=g)[0])
        assert loss == pytest.approx(math.log(2) + (8.0 if first == 0 else 0.5), rel=1e-6)
        pairs.add((first, second))
    assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_derpp_without_buffer_is_the_ce_and_stores_the_logits_of_the_loss_forward():
    model = identity_head()
    d = DERpp(buffer=4, replay_batch=2, alpha=0.3, beta=0.7)
    d.buffer = ReservoirBuffer(4, torch.Generator().manual_seed(0))
    x, y, t = torch.tensor([[1.0, 3.0]]), torch.tensor([1]), torch.zeros(1, dtype=torch.long)
    out = model(x)
    assert d.batch_loss(_Learner(model), x, y, t, x, out).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    with torch.no_grad():
        model.weight.mul_(2.0)  # the optimiser's step: the buffer keeps the logits before it
    d.after_step(_Learner(model), x, y, t)
    assert torch.equal(d.buffer.z[0], torch.tensor([1.0, 3.0])) and int(d.buffer.y[0]) == 1
    with pytest.raises(ValueError, match="logits for every sample or for none"):
        d.buffer.add(x, y, t)
    with pytest.raises(ValueError, match="derpp.alpha"):
        DERpp(alpha=-1.0)


# ---- refresh's step against the optimiser's ----------------------------------------------------
def test_refresh_to_sgd_update_ratio_on_a_hand_computed_step():
    # W = diag(3, 4), b = 0: with no noise and no Fisher the refresh step of a tensor is
    # delta * ||p|| along the ascent direction, so its global norm is delta * ||W|| = 5 delta
    # (b has norm 0: step 0). The "optimiser step" below changes W by a tensor of norm 0.01,
    # then (same start) by one of norm 0.02: r = 0.5, then 0.25; the task's mean is 0.375.
    model = nn.Linear(2, 2)
    learner = _Learner(model, seed=3)
    start = {"weight": torch.diag(torch.tensor([3.0, 4.0])), "bias": torch.zeros(2)}
    ref = Refresh(ascent_lr=0.01, delta=1e-3, noise=0.0)
    ref.before_task(learner, None)
    x, y = torch.tensor([[1.0, 2.0], [0.5, -1.0]]), torch.tensor([0, 1])
    for sgd_change in (torch.tensor([[0.006, 0.0], [0.0, 0.008]]), torch.tensor([[0.0, 0.012], [0.016, 0.0]])):
        model.load_state_dict(start)
        ref.before_step(learner, x, y, None)
        assert math.sqrt(sum(float((p.detach() - start[k]).pow(2).sum()) for k, p in model.named_parameters())) \
            == pytest.approx(5e-3, rel=1e-4)  # float32 weights near 3: ulp 2.4e-7
        with torch.no_grad():
            model.weight.add_(sgd_change)
        ref.after_step(learner, x, y, None)
    assert ref._task_ratios == pytest.approx([0.5, 0.25], rel=1e-4)
    ref.close_task_ratio()
    assert ref.ratios == pytest.approx([0.375], rel=1e-4) and ref._task_ratios == []
    assert ref.run_metrics() == pytest.approx({"refresh_sgd_ratio_task0": 0.375, "refresh_sgd_ratio_mean": 0.375}, rel=1e-4)


def _small_dataset(classes=4, n=8, d=6, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)

    def split(k):
        y = np.repeat(np.arange(classes), k)
        return (rng.normal(size=(len(y), d)) + y[:, None]).astype(np.float32), y.astype(np.int64)

    (xtr, ytr), (xv, yv), (xte, yte) = split(n), split(2), split(3)
    return Dataset("fake", classes, (d,), (0.0,), (1.0,), "none", xtr, ytr, xv, yv, xte, yte)


def test_derpp_with_refresh_trains_and_reports_the_ratio_per_task():
    ds = _small_dataset()
    sc = build_scenario(ds, "class_incremental", 2, seed=0)
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [5]}, ds.input_shape, 4)
    plugins = build_plugins({"derpp": {"buffer": 6, "replay_batch": 4, "alpha": 0.2, "beta": 1.0}}, refresh=True)
    learner = ContinualLearner(model, sc, plugins, {"epochs": 2, "batch_size": 4, "optimizer": "sgd", "lr": 0.1,
                                                    "weight_decay": 1e-4}, seed=0)
    learner.fit()
    derpp, ref = plugins
    assert len(derpp.buffer) == 6 and derpp.buffer.z.shape == (6, 4)
    m = ref.run_metrics()
    assert set(m) == {"refresh_sgd_ratio_task0", "refresh_sgd_ratio_task1", "refresh_sgd_ratio_mean"}
    assert all(0 < v < 1 for v in m.values())  # small next to the SGD step, but not zero
    assert m["refresh_sgd_ratio_mean"] == pytest.approx((m["refresh_sgd_ratio_task0"] + m["refresh_sgd_ratio_task1"]) / 2)
    assert derpp.run_metrics() == {}


# ---- report -------------------------------------------------------------------------------------
def test_report_names_derpp_weights_the_control_and_tabulates_the_ratio():
    import pandas as pd

    from lifelearn.config import load_config
    from lifelearn.report.sections.continual import _derpp_line, refresh_note, refresh_ratio_table

    from conftest import REPO

    line = _derpp_line(load_config(REPO / "config", "default"), "class_il")
    assert "`ci_derpp`: alpha 0.2, beta 1.0" in line and "weight decay 0" in line
    assert "`ci_derpp_wd` (the weight-decay control: refresh's optimiser without refresh)" in line
    assert "`ci_derpp_refresh` + refresh: alpha 0.2, beta 1.0" in line and "weight decay 0.0001" in line
    assert _derpp_line(load_config(REPO / "config", "default"), "online_ci") == ""
    runs = [("ci_derpp_wd", pd.DataFrame({"avg_acc": [0.8, 0.9]})),
            ("ci_derpp_refresh", pd.DataFrame({"refresh_sgd_ratio_task0": [1e-3, 3e-3], "refresh_sgd_ratio_task1": [2e-3, 2e-3],
                                               "refresh_sgd_ratio_mean": [1.5e-3, 2.5e-3]}))]
    header, rows = refresh_ratio_table(runs)
    assert header == ["run", "seeds", "task 0", "task 1", "all tasks"]
    # task 0: mean 2e-3, std (ddof 1) sqrt(2) * 1e-3; task 1: 2e-3 ± 0; all: 2e-3 ± sqrt(2)/2 * 1e-3
    assert rows == [["ci_derpp_refresh", 2, "2.00e-03 ± 1.41e-03", "2.00e-03 ± 0.00e+00", "2.00e-03 ± 7.07e-04"]]
    assert "1.50e-03 to 2.50e-03" in refresh_note(runs) and "small next to an SGD step" in refresh_note(runs)
    assert refresh_ratio_table(runs[:1]) is None and refresh_note(runs[:1]) == ""


# ---- the study's train step: metrics.json and the MLflow series -----------------------------------
def test_train_seed_keeps_the_ratio_in_metrics_json_and_logs_it_per_task(tmp_path, digits_dir, run_ctx):
    import json
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from lifelearn.config import load_config
    from lifelearn.continual.configs import resolve_run
    from lifelearn.data import load_dataset
    from lifelearn.studies.continual import TRAIN_FILES, train_seed

    from conftest import REPO

    cfg = resolve_run(load_config(REPO / "config", "smoke"), "ci_derpp_refresh")
    cfg["strategies"]["derpp"]["replay_batch"] = 16
    job = SimpleNamespace(spec=cfg, name="ci_derpp_refresh", step="train", ctx=run_ctx)
    out = {k: tmp_path / f"seed0-{f}" for k, f in TRAIN_FILES.items()}
    train_seed(job, load_dataset(digits_dir), digits_dir, 0, out, None, None)
    record = json.loads(out["metrics"].read_text())
    assert record["method"] == "derpp+refresh"
    m = record["metrics"]
    per_task = [m[f"refresh_sgd_ratio_task{j}"] for j in range(5)]
    assert all(0 < r < 1 for r in per_task) and m["refresh_sgd_ratio_mean"] == pytest.approx(np.mean(per_task))
    series = sorted(MlflowClient(run_ctx.tracking_uri).get_metric_history(record["run_id"], "refresh_sgd_ratio"),
                    key=lambda p: p.step)
    assert [p.step for p in series] == list(range(5))
    assert [p.value for p in series] == pytest.approx(per_task)
