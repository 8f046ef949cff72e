"""EWC (Kirkpatrick et al. 2017), online form: after each task F <- gamma F + F_task
(diagonal empirical Fisher of the task, fisher.py) and the anchor becomes the current
weights; penalty lambda * sum_i F_i (theta_i - theta_prev_i)^2 (the L2 penalty weighted
by F, so with F = 1 it equals l2.py's).

`backbone_only` and `from_start` as in l2.py (Smith et al. 2023's learners/kd.py, EWC_MC):
the penalty covers the feature extractor only; with `from_start` the first anchor is the
pretrained start with F = 0 until task 1 ends, exactly what their code does (its importance
is zero-initialised when regularising from the start), so EWC first acts in task 2 either
way. Their Fisher is the squared gradient of the batch-mean BCE of the last task's logits
(scaled by the batch size over the batch count); ours is the per-sample CE empirical Fisher:
the two differ in scale, which the weight, selected on validation, absorbs."""
from __future__ import annotations

from lifelearn.continual.fisher import diagonal_fisher
from lifelearn.continual.common import task_train_sample
from lifelearn.continual.strategies.l2 import regularised_copy, weighted_l2_penalty
from lifelearn.continual.template import Plugin


class EWC(Plugin):
    name = "ewc"

    def __init__(self, weight: float = 100.0, gamma: float = 1.0, fisher_samples: int = 500,
                 backbone_only: bool = False, from_start: bool = False):
        self.weight, self.gamma, self.fisher_samples = float(weight), float(gamma), int(fisher_samples)
        self.backbone_only, self.from_start = bool(backbone_only), bool(from_start)
        self.anchor = self.fisher = None

    def before_task(self, learner, task):
        if self.from_start and self.anchor is None:
            self.anchor = regularised_copy(learner.model, self.backbone_only)
            self.fisher = {k: v.zero_() for k, v in regularised_copy(learner.model, self.backbone_only).items()}

    def after_task(self, learner, task):
        x, y, t = task_train_sample(learner, task, self.fisher_samples)
        new = diagonal_fisher(learner.model, x, y, learner.scenario.masks[t])
        self.anchor = regularised_copy(learner.model, self.backbone_only)
        new = {k: v for k, v in new.items() if k in self.anchor}
        self.fisher = new if self.fisher is None else {k: self.gamma * self.fisher[k] + new[k] for k in new}

    def extra_loss(self, learner, x, y, t, feats, out):
        if self.anchor is None:
            return None
        return self.weight * weighted_l2_penalty(learner.model, self.anchor, self.fisher)
