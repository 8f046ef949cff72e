"""TRADES and RSLAD, the MTARD paper's baselines (distill/trades.py, distill/rslad.py):
hand-computed losses, the KL attack, the modules, the config entries and their defaults."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.nn import functional as F

from lifelearn.distill.rslad import REFERENCE_ADV_WEIGHT, RSLADModule, rslad_loss
from lifelearn.distill.trades import TRADESModule, kl_pgd_attack, soft_kl, trades_loss
from lifelearn.models import build_model
from lifelearn.studies import mtard, teachers

from conftest import REPO

LN3 = math.log(3.0)
KL_75_50 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL([3/4, 1/4] || [1/2, 1/2])
ATTACK = {"eps": 0.1, "step_size": 0.05, "steps": 3, "random_start": "normal"}
TRAIN = {"optimizer": "adam", "lr": 0.01}


def _mlp(seed=0, classes=3):
    torch.manual_seed(seed)
    return build_model({"arch": "mlp", "hidden": [16]}, (1, 8), classes)


# -- losses ------------------------------------------------------------------------
def test_soft_kl_reductions_on_a_hand_case():
    t, s = torch.tensor([[LN3, 0.0], [LN3, 0.0]]), torch.zeros(2, 2)  # [3/4, 1/4] vs [1/2, 1/2]
    assert soft_kl(t, s).item() == pytest.approx(KL_75_50, rel=1e-5)
    assert soft_kl(t, s, reduction="mean").item() == pytest.approx(KL_75_50 / 2, rel=1e-5)  # / C
    assert soft_kl(t, s, reduction="sum").item() == pytest.approx(2 * KL_75_50, rel=1e-5)
    assert soft_kl(2 * t, s, tau=2.0).item() == pytest.approx(KL_75_50, rel=1e-5)
    with pytest.raises(ValueError, match="KL reduction"):
        soft_kl(t, s, reduction="max")


def test_trades_loss_on_a_hand_case_and_its_gradient_reaches_the_clean_logits():
    clean = torch.tensor([[LN3, 0.0]], requires_grad=True)  # f(x) = [3/4, 1/4], y = 0: CE = -ln(3/4)
    adv = torch.tensor([[0.0, 0.0]], requires_grad=True)  # f(x_adv) = [1/2, 1/2]
    y = torch.tensor([0])
    loss = trades_loss(clean, adv, y, beta=6.0)
    assert loss.item() == pytest.approx(-math.log(0.75) + 6.0 * KL_75_50, rel=1e-5)
    loss.backward()
    ce_only = torch.autograd.grad(F.cross_entropy(clean, y), clean)[0]
    assert not torch.allclose(clean.grad, ce_only)  # the KL term is not detached from f(x) (reference)
    assert adv.grad.abs().sum() > 0
    assert trades_loss(clean, adv, y, 0.0).item() == pytest.approx(-math.log(0.75), rel=1e-5)


def test_rslad_loss_on_a_hand_case():
    teacher = torch.tensor([[2 * LN3, 0.0]])  # at tau 2: [3/4, 1/4]
    s_adv, s_nat = torch.tensor([[0.0, 0.0]]), teacher.clone()  # KL_adv = KL_75_50, KL_nat = 0
    assert rslad_loss(s_adv, s_nat, teacher, 0.5, 2.0).item() == pytest.approx(4 * 0.5 * KL_75_50, rel=1e-5)
    assert rslad_loss(s_adv, s_nat, teacher, 0.5, 2.0, "mean").item() == pytest.approx(KL_75_50, rel=1e-5)
    # the reference: 5/6 KL_adv + 1/6 KL_nat at tau 1
    t1, nat1 = torch.tensor([[LN3, 0.0]]), torch.tensor([[0.0, LN3]])  # KL([3/4,1/4] || [1/4,3/4])
    kl_nat = 0.75 * math.log(3) + 0.25 * math.log(1 / 3)
    assert REFERENCE_ADV_WEIGHT == pytest.approx(5 / 6)
    assert rslad_loss(s_adv, nat1, t1).item() == pytest.approx(5 / 6 * KL_75_50 + 1 / 6 * kl_nat, rel=1e-5)


# -- the KL attack -------------------------------------------------------------------
def test_kl_attack_needs_its_random_start_and_raises_the_kl_in_the_ball():
    model = _mlp()
    x = torch.rand(64, 1, 8)
    with torch.no_grad():
        own = model(x)
    # at x_adv = x the KL to the model's own output is at its minimum (zero gradient up to
    # rounding): why TRADES starts from x + 0.001 N(0, 1)
    x0 = x.clone().requires_grad_(True)
    assert torch.autograd.grad(soft_kl(own, model(x0), reduction="sum"), x0)[0].abs().max() < 1e-6
    x_adv = kl_pgd_attack(model, x, own, 0.1, 0.05, 5, "normal", generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert soft_kl(own, model(x_adv)).item() > 10 * soft_kl(own, model(x)).item() + 1e-4


def test_kl_attack_moves_the_student_away_from_the_teachers_soft_labels():
    student, teacher = _mlp(0), _mlp(1)
    x = torch.rand(64, 1, 8)
    with torch.no_grad():
        t = teacher(x)
        before = soft_kl(t, student(x)).item()
        after = soft_kl(t, student(kl_pgd_attack(student, x, t, 0.1, 0.05, 5, "normal"))).item()
    assert after > before
    assert student.training and all(p.requires_grad and p.grad is None for p in student.parameters())


# -- modules ---------------------------------------------------------------------------
def test_trades_module_loss_is_trades_loss_on_its_own_examples():
    module = TRADESModule(_mlp(), TRAIN, ATTACK, beta=3.0)
    module.train()
    x, y = torch.rand(32, 1, 8), torch.randint(0, 3, (32,))
    torch.manual_seed(5)
    loss, adv_logits = module.training_loss(x, y)
    torch.manual_seed(5)  # the same random start
    with torch.no_grad():
        target = module.model.eval()(x)
    module.model.train()
    x_adv = kl_pgd_attack(module.model, x, target, 0.1, 0.05, 3, "normal")
    assert torch.allclose(adv_logits, module(x_adv))
    assert loss.item() == pytest.approx(trades_loss(module(x), module(x_adv), y, 3.0).item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in module.model.parameters())


def test_rslad_module_trains_the_student_only():
    module = RSLADModule(_mlp(0), _mlp(1), TRAIN, ATTACK, {"adv_weight": 0.8, "tau": 2.0, "kl_reduction": "mean"})
    module.train()
    assert not module.teacher.training and (module.adv_weight, module.tau, module.reduction) == (0.8, 2.0, "mean")
    x, y = torch.rand(32, 1, 8), torch.randint(0, 3, (32,))
    loss, _ = module.training_loss(x, y)
    loss.backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert all(p.grad is not None for p in module.model.parameters())
    defaults = RSLADModule(_mlp(0), _mlp(1), TRAIN, ATTACK, {})
    assert (defaults.adv_weight, defaults.tau) == (pytest.approx(5 / 6), 1.0)  # the reference's
    with pytest.raises(ValueError, match="KL reduction"):
        RSLADModule(_mlp(0), _mlp(1), TRAIN, ATTACK, {"kl_reduction": "sum_over"})


def test_trades_is_a_teacher_option_with_the_references_beta():
    teacher = {"train": TRAIN, "attack": ATTACK}
    module = teachers.METHODS["trades"](_mlp(), None, teacher)
    assert isinstance(module, TRADESModule) and module.beta == 6.0
    assert teachers.METHODS["trades"](_mlp(), None, teacher | {"beta": 2.0}).beta == 2.0


# -- config ------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["default", "smoke", "paper"])
def test_the_study_runs_the_baselines_and_mtard_without_ebb(profile):
    from lifelearn.config import load_config

    cfg = load_config(REPO / "config", profile)
    methods = cfg["mtard"]["methods"]
    assert {"natural", "pgd_at", "trades", "ard", "rslad", "mtard", "mtard_no_ebb"} <= set(methods)
    assert mtard.METHODS["trades"].teachers == () and mtard.METHODS["rslad"].teachers == ("robust",)
    no_ebb, full = methods["mtard_no_ebb"], methods["mtard"]
    # EBB off (both temperatures stay at 1, the public code), everything else as MTARD
    assert no_ebb["ebb"]["enabled"] is False and no_ebb["ebb"]["init"] == 1.0 and full["ebb"]["enabled"] is True
    assert {k: v for k, v in no_ebb.items() if k not in ("ebb", "tune")} == \
           {k: v for k, v in full.items() if k not in ("ebb", "tune")}
    if profile == "default":
        assert methods["trades"]["beta"] == 6.0 and methods["rslad"]["adv_weight"] == pytest.approx(5 / 6)
        assert methods["rslad"]["tau"] == 1.0
        budgets = {m: len(mtard_points(methods[m])) for m in ("ard", "mtard", "mtard_no_ebb", "trades", "rslad")}
        assert set(budgets.values()) == {4}, budgets
        assert {c["b"] for c in cfg["claims"] if c["study"] == "mtard" and
                c["metric"] == "test_autoattack_weighted_robust_acc"} == {"ard", "pgd_at", "trades", "rslad"}


def mtard_points(entry):
    """The grid points of an entry's tune block (every combination of its lists)."""
    return list(itertools.product(*entry["tune"]["grid"].values()))
