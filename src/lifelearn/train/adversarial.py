"""PGD adversarial training (PGD-AT, Madry et al. 2018): minimise the cross-entropy on
L-inf PGD examples of the model being trained,

    min_theta E[ max_{||delta||_inf <= eps} CE(f_theta(x + delta), y) ],

the inner max approximated by `evaluate.robustness.pgd_attack` (model in eval mode
while attacked). Used for robust teachers (pretraining method `pgd_at`) and as the
PGD-AT student baseline of the MTARD study. Training accuracy in the history is the
accuracy on the adversarial batch.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from lifelearn.evaluate.robustness import attack_settings, pgd_from_config
from lifelearn.train.module import ClassifierModule


class PGDATModule(ClassifierModule):
    """Cross-entropy on PGD examples; `attack` = {eps, step_size, steps, random_start}."""

    def __init__(self, model, train_cfg: dict, attack: dict):
        super().__init__(model, train_cfg)
        attack_settings(attack)  # fail early on a bad attack config
        self.attack = dict(attack)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor):
        logits = self(pgd_from_config(self.model, x, y, self.attack))
        return F.cross_entropy(logits, y), logits
