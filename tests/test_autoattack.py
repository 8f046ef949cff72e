"""AutoAttack through ART (evaluate/autoattack.py) and our hand-written PGD against ART's
PGD from the same start (evaluate/robustness.py keeps ours because they agree)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lifelearn.evaluate import metric_range
from lifelearn.evaluate.autoattack import (apgd, art_classifier, attacks_run, autoattack, autoattack_metrics,
                                           autoattack_settings)
from lifelearn.evaluate.robustness import pgd_attack
from lifelearn.models import build_model

FAST = {"iterations": 10, "targets": 2, "square_queries": 30}


def _trained(input_shape, classes=3, n=240, seed=0, spec=None):
    """A small MLP (or `spec`) fitted on Gaussian classes in [0, 1] (robust to small eps, not
    to large)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.rand(classes, *input_shape, generator=gen) * 0.6 + 0.2
    x = (centres[y] + 0.05 * torch.randn(n, *input_shape, generator=gen)).clamp(0, 1)
    torch.manual_seed(seed)
    model = build_model(spec or {"arch": "mlp", "hidden": [16]}, input_shape, classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


@pytest.mark.parametrize("input_shape", [(1, 8), (1, 4, 4)])
def test_autoattack_runs_and_robust_accuracy_is_at_most_clean(input_shape):
    model, x, y = _trained(input_shape)
    m = autoattack_metrics(model, x, y, {"eps": 0.15, "samples": 100, **FAST}, seed=0)
    assert m["test_autoattack_samples"] == 100
    assert 0 <= m["test_autoattack_acc"] <= m["test_autoattack_clean_acc"]
    assert m["test_autoattack_acc"] < m["test_autoattack_clean_acc"]  # eps 0.15 breaks some points
    assert m["test_autoattack_weighted_robust_acc"] == pytest.approx(
        (m["test_autoattack_acc"] + m["test_autoattack_clean_acc"]) / 2)
    stages = [k for k in m if k.startswith("test_autoattack_acc_")]
    # cumulative: each attack can only lower the robust accuracy; Square only on image-shaped inputs
    assert stages == ["test_autoattack_acc_apgd_ce", "test_autoattack_acc_apgd_t"] + (
        ["test_autoattack_acc_square"] if len(input_shape) == 3 else [])
    values = [m[k] for k in stages]
    assert values == sorted(values, reverse=True) and values[-1] == m["test_autoattack_acc"]
    assert attacks_run({"eps": 0.1, "samples": 1}, input_shape) == ["apgd-ce", "apgd-t", "square"][:len(stages)]


def test_autoattack_examples_stay_in_the_ball_and_box_and_are_reproducible():
    model, x, y = _trained((1, 8))
    cfg = {"eps": 0.1, "samples": 60, **FAST}
    x_adv, robust, _ = autoattack(model, x[:60], y[:60], cfg, seed=3)
    assert (x_adv - x[:60]).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y[:60]
    assert torch.equal(robust, ~fooled)  # robust exactly where the returned example is still correct
    state = np.random.get_state()
    again = autoattack_metrics(model, x, y, cfg, seed=3)
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's global stream restored
    first = autoattack_metrics(model, x, y, cfg, seed=3)
    drop = lambda m: {k: v for k, v in m.items() if not k.endswith("seconds")}  # noqa: E731
    assert drop(first) == drop(again)


def test_our_apgd_ce_chain_is_arts_autoattack(monkeypatch):
    """With one attack, our chain is ART's AutoAttack class itself (same seed, same result).
    ART 1.20.1's AutoAttack.generate imports `multiprocess`, an undeclared dependency used
    only by its parallel mode (off here): a stand-in module lets the class run."""
    import sys
    import types

    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent

    monkeypatch.setitem(sys.modules, "multiprocess", sys.modules.get("multiprocess") or types.ModuleType("multiprocess"))

    model, x, y = _trained((1, 8))
    x, y = x[:80], y[:80]
    ours, robust, _ = autoattack(model, x, y, {"eps": 0.1, "samples": 80, "attacks": ["apgd-ce"], "iterations": 10},
                                 seed=5)
    est = art_classifier(model, x.shape[1:], 3)
    apgd_ce = AutoProjectedGradientDescent(est, norm=np.inf, eps=0.1, eps_step=0.2, max_iter=10, nb_random_init=1,
                                           batch_size=500, loss_type="cross_entropy", verbose=False)
    np.random.seed(5)
    theirs = AutoAttack(est, norm=np.inf, eps=0.1, eps_step=0.2, attacks=[apgd_ce]).generate(
        x.numpy(), np.eye(3, dtype=np.float32)[y.numpy()])
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(robust, model(torch.from_numpy(theirs)).argmax(1) == y)


def test_settings_defaults_are_the_standard_version_and_fab_is_refused():
    s = autoattack_settings({"eps": 0.03, "samples": 500})
    assert (s["iterations"], s["targets"], s["square_queries"], s["square_p_init"]) == (100, 9, 5000, 0.8)
    assert s["attacks"] == ["apgd-ce", "apgd-t", "square"] and s["tuning"] is False
    with pytest.raises(ValueError, match="FAB-T is not in ART"):
        autoattack_settings({"eps": 0.03, "samples": 5, "attacks": ["apgd-ce", "fab-t"]})
    assert metric_range("test_autoattack_acc") == (0.0, 1.0)
    assert metric_range("val_autoattack_weighted_robust_acc") == (0.0, 1.0)


# -- our PGD against ART's -----------------------------------------------------------
def _art_pgd(model, x, y, eps, step, steps, start_noise=None, monkeypatch=None):
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.attacks.evasion.projected_gradient_descent import projected_gradient_descent_pytorch as art_pgd

    if start_noise is not None:  # ART's random start := the same noise our uniform start drew
        monkeypatch.setattr(art_pgd, "random_sphere", lambda n, m, eps, norm: start_noise.reshape(n, m).numpy())
    est = art_classifier(model, x.shape[1:], 3)
    attack = ProjectedGradientDescentPyTorch(est, norm=np.inf, eps=eps, eps_step=step, max_iter=steps,
                                             num_random_init=int(start_noise is not None), batch_size=len(y),
                                             verbose=False)
    return torch.from_numpy(attack.generate(x.numpy(), np.eye(3, dtype=np.float32)[y.numpy()]))


@pytest.mark.parametrize("start", ["none", "uniform"])
def test_our_pgd_equals_arts_pgd_from_the_same_start(start, monkeypatch):
    model, x, y = _trained((1, 8))
    x = x.clone()
    x[:10] = 0.0  # the box clips the ball at the corners
    eps, step, steps = 0.1, 0.03, 10
    noise = None
    if start == "uniform":  # the noise random_start draws from this generator
        noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(7)) * 2 - 1) * eps
    ours = pgd_attack(model, x, y, eps, step, steps, start, generator=torch.Generator().manual_seed(7))
    theirs = _art_pgd(model, x, y, eps, step, steps, noise, monkeypatch)
    assert (ours - x).abs().max() > eps / 2
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    with torch.no_grad():
        assert torch.equal(model(ours).argmax(1), model(theirs).argmax(1))


