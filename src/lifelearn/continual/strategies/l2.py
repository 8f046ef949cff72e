"""L2 regularisation towards the previous task's weights (PAPERS.md section 5; Smith et
al. 2023): lambda * sum_i w_i (theta_i - theta_prev_i)^2 with w_i = 1."""
from __future__ import annotations

import torch

from lifelearn.continual.common import parameters_copy
from lifelearn.continual.template import Plugin


def weighted_l2_penalty(model: torch.nn.Module, anchor: dict, weights: dict | None = None) -> torch.Tensor:
    """sum_i w_i (theta_i - anchor_i)^2 over all parameters (w = 1 when `weights` is None)."""
    total = torch.zeros(())
    for k, p in model.named_parameters():
        sq = (p - anchor[k]).pow(2)
        total = total + (sq if weights is None else weights[k] * sq).sum()
    return total


class L2(Plugin):
    name = "l2"

    def __init__(self, weight: float = 1.0):
        self.weight, self.anchor = float(weight), None

    def after_task(self, learner, task):
        self.anchor = parameters_copy(learner.model)

    def extra_loss(self, learner, x, y, t, feats, out):
        if self.anchor is None:
            return None
        return self.weight * weighted_l2_penalty(learner.model, self.anchor)
