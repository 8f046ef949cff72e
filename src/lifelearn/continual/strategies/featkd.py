"""Feature distillation (PAPERS.md section 5; Smith et al. 2023): weight * mean squared
difference between the penultimate features of the current and the previous model."""
from __future__ import annotations

import torch

from lifelearn.continual.common import snapshot
from lifelearn.continual.template import Plugin


class FeatKD(Plugin):
    name = "featkd"

    def __init__(self, weight: float = 1.0):
        self.weight, self.old = float(weight), None

    def after_task(self, learner, task):
        self.old = snapshot(learner.model)

    def extra_loss(self, learner, x, y, t, feats, out):
        if self.old is None:
            return None
        with torch.no_grad():
            old = self.old.features(x)
        return self.weight * (feats - old).pow(2).mean()
