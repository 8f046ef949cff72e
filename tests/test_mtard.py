"""MTARD study: PGD, the ARD / MTARD losses, one step of each balance, the ablation
switches, and the names the config may use (PAPERS.md section 2)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lifelearn.distill.ard import ard_loss
from lifelearn.distill.mtard import (MTARDModule, balance_step_scale, ebb_step, mtard_loss, neg_entropy, nlb_step,
                                     teacher_kl)
from lifelearn.evaluate.robustness import pgd_attack, random_start, robustness_metrics
from lifelearn.models import build_model
from lifelearn.train.adversarial import PGDATModule
from lifelearn.studies import mtard, teachers

from conftest import REPO

LN3 = math.log(3.0)
KL_75_50 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL([3/4, 1/4] || [1/2, 1/2])


# -- PGD -------------------------------------------------------------------------
def _blobs(n=400, d=8, seed=0):
    """Two Gaussian classes in [0, 1]^d, separable with margin."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = (0.5 + (2 * y[:, None] - 1) * 0.2 + 0.05 * torch.randn(n, 1, d, generator=gen)[:, 0]).clamp(0, 1)
    return x[:, None, :], y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y = _blobs()
    model = build_model({"arch": "mlp", "hidden": [16]}, (1, 8), 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert (model(x).argmax(1) == y).float().mean() > 0.95
    return model, x, y


@pytest.mark.parametrize("start", ["uniform", "normal", "none"])
def test_pgd_stays_in_the_eps_ball_and_the_unit_box(trained, start):
    model, x, y = trained
    x = x.clone()
    x[:10] = 0.0  # corners: the box must clip the ball
    x[10:20] = 1.0
    eps = 0.1
    x_adv = pgd_attack(model, x, y, eps=eps, step_size=0.07, steps=7, start=start)
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert (x_adv - x).abs().max().item() > eps / 2  # it moved


def test_random_start_is_in_the_ball_and_box():
    x = torch.rand(64, 1, 8)
    for kind in ("uniform", "normal"):
        x0 = random_start(x, 0.05, kind, torch.Generator().manual_seed(1))
        assert (x0 - x).abs().max() <= 0.05 + 1e-7 and x0.min() >= 0 and x0.max() <= 1
    assert torch.equal(random_start(x, 0.05, "none"), x)


def test_pgd_raises_the_loss_of_a_trained_model(trained):
    model, x, y = trained
    clean = F.cross_entropy(model(x), y).item()
    adv = F.cross_entropy(model(pgd_attack(model, x, y, 0.15, 0.05, 10, "uniform")), y).item()
    one_step = F.cross_entropy(model(pgd_attack(model, x, y, 0.15, 0.05, 1, "none")), y).item()
    assert adv > one_step > clean
    assert adv > 2 * clean


def test_pgd_attacks_in_eval_mode_and_restores_the_model():
    torch.manual_seed(0)
    model = build_model({"arch": "convnet", "channels": [4]}, (1, 8), 3)
    model.train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    before = bn.running_mean.clone()
    x, y = torch.rand(16, 1, 8), torch.randint(0, 3, (16,))
    pgd_attack(model, x, y, 0.1, 0.02, 3)
    assert model.training and torch.equal(bn.running_mean, before)  # no BN statistics moved
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_robustness_metrics_weighted_is_the_mean_and_eps_zero_changes_nothing(trained):
    model, x, y = trained
    zero = robustness_metrics(model, x, y, {"eps": 0.0, "step_size": 0.01, "steps": 3})
    assert zero["test_pgd_acc"] == zero["test_clean_acc"]
    m = robustness_metrics(model, x, y, {"eps": 0.3, "step_size": 0.05, "steps": 10}, batch_size=64)
    assert m["test_pgd_acc"] < m["test_clean_acc"]
    assert m["test_weighted_robust_acc"] == pytest.approx((m["test_pgd_acc"] + m["test_clean_acc"]) / 2)
    assert m == robustness_metrics(model, x, y, {"eps": 0.3, "step_size": 0.05, "steps": 10}, batch_size=64)


def test_pgd_at_trains_on_adversarial_examples(trained):
    model, x, y = trained
    module = PGDATModule(model, {"optimizer": "adam", "lr": 0.01}, {"eps": 0.15, "step_size": 0.05, "steps": 10})
    loss, logits = module.training_loss(x, y)
    assert loss.item() > F.cross_entropy(model(x), y).item()
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item())
    teacher = {"train": {"optimizer": "adam", "lr": 0.01}, "attack": {"eps": 0.1, "step_size": 0.1, "steps": 1}}
    assert teachers.METHODS["pgd_at"](model, None, teacher).attack["steps"] == 1


