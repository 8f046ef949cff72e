"""ARD: Adversarially Robust Distillation (Goldblum et al., AAAI 2020), the single
robust-teacher baseline of MTARD (PAPERS.md section 2):

    loss = alpha * tau^2 * KL(softmax(T(x)/tau) || softmax(S(x_adv)/tau)) + (1 - alpha) * CE(S(x), y)

The robust teacher sees the clean input, the student its PGD example; x_adv maximises
the student's cross-entropy (ARD's reference code). The reference code's CIFAR-10
defaults are alpha = 1.0 (no CE term) and tau = 30.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from lifelearn.distill.kd import DistillationModule, per_sample_kd
from lifelearn.evaluate.robustness import attack_settings, pgd_from_config


def ard_loss(student_adv_logits: torch.Tensor, student_clean_logits: torch.Tensor | None,
             teacher_clean_logits: torch.Tensor, targets: torch.Tensor, alpha: float, tau: float) -> torch.Tensor:
    """ARD's loss (batch mean); `student_clean_logits` may be None when alpha == 1."""
    loss = alpha * per_sample_kd(student_adv_logits, teacher_clean_logits, tau).mean()
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student_clean_logits, targets)
    return loss


class ARDModule(DistillationModule):
    """Student distilled from one frozen robust teacher on its own PGD examples."""

    def __init__(self, model, teacher, train_cfg: dict, attack: dict, alpha: float, tau: float):
        super().__init__(model, teacher, train_cfg)
        attack_settings(attack)
        self.attack, self.alpha, self.tau = dict(attack), float(alpha), float(tau)

    def training_loss(self, x, y):
        adv_logits = self(pgd_from_config(self.model, x, y, self.attack))
        clean_logits = self(x) if self.alpha < 1 else None
        return ard_loss(adv_logits, clean_logits, self.teacher_logits(x), y, self.alpha, self.tau), adv_logits
