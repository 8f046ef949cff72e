"""Continual learning units: scenarios, reservoir buffer, penalties and losses with hand
values, UER's logits, one refresh step, evaluation metrics, config vs registry."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from scipy import stats
from torch import nn

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.evaluation import ContinualEvaluator
from lifelearn.continual.refresh import Refresh
from lifelearn.continual.scenarios import build_scenario, split_classes
from lifelearn.continual.strategies import STRATEGIES, build_plugins, strategy_names
from lifelearn.continual.strategies.ewc import EWC
from lifelearn.continual.strategies.l2 import L2, weighted_l2_penalty
from lifelearn.continual.strategies.lwf import lwf_loss
from lifelearn.continual.strategies.uer import cosine_logits, dot_logits
from lifelearn.continual.template import ContinualLearner, Plugin
from lifelearn.data import Dataset
from lifelearn.models import build_model

from conftest import REPO


def fake_dataset(n_per_class=12, classes=10, shape=(1, 4, 4), seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    def split(n):
        y = np.repeat(np.arange(classes), n)
        x = rng.random((len(y), *shape), dtype=np.float32) * 0.3 + (y[:, None, None, None] / classes).astype(np.float32)
        return x.astype(np.float32), y.astype(np.int64)
    (xtr, ytr), (xv, yv), (xte, yte) = split(n_per_class), split(2), split(5)
    return Dataset("fake", classes, shape, (0.5,), (0.3,), "none", xtr, ytr, xv, yv, xte, yte)


# ---- scenarios -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["class_incremental", "task_incremental"])
def test_split_scenarios_have_disjoint_classes_and_task_ids(kind):
    ds = fake_dataset()
    sc = build_scenario(ds, kind, 5, seed=3)
    groups = [set(t.classes) for t in sc.tasks]
    assert [t.task_id for t in sc.tasks] == [0, 1, 2, 3, 4]
    assert all(len(g) == 2 for g in groups) and set().union(*groups) == set(range(10))
    assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1:])
    for t in sc.tasks:
        assert set(t.y_train.tolist()) == set(t.classes) == set(t.y_test.tolist())
        assert len(t.y_train) == 24 and len(t.y_test) == 10
    if kind == "task_incremental":
        assert sc.task_aware and [set(torch.where(m)[0].tolist()) for m in sc.masks] == groups
    else:
        assert not sc.task_aware and bool(sc.masks.all())


def test_class_order_is_seeded():
    assert split_classes(10, 5, 0) == split_classes(10, 5, 0)
    assert split_classes(10, 5, 0) != split_classes(10, 5, 1)


def test_domain_incremental_permutes_pixels_with_fixed_permutations():
    ds = fake_dataset()
    sc = build_scenario(ds, "domain_incremental", 3, seed=0)
    x0, x1, x2 = (t.x_train.reshape(len(t.x_train), -1) for t in sc.tasks)
    assert torch.equal(x0, torch.from_numpy(ds.x_train).reshape(len(x0), -1))
    assert torch.equal(x1.sort(1).values, x0.sort(1).values) and not torch.equal(x1, x0)
    assert not torch.equal(x1, x2)
    perm = [int(torch.where(x0[0] == v)[0][0]) for v in x1[0]]  # train's permutation applies to test too
    assert torch.equal(sc.tasks[1].x_test.reshape(-1, 16), torch.from_numpy(ds.x_test).reshape(-1, 16)[:, perm])
    assert all(torch.equal(t.y_train, sc.tasks[0].y_train) for t in sc.tasks)


# ---- reservoir buffer ----------------------------------------------------------------------
def test_reservoir_buffer_keeps_a_uniform_sample():
    g = torch.Generator().manual_seed(0)
    n, capacity, trials = 60, 6, 1500
    counts = np.zeros(n)
    for _ in range(trials):
        buf = ReservoirBuffer(capacity, g)
        for i in range(0, n, 10):  # batches of 10, as in an online stream
            ids = torch.arange(i, i + 10)
            buf.add(ids.float().view(-1, 1), ids, torch.zeros(10, dtype=torch.long))
        assert len(buf) == capacity and buf.seen == n
        counts[buf.y.numpy()] += 1
    expected = trials * capacity / n
    assert stats.chisquare(counts, np.full(n, expected)).pvalue > 0.01
    # early and late items equally likely (a FIFO or "keep first" buffer fails this)
    assert abs(counts[:20].mean() - counts[-20:].mean()) < 0.15 * expected


def test_reservoir_sample_draws_without_replacement():
    buf = ReservoirBuffer(5, torch.Generator().manual_seed(1))
    assert buf.sample(3) is None
    buf.add(torch.arange(3.).view(-1, 1), torch.arange(3), torch.zeros(3, dtype=torch.long))
    x, y, t = buf.sample(10)
    assert sorted(y.tolist()) == [0, 1, 2]


# ---- penalties and losses ----------------------------------------------------------------------
def tiny_linear():
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 2.0]]))
        m.bias.copy_(torch.tensor([0.5]))
    return m


def test_l2_and_ewc_penalties_match_hand_values():
    m = tiny_linear()
    anchor = {"weight": torch.zeros(1, 2), "bias": torch.zeros(1)}
    assert weighted_l2_penalty(m, anchor).item() == pytest.approx(1 + 4 + 0.25)
    fisher = {"weight": torch.tensor([[2.0, 0.0]]), "bias": torch.tensor([4.0])}
    assert weighted_l2_penalty(m, anchor, fisher).item() == pytest.approx(2 * 1 + 0 * 4 + 4 * 0.25)
    learner = type("L", (), {"model": m})()
    l2 = L2(weight=0.5)
    l2.anchor = anchor
    assert l2.extra_loss(learner, None, None, None, None, None).item() == pytest.approx(0.5 * 5.25)
    ewc = EWC(weight=10.0)
    assert ewc.extra_loss(learner, None, None, None, None, None) is None  # no penalty before a task ended
    ewc.anchor, ewc.fisher = anchor, fisher
    assert ewc.extra_loss(learner, None, None, None, None, None).item() == pytest.approx(10 * 3.0)


def test_diagonal_fisher_is_the_mean_squared_per_sample_gradient():
    from lifelearn.continual.fisher import diagonal_fisher

    head = nn.Linear(2, 2)
    x, y = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), torch.tensor([0, 1, 1])
    F = diagonal_fisher(head, x, y, torch.ones(3, 2, dtype=torch.bool))
    loops = {k: torch.zeros_like(p) for k, p in head.named_parameters()}
    for i in range(3):
        g = torch.autograd.grad(nn.functional.cross_entropy(head(x[i:i + 1]), y[i:i + 1]), list(head.parameters()))
        for (k, _), gi in zip(head.named_parameters(), g):
            loops[k] += gi ** 2 / 3
    assert all(torch.allclose(F[k], loops[k], atol=1e-6) for k in loops)


def test_lwf_loss_matches_hand_value():
    new = torch.tensor([[0.0, 0.0]])
    old = torch.tensor([[math.log(3.0), 0.0]])
    # tau = 1: p_old = (3/4, 1/4), p_new = (1/2, 1/2)
    assert lwf_loss(new, old, 1.0).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)
    # tau = 2: p_old = (sqrt3, 1) / (1 + sqrt3), times tau^2
    a = math.sqrt(3) / (1 + math.sqrt(3))
    hand = 4 * (a * math.log(a / 0.5) + (1 - a) * math.log((1 - a) / 0.5))
    assert lwf_loss(new, old, 2.0).item() == pytest.approx(hand, abs=1e-6)
    assert lwf_loss(old, old, 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_uer_logit_forms_match_their_definitions():
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        head.bias.copy_(torch.tensor([0.1, -0.1]))
    h = torch.tensor([[3.0, 4.0]])
    # cos(h, W_0) = 3/5, cos(h, W_1) = 8/(5*2); no norms, no bias
    assert torch.allclose(cosine_logits(h, head, 10.0), torch.tensor([[6.0, 8.0]]))
    # ||W_c|| ||h|| cos + b = W_c . h + b
    assert torch.allclose(dot_logits(h, head), torch.tensor([[3.1, 7.9]]))
    assert torch.allclose(dot_logits(h, head), head(h))


# ---- refresh -------------------------------------------------------------------------------
def test_one_refresh_step_moves_weights_as_the_paper_says():
    torch.manual_seed(0)
    ds = fake_dataset(classes=2, n_per_class=4)
    sc = build_scenario(ds, "class_incremental", 1, seed=0)
    model = build_model({"arch": "mlp", "hidden": [3]}, ds.input_shape, 2)
    learner = ContinualLearner(model, sc, [], {"epochs": 1, "batch_size": 4, "optimizer": "sgd", "lr": 0.1}, seed=5)
    x, y = sc.tasks[0].x_train[:4], sc.tasks[0].y_train[:4]
    t = torch.zeros(4, dtype=torch.long)
    ref = Refresh(ascent_lr=0.01, delta=0.05, fisher_weight=0.5, noise=0.1)
    ref.fisher = {k: torch.full_like(p, 2.0) for k, p in model.named_parameters()}
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    loss = nn.functional.cross_entropy(model(x), y)
    grads = dict(zip(before, torch.autograd.grad(loss, list(model.parameters()))))
    ref.before_task(learner, sc.tasks[0])
    state, order = ref.generator.get_state(), learner.generator.get_state()
    ref.before_step(learner, x, y, t)
    assert torch.equal(learner.generator.get_state(), order)  # batches and replay draws untouched
    g = torch.Generator().set_state(state)
    for k, p in model.named_parameters():
        D = 0.01 * grads[k]  # theta_copy - theta after one ascent step
        u = before[k].norm() / (D.norm() + 1e-20) * D
        xi = torch.randn(p.shape, generator=g)
        expected = before[k] + 0.05 / (1 + 0.5 * 2.0) * (u + 0.1 * xi)
        assert torch.allclose(p, expected, atol=1e-6), k
    # without noise the step is an ascent direction: the batch loss rises
    model2 = build_model({"arch": "mlp", "hidden": [3]}, ds.input_shape, 2)
    learner.model = model2
    before_loss = nn.functional.cross_entropy(model2(x), y).item()
    plain = Refresh(delta=0.01, noise=0.0)
    plain.before_task(learner, sc.tasks[0])
    plain.before_step(learner, x, y, t)
    assert nn.functional.cross_entropy(model2(x), y).item() > before_loss


# ---- evaluation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("strategies", [{"finetune": {}}, {"joint": {}}, {"er": {"buffer": 20, "replay_batch": 4}},
                                        {"uer": {"buffer": 20}}, {"lwf": {}, "l2": {}}, {"ewc": {}, "featkd": {}}])
def test_stream_records_every_seen_task_every_k_iterations(strategies):
    ds = fake_dataset()
    sc = build_scenario(ds, "task_incremental", 5, seed=0)
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [8]}, ds.input_shape, 10)
    ev = ContinualEvaluator(sc, every=2, subset=7, seed=0)
    learner = ContinualLearner(model, sc, build_plugins(strategies, refresh=True),
                               {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.1}, seed=0, evaluator=ev)
    learner.fit()
    assert learner.iteration == sum(3 * (i + 1) if "joint" in strategies else 3 for i in range(5))
    assert all(r["iteration"] % 2 == 0 for r in ev.rows)
    evals = {r["iteration"]: r["current_task"] for r in ev.rows}
    assert len(ev.rows) == sum(c + 1 for c in evals.values())
    assert {r["eval_task"] for r in ev.rows if r["iteration"] == max(evals)} == set(range(5))
    assert not np.isnan(ev.R).any()


def test_before_training_row_is_the_untrained_model_and_random_init_a_fresh_one():
    from lifelearn.continual.starts import random_init_model

    ds = fake_dataset()
    sc = build_scenario(ds, "class_incremental", 5, seed=0)
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [8]}, ds.input_shape, 10)
    ev = ContinualEvaluator(sc, every=0, subset=7, seed=0)
    learner = ContinualLearner(model, sc, [], {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.1}, seed=0, evaluator=ev)
    with torch.no_grad():
        expected = [float((model(t.x_test).argmax(1) == t.y_test).float().mean()) for t in sc.tasks]
    fresh = random_init_model(model, seed=0)
    state = torch.get_rng_state()
    ev.before_training(learner, fresh)
    assert ev.initial.tolist() == pytest.approx(expected)
    assert torch.equal(torch.get_rng_state(), state)  # the baseline draws nothing from the global RNG
    assert not torch.equal(fresh.head.weight, model.head.weight)
    with torch.no_grad():
        b = [float((fresh(t.x_test).argmax(1) == t.y_test).float().mean()) for t in sc.tasks]
    assert ev.random_init.tolist() == pytest.approx(b)
    ev.before_training(learner)  # from scratch the start is the random initialisation
    assert ev.random_init.tolist() == pytest.approx(expected)


class _Probe(Plugin):
    """Records the model's weights at the start of each task (after the other plug-ins)."""

    def __init__(self):
        self.starts = []

    def before_task(self, learner, task):
        self.starts.append({k: v.clone() for k, v in learner.model.state_dict().items()})


