"""RSLAD: Robust Soft Label Adversarial Distillation (Zi et al., ICCV 2021), a baseline of
MTARD (PAPERS.md section 2). The robust teacher's soft labels on the *clean* input, T(x),
replace the hard labels everywhere, in the attack as in the loss:

    x_adv = argmax_{||x' - x||_inf <= eps} KL(T(x) || S(x'))                (PGD on the KL)
    loss  = w_adv * tau^2 KL(T(x)/tau || S(x_adv)/tau) + (1 - w_adv) * tau^2 KL(T(x)/tau || S(x)/tau)

Followed: the authors' code (github.com/zibojia/RSLAD, rslad_loss.py `rslad_inner_loss` and
resnet18_rslad_cifar10.py): the student is attacked in eval mode from x + 0.001 N(0, 1)
with `steps` signed-gradient steps of the summed KL to softmax(T(x)) (10 steps of 2/255 at
eps 8/255 there), and trained on 5/6 * KL_adv + 1/6 * KL_nat with tau = 1 (no
temperature; the paper's equation has tau, set to 1). Their KL is averaged over batch x
classes (`torch.mean` of the elementwise term: the per-sample KL / C), which
`kl_reduction: mean` reproduces; `batchmean` is the per-sample KL averaged over the
batch, the study's choice for MTARD and ARD as well (a constant factor 1/C, which Adam
all but ignores and SGD's effective step does not). The teacher is frozen, in eval mode.
"""
from __future__ import annotations

import torch

from lifelearn.distill.kd import DistillationModule
from lifelearn.distill.trades import kl_pgd_attack, soft_kl
from lifelearn.evaluate.robustness import attack_settings

REFERENCE_ADV_WEIGHT = 5 / 6


def rslad_loss(student_adv_logits: torch.Tensor, student_clean_logits: torch.Tensor,
               teacher_clean_logits: torch.Tensor, adv_weight: float = REFERENCE_ADV_WEIGHT, tau: float = 1.0,
               reduction: str = "batchmean") -> torch.Tensor:
    """w_adv * tau^2 KL(T(x) || S(x_adv)) + (1 - w_adv) * tau^2 KL(T(x) || S(x)), both softened by tau."""
    kl_adv = soft_kl(teacher_clean_logits, student_adv_logits, tau, reduction)
    kl_nat = soft_kl(teacher_clean_logits, student_clean_logits, tau, reduction)
    return tau**2 * (adv_weight * kl_adv + (1 - adv_weight) * kl_nat)


class RSLADModule(DistillationModule):
    """Student of one frozen robust teacher on examples that attack the teacher's soft labels."""

    def __init__(self, model, teacher, train_cfg: dict, attack: dict, cfg: dict):
        super().__init__(model, teacher, train_cfg)
        attack_settings(attack)
        soft_kl(torch.zeros(1, 2), torch.zeros(1, 2), 1.0, cfg.get("kl_reduction", "batchmean"))  # fail early
        self.attack = dict(attack)
        self.adv_weight = float(cfg.get("adv_weight", REFERENCE_ADV_WEIGHT))
        self.tau = float(cfg.get("tau", 1.0))
        self.reduction = cfg.get("kl_reduction", "batchmean")

    def training_loss(self, x, y):
        eps, step, steps, start = attack_settings(self.attack)
        t = self.teacher_logits(x)
        # the attack's KL is the reference's: at temperature 1, whatever the loss's tau
        x_adv = kl_pgd_attack(self.model, x, t, eps, step, steps, start)
        adv_logits = self(x_adv)
        loss = rslad_loss(adv_logits, self(x), t, self.adv_weight, self.tau, self.reduction)
        return loss, adv_logits
