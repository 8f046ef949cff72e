"""EWC (Kirkpatrick et al. 2017), online form: after each task F <- gamma F + F_task
(diagonal empirical Fisher of the task, fisher.py) and the anchor becomes the current
weights; penalty lambda * sum_i F_i (theta_i - theta_prev_i)^2 (the L2 penalty weighted
by F, so with F = 1 it equals l2.py's)."""
from __future__ import annotations

from lifelearn.continual.fisher import diagonal_fisher
from lifelearn.continual.common import parameters_copy, task_train_sample
from lifelearn.continual.strategies.l2 import weighted_l2_penalty
from lifelearn.continual.template import Plugin


class EWC(Plugin):
    name = "ewc"

    def __init__(self, weight: float = 100.0, gamma: float = 1.0, fisher_samples: int = 500):
        self.weight, self.gamma, self.fisher_samples = float(weight), float(gamma), int(fisher_samples)
        self.anchor = self.fisher = None

    def after_task(self, learner, task):
        x, y, t = task_train_sample(learner, task, self.fisher_samples)
        new = diagonal_fisher(learner.model, x, y, learner.scenario.masks[t])
        self.fisher = new if self.fisher is None else {k: self.gamma * self.fisher[k] + new[k] for k in new}
        self.anchor = parameters_copy(learner.model)

    def extra_loss(self, learner, x, y, t, feats, out):
        if self.anchor is None:
            return None
        return self.weight * weighted_l2_penalty(learner.model, self.anchor, self.fisher)