# -- losses ----------------------------------------------------------------------
def test_teacher_kl_softens_only_the_teacher():
    s = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # student: [1/2, 1/2], never softened
    t = torch.tensor([[2 * LN3, 0.0], [2 * LN3, 0.0]])  # teacher at tau 2: [3/4, 1/4]
    assert teacher_kl(s, t, 2.0).item() == pytest.approx(KL_75_50, rel=1e-5)
    assert teacher_kl(s, t, 2.0, "mean").item() == pytest.approx(KL_75_50 / 2, rel=1e-5)  # / C (reference code)
    assert teacher_kl(s * 5, t / 2 + 7, 1.0).item() == pytest.approx(KL_75_50, rel=1e-5)
    with pytest.raises(ValueError, match="kl_reduction"):
        teacher_kl(s, t, 1.0, "sum")


def test_mtard_loss_is_the_weighted_sum_of_the_two_kls():
    s_adv, t_adv = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])  # L_adv = KL_75_50 at tau 1
    s_nat, t_nat = torch.tensor([[LN3, 0.0]]), torch.tensor([[0.0, 0.0]])  # L_nat = KL([1/2,1/2] || [3/4,1/4])
    l_nat_hand = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    loss, l_adv, l_nat = mtard_loss(s_adv, s_nat, t_adv, t_nat, 1.0, 3.0, 0.3, 0.7)
    assert l_adv.item() == pytest.approx(KL_75_50, rel=1e-5)
    assert l_nat.item() == pytest.approx(l_nat_hand, rel=1e-5)  # uniform teacher: tau changes nothing
    assert loss.item() == pytest.approx(0.3 * KL_75_50 + 0.7 * l_nat_hand, rel=1e-5)


def test_ard_loss_on_a_hand_case():
    s_adv = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[2 * LN3, 0.0]])  # at tau 2: [3/4, 1/4]
    s_clean, y = torch.tensor([[LN3, 0.0]]), torch.tensor([0])  # CE = -ln(3/4)
    expected = 0.5 * 4 * KL_75_50 + 0.5 * -math.log(0.75)
    assert ard_loss(s_adv, s_clean, t, y, alpha=0.5, tau=2.0).item() == pytest.approx(expected, rel=1e-5)
    assert ard_loss(s_adv, None, t, y, alpha=1.0, tau=2.0).item() == pytest.approx(4 * KL_75_50, rel=1e-5)


# -- balances --------------------------------------------------------------------
def test_neg_entropy_on_a_hand_case():
    assert neg_entropy(torch.tensor([[0.0, 0.0]]), 1.0).item() == pytest.approx(math.log(0.5) / 2, rel=1e-6)
    p = torch.tensor([0.75, 0.25])
    assert neg_entropy(torch.log(p)[None] * 2, 2.0).item() == pytest.approx((p * p.log()).mean().item(), rel=1e-5)


def test_one_ebb_step_on_a_constructed_case():
    # the robust teacher's output is the more uncertain one: H_adv / H_nat = 2 > 1
    tau_adv, tau_nat = ebb_step(torch.tensor(2.0), torch.tensor(3.0), torch.tensor(-0.6), torch.tensor(-0.3), 0.1)
    assert tau_adv.item() == pytest.approx(1.9) and tau_nat.item() == pytest.approx(3.1)
    tau_adv, tau_nat = ebb_step(torch.tensor(1.0), torch.tensor(10.0), torch.tensor(-0.6), torch.tensor(-0.3), 0.1)
    assert tau_adv.item() == 1.0 and tau_nat.item() == 10.0  # clamped to [1, 10]
    tau_adv, tau_nat = ebb_step(torch.tensor(2.0), torch.tensor(3.0), torch.tensor(-0.3), torch.tensor(-0.3), 0.1)
    assert (tau_adv.item(), tau_nat.item()) == (2.0, 3.0)  # balanced entropies: no move


def test_one_nlb_step_on_a_constructed_case():
    # r_adv = 1.0 / 2.0 = 0.5, r_nat = 1.5 / 2.0 = 0.75 -> target w_nat = 0.75 / 1.25 = 0.6
    w_adv, w_nat = nlb_step(torch.tensor(0.5), torch.tensor(1.0), torch.tensor(1.5), 2.0, 2.0, 0.025)
    assert w_nat.item() == pytest.approx(0.5 - 0.025 * (0.5 - 0.6))
    assert w_adv.item() == pytest.approx(1 - w_nat.item())
    assert nlb_step(torch.tensor(0.5), 1.0, 1.5, 2.0, 2.0, 1.0)[1].item() == pytest.approx(0.6)


