"""Issue 15: the continual protocols that decide verdicts: ER's loss combination, the
no-switch control stream, LwF-MC and regularisation anchored at the pretrained start, DER++."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.strategies.er import ER
from conftest import identity_head


def _learner(model):
    return type("L", (), {"model": model, "ce": lambda self, o, y, t: F.cross_entropy(o, y)})()


# ---- ER's two reductions -------------------------------------------------------------------------
@pytest.mark.parametrize("combine", ["mean", "sum"])
def test_er_combines_current_and_replay_ce_as_configured(combine):
    # current: x = e0 (y 0), e1 (y 1) -> logits e0, e1: CE = log(1 + e^-1) each
    # replay:  x = (0, 2) (y 0)       -> logits (0, 2): CE = log(1 + e^2)
    model = identity_head()
    er = ER(buffer=1, replay_batch=1, combine=combine)
    er.buffer = ReservoirBuffer(1, torch.Generator().manual_seed(0))
    er.buffer.add(torch.tensor([[0.0, 2.0]]), torch.tensor([0]), torch.zeros(1, dtype=torch.long))
    x, y, t = torch.eye(2), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long)
    loss = er.batch_loss(_learner(model), x, y, t, x, model(x)).item()
    cur, rep = math.log(1 + math.exp(-1)), math.log(1 + math.exp(2))
    expected = {"mean": (2 * cur + rep) / 3, "sum": cur + rep}[combine]
    assert loss == pytest.approx(expected, rel=1e-6)


def test_er_without_replay_is_the_current_ce_and_an_unknown_combination_fails():
    model = identity_head()
    for combine in ("mean", "sum"):
        er = ER(buffer=4, replay_batch=2, combine=combine)
        er.buffer = ReservoirBuffer(4, torch.Generator().manual_seed(0))
        x, y = torch.eye(2), torch.tensor([0, 1])
        assert er.batch_loss(_learner(model), x, y, None, x, model(x)).item() == pytest.approx(math.log(1 + math.exp(-1)))
    with pytest.raises(ValueError, match="combine"):
        ER(combine="max")


def test_the_uer_study_gives_er_the_sum_and_both_the_same_lr_selection():
    from lifelearn.config import load_config
    from conftest import REPO

    for profile in ("default", "smoke"):
        runs = load_config(REPO / "config", profile)["continual"]["runs"]
        pairs = [("online_er_m100", "online_uer_m100")] + ([("online_er_m200", "online_uer_m200")]
                                                           if profile == "default" else [])
        for er, uer in pairs:
            assert runs[er]["strategies"]["er"]["combine"] == "sum"
            assert runs[er]["tune"] == runs[uer]["tune"] and list(runs[er]["tune"]["grid"]) == ["train.lr"]
        assert runs["ci_er"]["strategies"]["er"].get("combine", "mean") == "mean"


# ---- the no-switch control ------------------------------------------------------------------------
def _digits_like(n_per_class=(30, 20, 25, 35, 40, 22, 28, 31, 26, 33)):
    """A fake dataset with unequal class sizes, so proportions are not trivially equal."""
    from dataclasses import replace

    from test_continual import fake_dataset

    ds = fake_dataset(n_per_class=max(n_per_class))
    keep = np.concatenate([np.nonzero(ds.y_train == c)[0][:n] for c, n in enumerate(n_per_class)])
    return replace(ds, x_train=ds.x_train[keep], y_train=ds.y_train[keep])


@pytest.mark.parametrize("seed", [0, 3])
def test_the_no_switch_stream_has_the_real_length_and_class_proportions_per_segment(seed):
    from lifelearn.continual.scenarios import build_stream

    ds = _digits_like()
    real = build_stream(ds, "class_incremental", 5, seed)
    ctrl = build_stream(ds, "class_incremental", 5, seed, "no_switch")
    shown = np.zeros(10)
    for i, (r, c) in enumerate(zip(real.tasks, ctrl.tasks)):
        assert len(c.y_train) == len(r.y_train) and c.classes == r.classes
        assert torch.equal(c.x_test, r.x_test) and torch.equal(c.y_test, r.y_test)
        shown += np.bincount(r.y_train.numpy(), minlength=10)   # what the real stream showed up to segment i
        got = np.bincount(c.y_train.numpy(), minlength=10)
        want = len(r.y_train) * shown / shown.sum()
        assert np.all(np.abs(got - want) < 1), (i, got, want)   # largest remainder: within one sample
        seen = set().union(*(t.classes for t in real.tasks[:i + 1]))
        assert set(np.unique(c.y_train.numpy())) <= seen
        # drawn without replacement from the union of the seen tasks' training samples
        pool = torch.cat([t.x_train for t in real.tasks[:i + 1]]).flatten(1)
        rows = {tuple(v.tolist()) for v in pool}
        assert all(tuple(v.tolist()) in rows for v in c.x_train.flatten(1))
    assert ctrl.tasks[0].y_train.sort().values.tolist() == real.tasks[0].y_train.sort().values.tolist()


def test_the_control_is_trained_and_evaluated_on_the_real_schedule():
    from lifelearn.continual.evaluation import ContinualEvaluator
    from lifelearn.continual.scenarios import build_stream
    from lifelearn.continual.strategies import build_plugins
    from lifelearn.continual.template import ContinualLearner
    from lifelearn.models import build_model

    ds = _digits_like()
    rows = {}
    for stream in ("tasks", "no_switch"):
        sc = build_stream(ds, "class_incremental", 5, 0, stream)
        torch.manual_seed(0)
        model = build_model({"arch": "mlp", "hidden": [8]}, ds.input_shape, 10)
        ev = ContinualEvaluator(sc, every=1, subset=7, seed=0)
        ContinualLearner(model, sc, build_plugins({"er": {"buffer": 20, "replay_batch": 4, "combine": "sum"}}),
                         {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.1}, seed=0, evaluator=ev).fit()
        rows[stream] = [(r["iteration"], r["current_task"], r["eval_task"]) for r in ev.rows]
    assert rows["tasks"] == rows["no_switch"]
    with pytest.raises(ValueError, match="task-incremental"):
        build_stream(ds, "task_incremental", 5, 0, "no_switch")


def test_a_control_takes_the_learning_rate_its_real_run_selected():
    from lifelearn.config import load_config
    from lifelearn.jobs import Layout
    from lifelearn.studies import continual
    from lifelearn.tuning import TUNED
    from conftest import REPO

    cfg = load_config(REPO / "config", "smoke")
    jobs = {j.rule: j for j in continual.jobs(cfg, Layout("smoke"))}
    ctrl = jobs["continual_online_er_m100_noswitch"]
    assert ctrl.spec["train"]["lr"] == TUNED and ctrl.spec["stream"] == "no_switch"
    assert ctrl.inputs["selection"] == jobs["continual_online_er_m100_select"].outputs["selection"]
    assert not any(r.startswith("continual_online_er_m100_noswitch_tune") for r in jobs)


def test_the_report_states_the_er_combination_and_the_windows_in_iterations():
    from lifelearn.config import load_config
    from lifelearn.report.sections.continual import _er_line, _window_line
    from conftest import REPO

    cfg = load_config(REPO / "config", "default")
    line = _er_line(cfg, "online_ci")
    assert "CE(current) + CE(replay)" in line and "`online_er_m100`" in line and "`online_er_m100_noswitch`" in line
    assert "one CE over current + replay" in _er_line(cfg, "class_il")
    assert "WF^10 / WP^10 span 10 evaluations = 50 iterations" in _window_line(cfg, "pretrained_ci")


# ---- Smith et al. 2023: LwF-MC, regularisation from the pretrained start ------------------------------
def test_lwf_mc_loss_matches_a_hand_computed_bce():
    from lifelearn.continual.strategies.lwf_mc import lwf_mc_loss

    # 3 classes; class 0 old (previous model's logit 0 -> target 0.5), y = 1 (current), class 2 unseen (target 0)
    z = torch.tensor([[1.0, 2.0, -1.0]])
    loss = lwf_mc_loss(z, torch.tensor([1]), torch.tensor([[0.0]]), [0]).item()
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    bce = lambda p, q: -(q * math.log(p) + (1 - q) * math.log(1 - p))  # noqa: E731
    expected = (bce(s(1.0), 0.5) + bce(s(2.0), 1.0) + bce(s(-1.0), 0.0)) / 3
    assert loss == pytest.approx(expected, rel=1e-6)
    # without a previous model: the one-hot target
    assert lwf_mc_loss(z, torch.tensor([1]), None, []).item() == pytest.approx(
        (bce(s(1.0), 0.0) + bce(s(2.0), 1.0) + bce(s(-1.0), 0.0)) / 3, rel=1e-6)


def _pretrained_learner(strategies):
    from lifelearn.continual.scenarios import build_scenario
    from lifelearn.continual.strategies import build_plugins
    from lifelearn.continual.template import ContinualLearner
    from lifelearn.models import build_model
    from test_continual import fake_dataset

    ds = fake_dataset()
    sc = build_scenario(ds, "class_incremental", 5, seed=0)
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [8]}, ds.input_shape, 10)
    plugins = build_plugins(strategies)
    return ContinualLearner(model, sc, plugins, {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.5},
                            seed=0), plugins, sc


def test_l2_from_start_is_anchored_at_the_pretrained_weights_and_acts_in_task_1():
    learner, (l2,), sc = _pretrained_learner({"l2": {"weight": 1.0, "backbone_only": True, "from_start": True}})
    start = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
    task = sc.tasks[0]
    learner.current_task, learner.seen_classes = 0, list(task.classes)
    l2.before_task(learner, task)
    assert set(l2.anchor) == {k for k in start if not k.startswith("head.")}
    assert all(torch.equal(l2.anchor[k], start[k]) for k in l2.anchor)
    x, y, t = task.x_train[:8], task.y_train[:8], learner.task_ids(task, 8)
    assert l2.extra_loss(learner, x, y, t, None, None).item() == 0.0
    opt = torch.optim.SGD(learner.model.parameters(), lr=0.5)
    opt.zero_grad()
    learner.step_loss(x, y, t).backward()
    opt.step()
    penalty = l2.extra_loss(learner, x, y, t, None, None).item()
    backbone = sum((p - start[k]).pow(2).sum().item() for k, p in learner.model.named_parameters()
                   if not k.startswith("head."))
    assert penalty > 0 and penalty == pytest.approx(backbone, rel=1e-5)
    # the head moved too, but is not penalised
    assert not torch.equal(learner.model.head.weight, start["head.weight"])


def test_plain_l2_and_ewc_wait_for_task_1_and_ewc_from_start_has_zero_fisher_in_task_1():
    learner, (l2, ewc), sc = _pretrained_learner({"l2": {}, "ewc": {"backbone_only": True, "from_start": True}})
    task = sc.tasks[0]
    learner.current_task, learner.seen_classes = 0, list(task.classes)
    l2.before_task(learner, task), ewc.before_task(learner, task)
    assert l2.anchor is None
    assert all(float(f.abs().sum()) == 0 for f in ewc.fisher.values()) and "head.weight" not in ewc.anchor
    learner.train_task(task)
    assert set(ewc.fisher) == set(ewc.anchor) and any(float(f.sum()) > 0 for f in ewc.fisher.values())
    assert "head.weight" in l2.anchor


def test_the_smith_pair_uses_lwf_mc_and_backbone_regularisation_from_the_start():
    from lifelearn.config import load_config
    from conftest import REPO

    runs = load_config(REPO / "config", "default")["continual"]["runs"]
    for name, reg in (("pt_lwf_l2", "l2"), ("pt_lwf_ewc", "ewc")):
        s = runs[name]["strategies"]
        assert "lwf_mc" in s and "lwf" not in s
        assert s[reg]["backbone_only"] and s[reg]["from_start"]
        assert list(runs[name]["tune"]["grid"]) == [f"strategies.{reg}.weight"]
