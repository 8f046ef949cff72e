"""TRADES (Zhang et al., ICML 2019, "Theoretically Principled Trade-off between Robustness
and Accuracy"), a baseline of MTARD (PAPERS.md section 2) and an option for the robust
teacher's training:

    x_adv = argmax_{||x' - x||_inf <= eps} KL(f(x) || f(x'))          (L-inf PGD on the KL)
    loss  = CE(f(x), y) + beta * KL(f(x) || f(x_adv))                 (f = softmax of the logits)

Followed: the authors' `trades_loss` (github.com/yaodongyu/TRADES, trades.py): the attack
starts at x + 0.001 N(0, 1), takes `steps` signed-gradient steps of the summed KL against
the model's own clean softmax (held fixed during the attack), projects onto the eps-ball
and [0, 1]; the model is in eval mode while attacked (the reference's `model.eval()`), and
in the loss the KL is summed over classes and divided by the batch size (`batchmean`),
with the gradient flowing through both f(x) and f(x_adv). Their CIFAR-10 setting:
beta 6 (1/lambda), eps 0.031, step 0.007, 10 steps. One deviation: f(x) is computed once
per batch and used by both terms (the reference runs the clean batch through the model
twice; in train mode both passes give the same logits, only BatchNorm's running
statistics are updated once instead of twice).

`kl_pgd_attack` is the attack on a KL to fixed target probabilities; RSLAD
(distill/rslad.py) uses it with the teacher's soft labels as the target.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from lifelearn.evaluate.robustness import attack_settings, linf_pgd
from lifelearn.train.module import ClassifierModule


def soft_kl(target_logits: torch.Tensor, logits: torch.Tensor, tau: float = 1.0,
            reduction: str = "batchmean") -> torch.Tensor:
    """KL(softmax(target / tau) || softmax(logits / tau)); `batchmean`: summed over classes,
    averaged over the batch; `mean`: averaged over batch x classes; `sum`: summed."""
    log_p = F.log_softmax(logits / tau, dim=1)
    log_t = F.log_softmax(target_logits / tau, dim=1)
    kl = log_t.exp() * (log_t - log_p)
    if reduction == "batchmean":
        return kl.sum(1).mean()
    if reduction == "mean":
        return kl.mean()
    if reduction == "sum":
        return kl.sum()
    raise ValueError(f"unknown KL reduction {reduction!r}; allowed: batchmean, mean, sum")


def kl_pgd_attack(model: torch.nn.Module, x: torch.Tensor, target_logits: torch.Tensor, eps: float,
                  step_size: float, steps: int, start: str = "normal", tau: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD maximising sum_i KL(softmax(target_i / tau) || softmax(model(x'_i) / tau));
    `target_logits` are fixed (detached)."""
    target = target_logits.detach()
    return linf_pgd(model, x, lambda logits: soft_kl(target, logits, tau, "sum"), eps, step_size, steps, start,
                    generator)


def trades_loss(clean_logits: torch.Tensor, adv_logits: torch.Tensor, targets: torch.Tensor,
                beta: float) -> torch.Tensor:
    """CE(f(x), y) + beta * KL(f(x) || f(x_adv)) (batchmean; gradient through both)."""
    return F.cross_entropy(clean_logits, targets) + beta * soft_kl(clean_logits, adv_logits)


class TRADESModule(ClassifierModule):
    """TRADES training; `attack` = {eps, step_size, steps, random_start} of the KL attack."""

    def __init__(self, model, train_cfg: dict, attack: dict, beta: float):
        super().__init__(model, train_cfg)
        attack_settings(attack)
        self.attack, self.beta = dict(attack), float(beta)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor):
        eps, step, steps, start = attack_settings(self.attack)
        with torch.no_grad():
            was_training = self.model.training
            self.model.eval()
            target = self.model(x)  # the attack's fixed target: f(x) in eval mode (reference)
            self.model.train(was_training)
        x_adv = kl_pgd_attack(self.model, x, target, eps, step, steps, start)
        clean_logits, adv_logits = self(x), self(x_adv)
        return trades_loss(clean_logits, adv_logits, y, self.beta), adv_logits