# -- the vectorised DLR against ART's ---------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_dlr_loss_is_arts_bit_for_bit(reduction):
    """Values and gradients equal ART's loop, on logits with ties and with targets that are
    the top class, the second class or neither."""
    from lifelearn.evaluate.autoattack import DifferenceLogitsRatio

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=gen)
    logits[:8, :2] = 4.0  # two-way ties at the top (a three-way tie divides by zero in both)
    target = torch.randint(0, 10, (64,), generator=gen)
    target[8:16] = logits[8:16].argmax(1)
    target[16:24] = logits[16:24].argsort(1)[:, -2]
    one_hot = np.eye(10, dtype=np.float32)[target.numpy()]
    s = autoattack_settings({"eps": 0.1, "samples": 1})
    estimator = art_classifier(torch.nn.Linear(10, 10), (10,), 10)
    arts = apgd(estimator, s, True, "difference_logits_ratio").estimator._loss
    results = []
    for loss in (arts, DifferenceLogitsRatio()):
        z = logits.clone().requires_grad_(True)
        loss.reduction = reduction
        value = loss(z, torch.from_numpy(one_hot))
        value.backward(torch.ones_like(value))
        results.append((value.detach(), z.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert results[0][1].abs().sum() > 0


def test_apgd_t_with_the_vectorised_dlr_is_arts():
    """One targeted APGD run through evaluate.autoattack's attack and through ART's own DLR,
    same seed: the same examples bit for bit."""
    from lifelearn.evaluate.autoattack import _attack

    model, x, y = _trained((1, 8), classes=4)
    est = art_classifier(model, x.shape[1:], 4)
    targets = np.eye(4, dtype=np.float32)[((y + 1) % 4).numpy()]
    s = autoattack_settings({"eps": 0.15, "samples": len(y), **FAST})
    np.random.seed(1)
    ours = _attack("apgd-t", est, s, targeted=True).generate(x.numpy(), targets)
    np.random.seed(1)
    theirs = apgd(est, s, True, "difference_logits_ratio").generate(x.numpy(), targets)
    assert np.array_equal(ours, theirs) and not np.array_equal(ours, x.numpy())


def test_frozen_parameters_change_no_example_and_are_restored(monkeypatch):
    """AutoAttack runs on the `attacked` model (eval mode, parameters frozen, so ART's backward
    computes the input gradient only): the examples equal those of the trainable model bit
    for bit (a 1-D ConvNet with BatchNorm and max pooling), and the model's training mode and
    requires_grad flags are back afterwards."""
    from contextlib import contextmanager

    from lifelearn.evaluate import autoattack as aa

    model, x, y = _trained((1, 16), spec={"arch": "convnet", "channels": [4, 8]})
    x, y = x[:40], y[:40]
    model.train()
    model.head.bias.requires_grad_(False)  # a mixed state, to be restored as it was
    cfg = {"eps": 0.05, "samples": 40, **FAST}
    ours, robust, _ = aa.autoattack(model, x, y, cfg, seed=2)
    assert model.training and [p.requires_grad for p in model.parameters()][-2:] == [True, False]

    @contextmanager
    def eval_only(m):
        m.eval()
        yield m

    monkeypatch.setattr(aa, "attacked", eval_only)
    model.head.bias.requires_grad_(True)
    trainable, robust_trainable, _ = aa.autoattack(model, x, y, cfg, seed=2)
    assert torch.equal(ours, trainable) and torch.equal(robust, robust_trainable)
    assert 0 < robust.sum() < len(y)  # some points broken, some not
