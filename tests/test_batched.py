"""Seed-batched training (train/batched.py) equals training each seed alone.

Tolerance: float32 on CPU, after every step of the runs below the batched and the
sequential parameters agree to ATOL = 1e-5 absolute + RTOL = 1e-4 relative (observed
differences are ~1e-7: the batched kernels sum in a different order, nothing more), and
their outputs agree to the same tolerance. One exception, by construction: a conv bias
followed by instance norm (GroupNorm, one group per channel) is cancelled by the norm, so
its true gradient is 0 and its computed gradient is round-off; Adam divides that noise by
its own magnitude and moves the bias by ~lr per step in a direction set by round-off. The
function does not depend on it, so those biases are compared through the outputs only.
"""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lifelearn.distill.kd import fused_loss, per_sample_ce, per_sample_kd
from lifelearn.evaluate.robustness import pgd_attack, pgd_from_config
from lifelearn.models import build_model
from lifelearn.train.optim import build_optimizer
from lifelearn.train.batched import (StackedModels, ce_loss, check_train_config, fit_batched, fit_single, kd_loss,
                                     pgd_attack_batched, pgd_loss, stacked_functional, template_order)

ATOL, RTOL = 1e-5, 1e-4
SEEDS = [0, 1, 2]
SHAPE = (1, 20)
MLP = {"arch": "mlp", "hidden": [16, 16]}
CONV_INSTANCE = {"arch": "convnet", "channels": [4, 8], "norm": "instance"}
CONV_NONE = {"arch": "convnet", "channels": [4, 8], "norm": "none"}
CONV_BATCH = {"arch": "convnet", "channels": [4, 8], "norm": "batch"}
SGD = {"epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
ADAM = {"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "weight_decay": 1e-4, "schedule": "cosine"}
ADAMW = {"epochs": 2, "batch_size": 10, "optimizer": "adamw", "lr": 0.01, "weight_decay": 1e-2,
         "schedule": "multistep", "milestones": [1], "gamma": 0.5}


def data(n=70, seed=123):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g), torch.randint(0, 5, (n,), generator=g)


def model(spec, seed):
    torch.manual_seed(seed)
    return build_model(spec, SHAPE, 5)


def cancelled_biases(m) -> set[str]:
    """Names of the conv biases that the following GroupNorm cancels (see module docstring)."""
    layers = list(m.body.named_children()) if hasattr(m, "body") else []
    return {f"body.{name}.bias" for (name, layer), (_, after) in zip(layers, layers[1:])
            if isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d)) and isinstance(after, torch.nn.GroupNorm)}


def assert_same_models(batched, alone, x=None):
    x = data()[0] if x is None else x
    for a, b in zip(batched, alone):
        skip = cancelled_biases(b)
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
            if name not in skip:
                torch.testing.assert_close(pa, pb, atol=ATOL, rtol=RTOL, msg=f"parameter {name}")
        with torch.no_grad():
            torch.testing.assert_close(a(x), b(x), atol=ATOL, rtol=RTOL)


def sequential(spec, cfg, x, y, loss=None, seeds=SEEDS):
    models, histories = [], []
    for s in seeds:
        m, g = model(spec, s), torch.Generator().manual_seed(s)
        histories.append(fit_single(m, x, y, cfg, lambda epoch, n, g=g: torch.randperm(n, generator=g), loss))
        models.append(m)
    return models, histories


@pytest.mark.parametrize("backend", ["layers", "vmap"])
@pytest.mark.parametrize("spec", [MLP, CONV_INSTANCE, CONV_NONE], ids=["mlp", "convnet-instance", "convnet-none"])
@pytest.mark.parametrize("cfg", [SGD, ADAM, ADAMW], ids=["sgd-momentum-wd", "adam-cosine", "adamw-multistep"])
def test_batched_equals_each_seed_alone(spec, cfg, backend):
    x, y = data()
    alone, hist_alone = sequential(spec, cfg, x, y)
    stacked = StackedModels([model(spec, s) for s in SEEDS], backend=backend)
    assert stacked.backend == backend
    hist = fit_batched(stacked, x, y, cfg, template_order(SEEDS))
    assert_same_models(stacked.write_back(), alone)
    for h, ha in zip(hist, hist_alone):
        assert [r["epoch"] for r in h] == [0, 1]
        torch.testing.assert_close(torch.tensor([r["train_loss"] for r in h]),
                                   torch.tensor([r["train_loss"] for r in ha]), atol=ATOL, rtol=RTOL)
    # the seeds really differ (not K copies of one run), and the accuracies are each model's own
    assert not torch.allclose(alone[0].head.weight, alone[1].head.weight)
    with torch.no_grad():
        own = torch.tensor([(m(x).argmax(1) == y).float().mean().item() for m in alone])
    torch.testing.assert_close(stacked.accuracy(x, y, batch_size=32), own)


