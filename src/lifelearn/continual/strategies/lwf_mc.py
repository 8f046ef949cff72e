"""LwF-MC, the prediction distillation ("PredKD") of Smith et al. 2023, "A Closer Look at
Rehearsal-Free Continual Learning" (PAPERS.md section 5), as their code computes it
(learners/kd.py, class LWF_MC, in the data-free-continual-learning code of Smith, Halbe et
al., e.g. shaunak27/data-free-continual-learning; the form of iCaRL's LwF.MC, Rebuffi et al. 2017):
one binary cross-entropy on the sigmoid outputs, replacing the CE,

    loss = weight * BCE(sigmoid(z), target),  mean over the batch and the classes,
    target = one-hot(y), with the old classes' columns replaced by sigmoid(z_old)
             (z_old: the previous task's model's logits on the same inputs);

before the first task ends there is no previous model and the target is the one-hot label.
Their BCE runs over the classes seen so far (valid_out_dim) and their evaluation predicts
among those only; here evaluation takes the argmax over every class, so the classes not yet
seen are kept in the BCE with target 0 (otherwise their untrained logits would win at test
time); the old-class columns and the current task's one-hot are theirs. `weight` (default 1,
theirs) scales the whole term. Domain-incremental: every class is old after task 1."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelearn.continual.common import snapshot
from lifelearn.continual.template import Plugin


def lwf_mc_loss(logits: torch.Tensor, y: torch.Tensor, old_logits: torch.Tensor | None,
                old_classes: list[int]) -> torch.Tensor:
    """BCE(sigmoid(logits), target), mean over batch x classes; target = one-hot(y) with the
    columns `old_classes` set to sigmoid(old_logits) (old_logits: (N, len(old_classes)))."""
    target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    if old_logits is not None and old_classes:
        target[:, old_classes] = torch.sigmoid(old_logits)
    return F.binary_cross_entropy_with_logits(logits, target)


class LwFMC(Plugin):
    name = "lwf_mc"

    def __init__(self, weight: float = 1.0):
        self.weight, self.old, self.old_classes = float(weight), None, []

    def before_task(self, learner, task):
        self.old_classes = [c for c in learner.seen_classes if c not in task.classes] \
            if learner.scenario.kind != "domain_incremental" else list(range(learner.scenario.num_classes))

    def after_task(self, learner, task):
        self.old = snapshot(learner.model)

    def batch_loss(self, learner, x, y, t, feats, out):
        out = learner.mask(out, t)
        old = None
        if self.old is not None and self.old_classes:
            with torch.no_grad():
                old = self.old(x)[:, self.old_classes]
        return self.weight * lwf_mc_loss(out, y, old, self.old_classes if old is not None else [])