def test_single_task_expert_restarts_every_task_from_the_initial_weights():
    ds = fake_dataset()
    sc = build_scenario(ds, "class_incremental", 3, seed=0)
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [8]}, ds.input_shape, 10)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    probe = _Probe()
    ContinualLearner(model, sc, [*build_plugins({"single_task": {}}), probe],
                     {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.1}, seed=0).fit()
    assert len(probe.starts) == 3
    for state in probe.starts:
        assert all(torch.equal(state[k], start[k]) for k in start)
    assert not torch.equal(model.head.weight, start["head.weight"])  # it did train


def _weights_after_one_task(train_cfg: dict) -> dict:
    ds = fake_dataset()
    sc = build_scenario(ds, "class_incremental", 5, seed=0)
    torch.manual_seed(0)
    learner = ContinualLearner(build_model({"arch": "mlp", "hidden": [8]}, ds.input_shape, 10), sc, [],
                               {"batch_size": 8, "optimizer": "sgd", "lr": 0.1} | train_cfg, seed=0)
    learner.train_task(sc.tasks[0])
    return {k: v.clone() for k, v in learner.model.state_dict().items()}


def test_a_schedule_steps_once_per_epoch():
    """lr x 0 from epoch 1 on: two epochs end where one epoch does (per-iteration stepping
    would stop after the first of the epoch's three steps); no schedule trains on."""
    one = _weights_after_one_task({"epochs": 1})
    frozen = _weights_after_one_task({"epochs": 2, "schedule": "multistep", "milestones": [1], "gamma": 0.0})
    two = _weights_after_one_task({"epochs": 2})
    assert all(torch.equal(one[k], frozen[k]) for k in one)
    assert not torch.equal(two["head.weight"], one["head.weight"])