@pytest.mark.parametrize("spec", [MLP, CONV_INSTANCE, {"arch": "convnet", "channels": [4, 8, 8], "norm": "batch"},
                                  {"arch": "convnet", "channels": [3], "norm": "none"}],
                         ids=["mlp", "convnet-instance", "convnet-batchnorm-eval", "convnet-1layer"])
def test_both_backends_compute_each_models_own_function(spec):
    """Every method (forward, features, head), per-model and shared inputs, 2-D inputs too."""
    for shape in (SHAPE, (2, 6, 6)):
        models = []
        for s in SEEDS:
            torch.manual_seed(s)
            m = build_model(spec, shape, 5, mean=[0.3] * shape[0], std=[0.2] * shape[0])
            with torch.no_grad():
                m(torch.rand(16, *shape))  # training-mode pass: BatchNorm gets its own running stats
            models.append(m.eval())
        training = spec.get("norm") != "batch"
        x = torch.rand(3, 7, *shape)
        for backend in ("layers", "vmap"):
            stacked = StackedModels(models, training=training, backend=backend)
            with torch.no_grad():
                torch.testing.assert_close(stacked(x), torch.stack([m(x[k]) for k, m in enumerate(models)]))
                torch.testing.assert_close(stacked(x[0], shared=True), torch.stack([m(x[0]) for m in models]))
                feats = stacked(x, method="features")
                torch.testing.assert_close(feats, torch.stack([m.features(x[k]) for k, m in enumerate(models)]))
                torch.testing.assert_close(stacked(feats, method="head"), stacked(x))


@pytest.mark.parametrize("spec", [MLP, CONV_INSTANCE], ids=["mlp", "convnet-instance"])
def test_stacked_functional_is_each_parameter_sets_own_function_and_gradient(spec):
    """stacked_functional (the distillation inner loop's batched forward) on K parameter sets
    given as [K, ...] tensors: outputs and input and parameter gradients as functional_call on each."""
    from torch.func import functional_call

    for shape in (SHAPE, (2, 6, 6)):
        torch.manual_seed(0)
        model = build_model(spec, shape, 5, mean=[0.3] * shape[0], std=[0.2] * shape[0])
        params = {n: torch.stack([p.detach() + 0.1 * k * torch.randn_like(p) for k in range(3)]).requires_grad_()
                  for n, p in model.named_parameters()}
        x = torch.rand(3, 7, *shape, requires_grad=True)
        out = stacked_functional(model)(params, x)
        alone = torch.stack([functional_call(model, {n: v[k] for n, v in params.items()}, (x[k],)) for k in range(3)])
        torch.testing.assert_close(out, alone)
        weights = torch.rand_like(out)
        grads = torch.autograd.grad((out * weights).sum(), [x, *params.values()])
        ref = torch.autograd.grad((alone * weights).sum(), [x, *params.values()])
        for g, r in zip(grads, ref):
            torch.testing.assert_close(g, r, atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="refuses BatchNorm"):
        stacked_functional(build_model({"arch": "convnet", "channels": [4], "norm": "batch"}, (1, 6, 6), 2))


