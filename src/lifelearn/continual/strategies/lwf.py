"""LwF / prediction distillation (Li & Hoiem 2017; PAPERS.md section 5): KL from the
previous task's model to the current one on the old classes, at temperature tau:
alpha * tau^2 * KL(softmax(z_old[:, O] / tau) || softmax(z[:, O] / tau)), batch mean."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelearn.continual.common import snapshot
from lifelearn.continual.template import Plugin


def lwf_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * KL(p_old || p_new) with p = softmax(logits / tau), averaged over the batch."""
    log_p_new = F.log_softmax(new_logits / tau, dim=1)
    p_old = F.softmax(old_logits / tau, dim=1)
    return tau ** 2 * F.kl_div(log_p_new, p_old, reduction="batchmean")


class LwF(Plugin):
    name = "lwf"

    def __init__(self, weight: float = 1.0, tau: float = 2.0):
        self.weight, self.tau = float(weight), float(tau)
        self.old, self.old_classes = None, []

    def before_task(self, learner, task):
        self.old_classes = [c for c in learner.seen_classes if c not in task.classes] \
            if learner.scenario.kind != "domain_incremental" else list(range(learner.scenario.num_classes))

    def after_task(self, learner, task):
        self.old = snapshot(learner.model)

    def extra_loss(self, learner, x, y, t, feats, out):
        if self.old is None or not self.old_classes:
            return None
        with torch.no_grad():
            old = self.old(x)[:, self.old_classes]
        return self.weight * lwf_loss(out[:, self.old_classes], old, self.tau)