def _synthetic_set(tmp_path, ds, ipc=2):
    from lifelearn.data.arrays import write_dataset

    y = np.repeat(np.arange(ds.num_classes), ipc).astype(np.int64)
    x = np.full((len(y), *ds.input_shape), 0.5, np.float32) + y[:, None, None, None].astype(np.float32) / 100
    arrays = {"x_train": x, "y_train": y, "x_val": ds.x_val, "y_val": ds.y_val, "x_test": ds.x_test, "y_test": ds.y_test}
    meta = {"name": "fake", "num_classes": ds.num_classes, "input_shape": list(ds.input_shape), "mean": [0.5],
            "std": [0.3], "augment": "none", "source": "test", "splits": {}, "split_seed": 0}
    return write_dataset(tmp_path / "mtt_ipc2" / "seed0", arrays, meta), x, y


def test_synthetic_er_replays_only_the_distilled_images_of_trained_classes(tmp_path):
    from lifelearn.studies.continual import strategies_for_seed

    ds = fake_dataset()
    sc = build_scenario(ds, "class_incremental", 5, seed=0)
    _, xs, ys = _synthetic_set(tmp_path, ds)
    plugin, = build_plugins(strategies_for_seed({"synthetic_er": {"synthetic": "mtt_ipc2", "replay_batch": 4}}, 0, tmp_path))
    assert plugin.data_dir == tmp_path / "mtt_ipc2" / "seed0"
    torch.manual_seed(0)
    learner = ContinualLearner(build_model({"arch": "mlp", "hidden": [8]}, ds.input_shape, 10), sc, [plugin],
                               {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.1}, seed=0)
    learner.train_task(sc.tasks[0])
    learner.train_task(sc.tasks[1])
    trained = sorted(sc.tasks[0].classes + sc.tasks[1].classes)
    assert len(plugin.buffer) == 2 * len(trained)  # IPC 2: every synthetic image of the trained classes
    stored_y = plugin.buffer.y[:len(plugin.buffer)]
    assert sorted(stored_y.tolist()) == sorted(np.repeat(trained, 2).tolist())
    for x, y in zip(plugin.buffer.x[:len(plugin.buffer)], stored_y):  # synthetic pixels, not stream samples
        assert torch.allclose(x, torch.from_numpy(xs[ys == int(y)][0]))
    assert set(plugin.buffer.t[:len(plugin.buffer)].tolist()) == {0, 1}
    xr, yr, _ = plugin.buffer.sample(4)
    assert set(yr.tolist()) <= set(trained)