def test_balance_step_scale():
    assert balance_step_scale(117300, 570) == pytest.approx(117300 / 570)
    assert balance_step_scale(None, 570) == 1.0


def _mtard_module(ebb=True, nlb=True):
    torch.manual_seed(0)
    spec = {"arch": "mlp", "hidden": [8]}
    student, clean, robust = (build_model(spec, (1, 8), 3) for _ in range(3))
    cfg = {"ebb": {"enabled": ebb, "step": 0.25, "init": 1.0, "min": 1.0, "max": 10.0},
           "nlb": {"enabled": nlb, "step": 0.5, "init_nat": 0.5}, "kl_reduction": "batchmean"}
    return MTARDModule(student, clean, robust, {"optimizer": "adam", "lr": 0.01},
                       {"eps": 0.1, "step_size": 0.05, "steps": 2, "random_start": "normal"}, cfg)


def test_module_balance_update_follows_the_rules():
    module = _mtard_module()
    t_adv, t_nat = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[6.0, 0.0, 0.0]])  # robust teacher unsure
    module.update_balances(t_adv, t_nat, torch.tensor(2.0), torch.tensor(4.0))  # first batch: L(0)
    assert module.tau_adv.item() == 1.0 and module.tau_nat.item() == pytest.approx(1.25)
    assert module.w_nat.item() == pytest.approx(0.5)  # r_adv = r_nat = 1
    module.update_balances(t_adv, t_nat, torch.tensor(1.0), torch.tensor(3.0))  # r = 0.5, 0.75
    assert module.tau_nat.item() == pytest.approx(1.5)
    assert module.w_nat.item() == pytest.approx(0.5 - 0.5 * (0.5 - 0.6))
    assert module.w_adv.item() == pytest.approx(1 - module.w_nat.item())
    assert module.loss0.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("ebb, nlb", [(False, True), (True, False)])
def test_switching_a_balance_off_keeps_its_quantity_constant(ebb, nlb):
    module = _mtard_module(ebb, nlb)
    x, y = torch.rand(32, 1, 8), torch.randint(0, 3, (32,))
    for _ in range(5):
        loss, logits = module.training_loss(x, y)
        loss.backward()
        x = torch.rand(32, 1, 8)
    taus, weights = (module.tau_adv.item(), module.tau_nat.item()), (module.w_adv.item(), module.w_nat.item())
    assert (taus == (1.0, 1.0)) == (not ebb)  # the switched-off quantity stays, the other moves
    assert (weights == (0.5, 0.5)) == (not nlb)
    series = module.extra_epoch_metrics()
    assert set(series) == {"tau_adv", "tau_nat", "w_adv", "w_nat", "loss_adv", "loss_nat"}


def test_teachers_stay_frozen_in_eval_mode():
    module = _mtard_module()
    module.train()
    assert not module.clean_teacher.training and not module.robust_teacher.training
    assert not any(p.requires_grad for p in module.clean_teacher.parameters())
    x, y = torch.rand(16, 1, 8), torch.randint(0, 3, (16,))
    module.training_loss(x, y)[0].backward()
    assert all(p.grad is None for p in module.robust_teacher.parameters())
    assert all(p.grad is not None for p in module.model.parameters())


# -- names ----------------------------------------------------------------------
def test_each_job_reads_the_teachers_its_registry_entry_names():
    from lifelearn.config import load_config
    from lifelearn.jobs import Layout

    cfg = load_config(REPO / "config", "default")
    jobs = mtard.jobs(cfg, Layout("default"))
    planned = {job.name: job for job in jobs if job.step == "train"}
    assert set(planned) == set(cfg["mtard"]["methods"])
    for job in jobs:
        if job.step == "select":
            continue
        roles = mtard.METHODS[cfg["mtard"]["methods"][job.name]["method"]].teachers
        tuned = {"selection"} if job.step == "train" and "tune" in cfg["mtard"]["methods"][job.name] else set()
        assert set(job.inputs) == set(roles) | tuned
        for role in roles:
            teacher = cfg["mtard"]["teachers"][role]
            assert job.inputs[role] == [f"checkpoints/default/teachers/{teacher}/seed{s}.pt" for s in job.seeds]
    assert mtard.METHODS["mtard"].teachers == ("clean", "robust") and mtard.METHODS["ard"].teachers == ("robust",)


def test_mtard_steps_are_reproducible_from_the_seed():
    def run():
        module = _mtard_module()  # seeds torch with 0
        x, y = torch.rand(32, 1, 8), torch.randint(0, 3, (32,))
        losses = [module.training_loss(x, y)[0].item() for _ in range(3)]
        return losses, module.tau_nat.item(), module.w_nat.item()

    assert run() == run()
