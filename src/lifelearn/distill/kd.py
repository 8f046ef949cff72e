"""Vanilla knowledge distillation (Hinton et al. 2015), the baseline every KD method
is compared to (PAPERS.md section 1):

    loss = (1 - a) * CE(s, y) + a * tau^2 * KL(softmax(t / tau) || softmax(s / tau))

`per_sample_kd` / `per_sample_ce` give the per-sample terms so sample-wise fusion
ratios (TGeo-KD and the re-weighting baselines) share one loss form, `fused_loss`;
vanilla KD is its constant ratio (distill/reweight.py, rule `kd`), and
`DistillationModule` is the base of every student with a frozen teacher.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lifelearn.train.module import ClassifierModule


def per_sample_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * KL(softmax(t/tau) || softmax(s/tau)) for each sample, shape (N,)."""
    log_s = F.log_softmax(student_logits / tau, dim=1)
    log_t = F.log_softmax(teacher_logits / tau, dim=1)
    return tau**2 * (log_t.exp() * (log_t - log_s)).sum(dim=1)


def per_sample_ce(student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(student_logits, targets, reduction="none")


def fused_loss(alpha: torch.Tensor | float, kd: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
    """mean_i [alpha_i * KD_i + (1 - alpha_i) * CE_i]; alpha a scalar or shape (N,)."""
    return (alpha * kd + (1 - alpha) * ce).mean()


class DistillationModule(ClassifierModule):
    """A student trained against a frozen teacher (kept in eval mode, never optimised)."""

    def __init__(self, model: nn.Module, teacher: nn.Module, train_cfg: dict):
        super().__init__(model, train_cfg)
        self.teacher = teacher.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # BatchNorm statistics of the teacher never move
        return self

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)