def test_synthetic_er_refuses_a_set_of_another_shape_or_no_directory(tmp_path):
    from lifelearn.studies.continual import strategies_for_seed

    ds = fake_dataset()
    _synthetic_set(tmp_path, ds)
    other = fake_dataset(shape=(1, 3, 3))
    sc = build_scenario(other, "class_incremental", 5, seed=0)
    plugin, = build_plugins(strategies_for_seed({"synthetic_er": {"synthetic": "mtt_ipc2"}}, 0, tmp_path))
    learner = ContinualLearner(build_model({"arch": "mlp", "hidden": [8]}, other.input_shape, 10), sc, [plugin],
                               {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.1}, seed=0)
    with pytest.raises(ValueError, match=r"synthetic set .*mtt_ipc2/seed0 has inputs"):
        learner.fit()
    with pytest.raises(ValueError, match="no synthetic-set directory"):
        strategies_for_seed({"synthetic_er": {"synthetic": "mtt_ipc2"}}, 0, None)


def test_synthetic_sets_and_expert_runs_are_checked_against_the_config():
    from lifelearn.continual.configs import check_synthetic_sets, expert_run

    config = {"seeds": [0, 1], "dataset_distillation": {"dataset": "digits", "methods": {"mtt": {}}, "ipc": [{"ipc": 10}]}}
    run = {"dataset": "digits", "seeds": [0, 1], "strategies": {"synthetic_er": {"synthetic": "mtt_ipc10"}}}
    check_synthetic_sets(config, "r", run)
    with pytest.raises(ValueError, match=r"continual.runs.r.strategies: synthetic set\(s\) \['mtt_ipc50'\]"):
        check_synthetic_sets(config, "r", run | {"strategies": {"synthetic_er": {"synthetic": "mtt_ipc50"}}})
    with pytest.raises(ValueError, match="distilled from 'digits', the run streams 'mnist1d'"):
        check_synthetic_sets(config, "r", run | {"dataset": "mnist1d"})
    with pytest.raises(ValueError, match=r"seeds \[2\] have no synthetic set"):
        check_synthetic_sets(config, "r", run | {"seeds": [0, 2]})
    runs = {"a_er": {"setting": "s", "seeds": [0, 1], "strategies": {"er": {}}},
            "a_expert": {"setting": "s", "seeds": [0, 1], "strategies": {"single_task": {}}},
            "b_er": {"setting": "t", "seeds": [0], "strategies": {"er": {}}}}
    assert expert_run(runs, "a_er") == "a_expert"
    assert expert_run(runs, "a_expert") is None and expert_run(runs, "b_er") is None
    runs["a_expert"]["seeds"] = [0]
    with pytest.raises(ValueError, match=r"single-task experts of setting 's' lack seeds \[1\]"):
        expert_run(runs, "a_er")


def test_strategy_names_are_their_files_have_schema_options_and_unknown_names_fail():
    from lifelearn.studies.continual import METHODS

    schema = yaml.safe_load((REPO / "config" / "schemas" / "continual.yaml").read_text())
    options = schema["$defs"]["run"]["properties"]["strategies"]["properties"]
    assert sorted(options) == strategy_names() == sorted(STRATEGIES) == list(METHODS)
    with pytest.raises(ValueError, match="unknown strategies"):
        build_plugins({"icarl": {}})
    with pytest.raises(ValueError, match="at most one strategy"):
        ds = fake_dataset()
        ContinualLearner(build_model({"arch": "mlp", "hidden": [4]}, ds.input_shape, 10),
                         build_scenario(ds, "class_incremental", 5, 0), build_plugins({"er": {}, "uer": {}}), {}, 0)


def test_a_task_count_the_dataset_cannot_supply_is_named():
    from lifelearn.continual.scenarios import split_classes

    assert len(split_classes(10, 10, seed=0)) == 10
    with pytest.raises(ValueError, match=r"n_tasks must be in 1\.\.10, got 11"):
        split_classes(10, 11, seed=0)
