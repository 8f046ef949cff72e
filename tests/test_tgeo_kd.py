"""TGeo-KD and its re-weighting baselines: every alpha rule, the trilateral features,
the unrolled hypergradient and the train-only teacher class means, on hand cases."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from lifelearn.distill.kd import fused_loss, per_sample_ce, per_sample_kd
from lifelearn.distill.reweight import SampleWiseKDModule, ada_alpha, alpha_summary, anl_alpha, wls_alpha
from lifelearn.distill.tgeo import (FusionNet, TGeoKDModule, carve_meta_val, fusion_hypergradient, meta_objective,
                                    optimizer_step, teacher_class_means, trilateral_features)
from lifelearn.studies.tgeo_kd import METHODS

from conftest import REPO

TRAIN_CFG = {"optimizer": "adam", "lr": 0.01, "epochs": 11}


def logits_of(probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()


# -- alpha rules ---------------------------------------------------------------------
def test_anl_alpha_decays_linearly_from_one_to_its_final_value():
    assert anl_alpha(0, 11, 0.2) == pytest.approx(1.0)
    assert anl_alpha(5, 11, 0.2) == pytest.approx(0.6)  # halfway: (1 + 0.2) / 2
    assert anl_alpha(10, 11, 0.2) == pytest.approx(0.2)
    assert anl_alpha(3, 11, 0.0) == pytest.approx(0.7)
    assert anl_alpha(11, 11, 0.0) == pytest.approx(0.0)  # after the last epoch: stays final
    assert anl_alpha(0, 1, 0.0) == 1.0


def test_ada_alpha_is_the_teachers_true_class_margin():
    t = logits_of([[0.6, 0.2, 0.2], [0.6, 0.2, 0.2], [0.9, 0.05, 0.05]])
    y = torch.tensor([0, 1, 0])
    # 0.6 - 0.4 / 2 = 0.4; 0.2 - 0.8 / 2 < 0 -> 0; 0.9 - 0.1 / 2 = 0.85
    assert ada_alpha(t, y).tolist() == pytest.approx([0.4, 0.0, 0.85])


def test_wls_alpha_from_student_and_teacher_cross_entropies():
    s = logits_of([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    t = logits_of([[0.6, 0.2, 0.2], [0.1, 0.8, 0.1]])
    y = torch.tensor([0, 0])
    expected = [1 - math.exp(-math.log(2) / -math.log(0.6)), 1 - math.exp(-1.0)]  # equal CEs -> 1 - 1/e
    assert wls_alpha(s, t, y).tolist() == pytest.approx(expected)


def test_module_rules_give_their_alpha():
    student, teacher = nn.Linear(3, 3).double(), nn.Identity()
    s, t, y = logits_of([[0.5, 0.25, 0.25]]), logits_of([[0.6, 0.2, 0.2]]), torch.tensor([0])
    alphas = {rule: SampleWiseKDModule(student, teacher, TRAIN_CFG, rule, alpha=0.9, alpha_final=0.2)
              .sample_alpha(s, t, y).item() for rule in SampleWiseKDModule.RULES}
    assert alphas["ce"] == 0.0 and alphas["kd"] == pytest.approx(0.9) and alphas["anl"] == 1.0  # epoch 0
    assert alphas["ada"] == pytest.approx(0.4)
    assert alphas["wls"] == pytest.approx(1 - math.exp(-math.log(2) / -math.log(0.6)))
    with pytest.raises(ValueError, match="unknown fusion-ratio rule"):
        SampleWiseKDModule(student, teacher, TRAIN_CFG, "mystery")


def test_sample_wise_loss_is_the_shared_fused_form():
    student, teacher = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    module = SampleWiseKDModule(student, teacher, TRAIN_CFG, "ada", tau=2.0)
    loss, logits = module.training_loss(x, y)
    t = teacher(x).detach()
    expected = fused_loss(ada_alpha(t, y), per_sample_kd(logits, t, 2.0), per_sample_ce(logits, y))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    ce_loss, _ = SampleWiseKDModule(student, teacher, TRAIN_CFG, "ce").training_loss(x, y)
    assert ce_loss.item() == pytest.approx(per_sample_ce(student(x), y).mean().item(), rel=1e-6)


def test_alpha_summary_mean_std_and_quantiles():
    out = alpha_summary(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert out["alpha_mean"] == pytest.approx(0.5) and out["alpha_std"] == pytest.approx(math.sqrt(0.125))
    assert out["alpha_q10"] == pytest.approx(0.1) and out["alpha_q50"] == pytest.approx(0.5)
    assert out["alpha_q90"] == pytest.approx(0.9)


# -- TGeo-KD -------------------------------------------------------------------------
def test_trilateral_features_have_9c_documented_values():
    s, t = torch.tensor([[0.25, 0.75]]), torch.tensor([[0.5, 0.5]])
    t_bar, g = torch.tensor([[0.8, 0.2]]), torch.tensor([[1.0, 0.0]])
    f = trilateral_features(s, t, t_bar, g)
    assert f.shape == (1, 9 * 2)
    expected = [0.25, 0.75, 0.5, 0.5, 0.8, 0.2, 1.0, 0.0,
                0.75, 0.75,    # |S - G|
                0.25, 0.25,    # |S - T|
                0.55, 0.55,    # |S - T_bar|
                0.15, 0.15,    # (G - T_bar) * (G - S) = [0.2 * 0.75, -0.2 * -0.75]
                0.375, 0.375]  # (G - T) * (G - S) = [0.5 * 0.75, -0.5 * -0.75]
    assert f[0].tolist() == pytest.approx(expected)


def test_fusion_net_architecture_and_initial_ratio():
    net = FusionNet(num_classes=10, hidden=128, alpha_init=0.9)
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear, nn.Sigmoid]
    assert (net[0].in_features, net[0].out_features, net[2].out_features) == (90, 128, 1)
    with torch.no_grad():
        net[2].weight.zero_()
    assert net(torch.randn(4, 90)).squeeze(1).tolist() == pytest.approx([0.9] * 4)


def tiny_problem():
    torch.manual_seed(0)
    c = 3
    student = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, c)).double()
    fusion = FusionNet(c, hidden=6, alpha_init=0.5).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, c, (8,))
    t = torch.randn(8, c, dtype=torch.float64) * 2
    t_bar = torch.softmax(torch.randn(c, c, dtype=torch.float64), 1)
    x_val, y_val = torch.randn(5, 4, dtype=torch.float64), torch.randint(0, c, (5,))
    return fusion, student, (x, y, t, t_bar, x_val, y_val)


def check_hypergradient_by_finite_differences(fusion, student, args, kwargs, rel):
    """fusion_hypergradient against central differences of meta_objective in five entries of phi."""
    _, grads = fusion_hypergradient(fusion, student, *args, **kwargs)
    theta = {k: p.detach() for k, p in student.named_parameters()}
    phi = {k: p.detach() for k, p in fusion.named_parameters()}

    def objective(name, index, delta):
        params = {k: v.clone() for k, v in phi.items()}
        params[name][index] += delta
        th = {k: v.clone().requires_grad_() for k, v in theta.items()}
        return meta_objective(params, fusion, student, th, *args, **kwargs).item()

    eps, checked = 1e-6, 0
    for name, index in [("0.weight", (0, 0)), ("0.weight", (2, 7)), ("0.bias", (1,)), ("2.weight", (0, 3)), ("2.bias", (0,))]:
        fd = (objective(name, index, eps) - objective(name, index, -eps)) / (2 * eps)
        assert grads[name][index].item() == pytest.approx(fd, rel=rel, abs=1e-9)
        checked += abs(fd) > 1e-8
    assert checked >= 3  # the fusion net really gets a gradient


def test_fusion_hypergradient_matches_finite_differences():
    fusion, student, args = tiny_problem()
    check_hypergradient_by_finite_differences(fusion, student, args, {"tau": 2.0, "inner_lr": 0.5, "feature_tau": 1.0},
                                              rel=1e-5)
    assert all(p.grad is None for p in student.parameters())  # theta is not touched


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=1e-4),
    lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05),
], ids=["sgd-momentum-wd", "adam-wd", "adamw"])
def test_the_virtual_step_is_the_real_optimizers_next_step(make):
    """optimizer_step from a state two real steps in equals the third real step (same gradient)."""
    torch.manual_seed(0)
    net = nn.Linear(4, 3).double()
    opt = make(net.parameters())
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(6, 4, dtype=torch.float64)).pow(2).sum().backward()
        opt.step()
    named = dict(net.named_parameters())
    grads = {k: torch.randn_like(p) for k, p in named.items()}
    virtual = optimizer_step(opt, named)({k: p.detach().clone() for k, p in named.items()}, grads)
    for k, p in named.items():
        p.grad = grads[k].clone()
    opt.step()
    for k, p in named.items():
        assert torch.allclose(virtual[k], p.detach(), atol=1e-12), k


def test_fusion_hypergradient_through_an_adam_step_matches_finite_differences():
    fusion, student, args = tiny_problem()
    opt = torch.optim.Adam(student.parameters(), lr=0.05, weight_decay=1e-3)
    opt.zero_grad()
    student(args[0]).pow(2).mean().backward()
    opt.step()  # moments and step count are non-trivial
    opt.zero_grad(set_to_none=True)
    step = optimizer_step(opt, dict(student.named_parameters()))
    check_hypergradient_by_finite_differences(fusion, student, args, {"tau": 2.0, "feature_tau": 1.0, "step": step},
                                              rel=1e-4)


def test_meta_step_moves_only_the_fusion_net():
    fusion_student = nn.Linear(4, 3)
    module = TGeoKDModule(fusion_student, nn.Linear(4, 3), TRAIN_CFG, num_classes=3, seed=0, fusion_hidden=8)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    module.x_meta, module.y_meta = torch.randn(10, 4), torch.randint(0, 3, (10,))
    before = [p.detach().clone() for p in module.fusion.parameters()]
    student_before = [p.detach().clone() for p in module.model.parameters()]
    loss, logits = module.training_loss(x, y)
    assert any(not torch.equal(a, p) for a, p in zip(before, module.fusion.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(student_before, module.model.parameters()))
    loss.backward()
    assert all(p.grad is None for p in module.fusion.parameters())  # alpha is a weight for the student
    metrics = module.extra_epoch_metrics()
    assert {"alpha_mean", "alpha_std", "alpha_q50", "fusion_val_loss"} <= set(metrics)


def test_teacher_class_means_rows_are_class_means():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.7, 0.1, 0.2], [0.2, 0.6, 0.2]])
    y = torch.tensor([0, 0, 1])
    t_bar = teacher_class_means(nn.Identity(), probs.log(), y, num_classes=3)
    assert t_bar[0].tolist() == pytest.approx([0.6, 0.2, 0.2])
    assert t_bar[1].tolist() == pytest.approx([0.2, 0.6, 0.2])
    assert t_bar[2].tolist() == pytest.approx([1 / 3] * 3)  # class without samples: uniform


def test_carve_meta_val_is_stratified_disjoint_and_seeded():
    y = torch.arange(10).repeat_interleave(50)
    keep, meta = carve_meta_val(y, 0.1, seed=3)
    assert len(meta) == 50 and torch.bincount(y[meta]).tolist() == [5] * 10
    assert set(keep.tolist()).isdisjoint(meta.tolist()) and len(keep) + len(meta) == len(y)
    assert torch.equal(meta, carve_meta_val(y, 0.1, seed=3)[1])
    assert not torch.equal(meta, carve_meta_val(y, 0.1, seed=4)[1])


def setup_with(tensors: dict) -> TGeoKDModule:
    torch.manual_seed(0)
    teacher = nn.Linear(4, 3)
    module = TGeoKDModule(nn.Linear(4, 3), teacher, TRAIN_CFG, num_classes=3, seed=0)
    module.trainer = SimpleNamespace(datamodule=SimpleNamespace(tensors=tensors))
    module.setup("fit")
    return module


def test_t_bar_never_sees_val_or_test_data():
    gen = torch.Generator().manual_seed(1)
    split = lambda n: (torch.randn(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen))  # noqa: E731
    train, val, test = split(60), split(20), split(20)
    a = {"train": train, "val": val, "test": test}
    b = {"train": train, "val": split(20), "test": (test[0] * 100 + 5, (test[1] + 1) % 3)}
    ma, mb = setup_with(a), setup_with(b)
    assert torch.equal(ma.t_bar, mb.t_bar)  # other splits changed, T_bar did not
    # T_bar is the teacher's class mean over the student's training samples (meta-val held out)
    keep, meta = carve_meta_val(train[1], 0.1, seed=0)
    assert torch.allclose(ma.t_bar, teacher_class_means(ma.teacher, train[0][keep], train[1][keep], 3))
    assert len(a["train"][1]) == len(keep) and torch.equal(ma.y_meta, train[1][meta])
    mc = setup_with({"train": (train[0] + 1, train[1]), "val": val, "test": test})
    assert not torch.allclose(ma.t_bar, mc.t_bar)  # it does depend on the training split


def test_every_registered_method_has_options_in_the_schema_and_the_config():
    schema = yaml.safe_load((REPO / "config" / "schemas" / "tgeo_kd.yaml").read_text())
    assert set(schema["properties"]["methods"]["properties"]) == set(METHODS)
    config = yaml.safe_load((REPO / "config" / "studies" / "tgeo_kd.yaml").read_text())
    assert set(config["tgeo_kd"]["methods"]) == set(METHODS)