def test_batched_optimiser_equals_independent_ones_by_hand():
    """Two 'models' of one parameter of 2 elements; stacked [[1, 2], [3, 4]].
    SGD lr 0.1 momentum 0.9: step 1 grads [[1, 0], [0, 2]] -> buf = g, p = [[0.9, 2], [3, 3.8]];
    step 2 grads all 1 -> buf = 0.9 g1 + 1 = [[1.9, 1], [1, 2.8]], p = [[0.71, 1.9], [2.9, 3.52]].
    Adam lr 0.1 step 1 moves each element by -lr * g / (|g| + eps): grads [[1, 0], [0, -2]]
    -> [[0.9, 2], [3, 4.1]] (an element with zero gradient stays: nothing is shared across elements)."""
    def run(opt_cfg, grads, start):
        stacked = torch.tensor(start, requires_grad=True)
        rows = [torch.tensor(r, requires_grad=True) for r in start]
        opt_s, opts = build_optimizer([stacked], opt_cfg), [build_optimizer([r], opt_cfg) for r in rows]
        for g in grads:
            stacked.grad = torch.tensor(g)
            opt_s.step()
            for r, o, gr in zip(rows, opts, g):
                r.grad = torch.tensor(gr)
                o.step()
        return stacked.detach(), torch.stack([r.detach() for r in rows])

    s, ind = run({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}, [[[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]],
                 [[1.0, 2.0], [3.0, 4.0]])
    expected = torch.tensor([[0.71, 1.9], [2.9, 3.52]])
    torch.testing.assert_close(s, expected)
    torch.testing.assert_close(ind, expected)
    s, ind = run({"optimizer": "adam", "lr": 0.1}, [[[1.0, 0.0], [0.0, -2.0]]], [[1.0, 2.0], [3.0, 4.0]])
    expected = torch.tensor([[0.9, 2.0], [3.0, 4.1]])
    torch.testing.assert_close(s, expected)
    torch.testing.assert_close(ind, expected)


@pytest.mark.parametrize("backend", ["layers", "vmap"])
def test_summed_loss_gives_each_model_its_own_gradient(backend):
    x, y = data(12)
    alone = [model(MLP, s) for s in SEEDS]
    stacked = StackedModels([model(MLP, s) for s in SEEDS], backend=backend)
    xb = torch.stack([x[k::3][:4] for k in range(3)])
    yb = torch.stack([y[k::3][:4] for k in range(3)])
    ce_loss(stacked, xb, yb).sum().backward()
    for k, m in enumerate(alone):
        F.cross_entropy(m(xb[k]), yb[k]).backward()
        for name, p in m.named_parameters():
            grad = stacked.in_model_layout(f"module.{name}", stacked.params[f"module.{name}"].grad)
            torch.testing.assert_close(grad[k], p.grad, msg=name)


def test_per_model_training_sets_of_one_size():
    """train_samples draws a subset per seed: each model trains on its own [N, ...] set."""
    x, y = data(90)
    subsets = [torch.randperm(90, generator=torch.Generator().manual_seed(s))[:40] for s in SEEDS]
    alone = []
    for s, idx in zip(SEEDS, subsets):
        m, g = model(MLP, s), torch.Generator().manual_seed(s)
        fit_single(m, x[idx], y[idx], SGD, lambda e, n, g=g: torch.randperm(n, generator=g))
        alone.append(m)
    stacked = StackedModels([model(MLP, s) for s in SEEDS])
    fit_batched(stacked, torch.stack([x[i] for i in subsets]), torch.stack([y[i] for i in subsets]), SGD,
                template_order(SEEDS))
    assert_same_models(stacked.write_back(), alone)


def test_kd_students_against_their_own_batchnorm_teachers():
    """Frozen teachers may keep BatchNorm (eval mode: a pure function of its buffers)."""
    x, y = data()
    teacher_spec = {"arch": "convnet", "channels": [4], "norm": "batch"}
    teachers = []
    for s in SEEDS:
        t = model(teacher_spec, 10 + s)
        with torch.no_grad():  # distinct running statistics per teacher
            t(x * (1 + s))
        teachers.append(t.eval())
    alpha, tau = 0.7, 4.0

    def kd_alone(t):
        def loss(m, xb, yb):
            with torch.no_grad():
                tl = t(xb)
            s = m(xb)
            return fused_loss(alpha, per_sample_kd(s, tl, tau), per_sample_ce(s, yb))
        return loss

    alone = []
    for s, t in zip(SEEDS, teachers):
        m, g = model(MLP, s), torch.Generator().manual_seed(s)
        fit_single(m, x, y, ADAM, lambda e, n, g=g: torch.randperm(n, generator=g), kd_alone(t))
        alone.append(m)
    stacked_teachers = StackedModels(teachers, training=False)
    with torch.no_grad():
        torch.testing.assert_close(stacked_teachers(x, shared=True), torch.stack([t(x) for t in teachers]))
    stacked = StackedModels([model(MLP, s) for s in SEEDS])
    fit_batched(stacked, x, y, ADAM, template_order(SEEDS), kd_loss(stacked_teachers, alpha, tau))
    assert_same_models(stacked.write_back(), alone)


ATTACK = {"eps": 0.1, "step_size": 0.04, "steps": 3, "random_start": "uniform"}


def pgd_at_alone(generator: torch.Generator):
    """The sequential PGD-AT loss of one model (train/adversarial.py): CE on its own ATTACK examples."""
    return lambda m, xb, yb: F.cross_entropy(m(pgd_from_config(m, xb, yb, ATTACK, generator)), yb)


def test_batched_pgd_equals_each_models_attack():
    x, y = data(8)
    models = [model(CONV_NONE, s) for s in SEEDS]
    stacked = StackedModels(models)
    xb = torch.stack([x] * 3)
    yb = torch.stack([y] * 3)
    adv = pgd_attack_batched(stacked, xb, yb, 0.1, 0.04, 3, "uniform",
                             [torch.Generator().manual_seed(100 + s) for s in SEEDS])
    for k, m in enumerate(models):
        ref = pgd_attack(m, x, y, 0.1, 0.04, 3, "uniform", torch.Generator().manual_seed(100 + SEEDS[k]))
        torch.testing.assert_close(adv[k], ref, atol=ATOL, rtol=0)
    assert (adv - xb).abs().max() <= 0.1 + 1e-6
    assert stacked.params["module.head.weight"].grad is None  # the attack leaves parameters untouched


def test_pgd_trained_students_equal_their_sequential_runs():
    x, y = data(48)
    cfg = {**ADAM, "epochs": 1}
    alone = []
    for s in SEEDS:
        m, g = model(MLP, s), torch.Generator().manual_seed(s)
        fit_single(m, x, y, cfg, lambda e, n, g=g: torch.randperm(n, generator=g),
                   pgd_at_alone(torch.Generator().manual_seed(100 + s)))
        alone.append(m)
    stacked = StackedModels([model(MLP, s) for s in SEEDS])
    gens = [torch.Generator().manual_seed(100 + s) for s in SEEDS]
    fit_batched(stacked, x, y, cfg, template_order(SEEDS), pgd_loss(ATTACK, gens))
    assert_same_models(stacked.write_back(), alone)


@pytest.mark.parametrize("cfg", [SGD, ADAM], ids=["sgd-momentum-wd", "adam-cosine"])
@pytest.mark.parametrize("loss", ["ce", "pgd"])
def test_batchnorm_models_in_training_equal_their_sequential_runs(cfg, loss):
    """The layers backend batches BatchNorm in training: weights, running mean / var and
    num_batches_tracked equal each seed's own run (CE, and PGD-AT whose attack sees the
    model in eval mode, linf_pgd)."""
    x, y = data()
    alone = []
    for s in SEEDS:
        m, g = model(CONV_BATCH, s), torch.Generator().manual_seed(s)
        one = None if loss == "ce" else pgd_at_alone(torch.Generator().manual_seed(100 + s))
        fit_single(m, x, y, cfg, lambda e, n, g=g: torch.randperm(n, generator=g), one)
        alone.append(m)
    stacked = StackedModels([model(CONV_BATCH, s) for s in SEEDS])
    assert stacked.backend == "layers"
    gens = [torch.Generator().manual_seed(100 + s) for s in SEEDS]
    fit_batched(stacked, x, y, cfg, template_order(SEEDS), ce_loss if loss == "ce" else pgd_loss(ATTACK, gens))
    batched = stacked.write_back()
    assert_same_models([m.eval() for m in batched], [m.eval() for m in alone])  # running statistics too
    bn = batched[0].body[1]
    assert int(bn.num_batches_tracked) == int(alone[0].body[1].num_batches_tracked) > 0
    assert not torch.allclose(batched[0].body[1].running_mean, batched[1].body[1].running_mean)
    # accuracy evaluates in eval mode: each model's own eval accuracy, running statistics untouched
    tracked = stacked.buffers["module.body.1.num_batches_tracked"].clone()
    with torch.no_grad():
        own = torch.tensor([(m(x).argmax(1) == y).float().mean().item() for m in alone])
    torch.testing.assert_close(stacked.accuracy(x, y, batch_size=32), own)
    assert torch.equal(stacked.buffers["module.body.1.num_batches_tracked"], tracked)


def test_refuses_what_vmap_cannot_batch_exactly():
    with pytest.raises(ValueError, match="BatchNorm"):
        StackedModels([model({"arch": "convnet", "channels": [4], "norm": "batch"}, s) for s in SEEDS],
                      backend="vmap")
    with pytest.raises(ValueError, match="dropout"):
        StackedModels([torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5)) for _ in SEEDS])
    with pytest.raises(ValueError, match="backend 'layers' does not support"):
        StackedModels([torch.nn.Sequential(torch.nn.Linear(3, 3)) for _ in SEEDS], backend="layers")
    assert StackedModels([torch.nn.Sequential(torch.nn.Linear(3, 3)) for _ in SEEDS]).backend == "vmap"
    with pytest.raises(ValueError, match="one architecture"):
        StackedModels([model(MLP, 0), model({"arch": "mlp", "hidden": [8]}, 1)])
    with pytest.raises(ValueError, match="train.gradient_clip_val"):
        check_train_config({**SGD, "gradient_clip_val": 1.0})
    check_train_config({**SGD, "augment": "none", "train_samples": 10, "eval_batch_size": 64})
    x, y = data(20)
    stacked = StackedModels([model(MLP, s) for s in SEEDS])
    with pytest.raises(ValueError, match="train.augment"):
        fit_batched(stacked, x, y, {**SGD, "augment": "crop_flip"}, template_order(SEEDS))
    with pytest.raises(ValueError, match="train.train_samples"):
        fit_batched(stacked, x, y, {**SGD, "train_samples": 10}, template_order(SEEDS))


