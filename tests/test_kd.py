"""Vanilla KD: the loss equals Hinton's formula on a hand-computed case."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lifelearn.distill.kd import DistillationModule, per_sample_kd
from lifelearn.distill.reweight import SampleWiseKDModule


def test_per_sample_kd_on_a_hand_case():
    s = torch.tensor([[0.0, math.log(3.0)]])  # softmax(s/1) = [1/4, 3/4]
    t = torch.tensor([[0.0, 0.0]])  # softmax = [1/2, 1/2]
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert per_sample_kd(s, t, tau=1.0).item() == pytest.approx(expected, rel=1e-6)
    # with tau = 2: softmax(s/2) = [1, sqrt 3]/(1 + sqrt 3), times tau^2 = 4
    p = [1.0 / (1 + math.sqrt(3.0)), math.sqrt(3.0) / (1 + math.sqrt(3.0))]
    expected2 = 4 * sum(0.5 * math.log(0.5 / q) for q in p)
    assert per_sample_kd(s, t, tau=2.0).item() == pytest.approx(expected2, rel=1e-5)  # float32


def test_kd_loss_mixes_ce_and_kd_with_alpha():
    s = torch.tensor([[0.0, math.log(3.0)], [1.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([1, 0])
    ce = torch.tensor([-math.log(0.75), -math.log(math.e / (math.e + 1))])
    kd = per_sample_kd(s, t, 4.0)
    expected = (0.1 * ce + 0.9 * kd).mean()

    def loss(alpha):  # vanilla KD is the constant-ratio rule of the sample-wise module
        student, teacher = nn.Identity(), nn.Identity()
        module = SampleWiseKDModule(student, teacher, {"optimizer": "sgd", "lr": 0.1}, "kd", tau=4.0, alpha=alpha)
        module.teacher_logits = lambda x: t
        return module.training_loss(s, y)[0].item()

    assert loss(0.9) == pytest.approx(expected.item(), rel=1e-6)
    assert loss(0.0) == pytest.approx(ce.mean().item(), rel=1e-6)


def test_kd_is_zero_when_student_equals_teacher():
    z = torch.randn(5, 10)
    assert per_sample_kd(z, z.clone(), 4.0).abs().max().item() < 1e-6


def test_teacher_stays_frozen_and_in_eval_mode():
    student, teacher = nn.Sequential(nn.Linear(4, 3)), nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    module = DistillationModule(student, teacher, {"optimizer": "sgd", "lr": 0.1})
    module.train()
    assert not module.teacher.training and module.model.training
    assert all(not p.requires_grad for p in module.teacher.parameters())
    optimizer = module.configure_optimizers()
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in student.parameters()}