def test_augmentation_drawn_per_seed():
    """augment(k, xb) with seed k's own generator: equal to each seed augmenting alone."""
    x, y = data()

    def noise(xb, g):
        return (xb + 0.1 * torch.randn(xb.shape, generator=g)).clamp(0, 1)
    alone = []
    for s in SEEDS:
        m, g, ag = model(MLP, s), torch.Generator().manual_seed(s), torch.Generator().manual_seed(50 + s)
        fit_single(m, x, y, SGD, lambda e, n, g=g: torch.randperm(n, generator=g),
                   augment=lambda xb, ag=ag: noise(xb, ag))
        alone.append(m)
    gens = [torch.Generator().manual_seed(50 + s) for s in SEEDS]
    stacked = StackedModels([model(MLP, s) for s in SEEDS])
    fit_batched(stacked, x, y, SGD, template_order(SEEDS), augment=lambda k, xb: noise(xb, gens[k]))
    assert_same_models(stacked.write_back(), alone)


def test_stacked_sgd_equals_torch_sgd_per_model():
    """StackedSGD (a step size per model) against K torch.optim.SGD instances, momentum and
    weight decay on, under train.optim's MultiStepLR; equal within 1e-6 after 6 steps."""
    from lifelearn.train.batched import StackedSGD
    from lifelearn.train.optim import build_scheduler

    g = torch.Generator().manual_seed(0)
    start, grads = torch.randn(3, 4, 2, generator=g), torch.randn(6, 3, 4, 2, generator=g)
    lrs, cfg = [0.1, 0.03, 0.5], {"schedule": "multistep", "milestones": [3], "gamma": 0.1}
    stacked = start.clone().requires_grad_()
    opt = StackedSGD([stacked], lrs, momentum=0.9, weight_decay=0.01)
    sched = build_scheduler(opt, cfg)
    singles = [start[k].clone().requires_grad_() for k in range(3)]
    opts = [torch.optim.SGD([p], lr=lr, momentum=0.9, weight_decay=0.01) for p, lr in zip(singles, lrs)]
    scheds = [build_scheduler(o, cfg) for o in opts]
    for step in range(6):
        stacked.grad = grads[step].clone()
        opt.step()
        sched.step()
        for k in range(3):
            singles[k].grad = grads[step, k].clone()
            opts[k].step()
            scheds[k].step()
    for k in range(3):
        assert torch.allclose(stacked[k], singles[k], atol=1e-6, rtol=0)
    assert not torch.allclose(stacked[0], start[0])
