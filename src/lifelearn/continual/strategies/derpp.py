"""DER++ (Buzzega et al., NeurIPS 2020, "Dark Experience for General Continual Learning",
Eq. 6; PAPERS.md section 5): experience replay that also keeps each sample's logits at
insertion. With a reservoir buffer M of (x, y, z),

    L = CE(f(x), y) + alpha * MSE(f(x'), z') + beta * CE(f(x''), y''),

(x', z') and (x'', y'') two independent uniform draws of `replay_batch` samples from M.

Follows Mammoth's models/derpp.py (aimagelab/mammoth, also the base of the refresh
authors' code): the stored logits are the current batch's outputs of the very forward pass
the loss uses (before the step, detached), offered to the buffer after the step; the MSE is
F.mse_loss's mean over samples and logits, on the full (unmasked) logit vectors; both
buffer terms are skipped while the buffer is empty; the two draws are without replacement
each. The CE terms use the learner's CE, i.e. the same class masking as our ER (task-
incremental: logits outside the sample's task masked; class-incremental: none, as Mammoth).
Departure: Mammoth's buffer draws use numpy's global generator; here the learner's
generator (as ER), so runs are seeded. Defaults: the seq-mnist, buffer-200 arguments of
Mammoth's best_args.py (alpha 0.2, beta 1.0, minibatch 128).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.template import Plugin


def derpp_loss(ce: torch.Tensor, out_a: torch.Tensor | None, z_a: torch.Tensor | None,
               ce_b: torch.Tensor | None, alpha: float, beta: float) -> torch.Tensor:
    """CE of the current batch + alpha * MSE(f(x'), z') + beta * CE(f(x''), y'') (terms
    absent, None, while the buffer is empty)."""
    loss = ce
    if out_a is not None:
        loss = loss + alpha * F.mse_loss(out_a, z_a)
    if ce_b is not None:
        loss = loss + beta * ce_b
    return loss


class DERpp(Plugin):
    name = "derpp"

    def __init__(self, buffer: int = 200, replay_batch: int = 128, alpha: float = 0.2, beta: float = 1.0):
        if alpha < 0 or beta < 0:
            raise ValueError(f"derpp.alpha and derpp.beta must be >= 0, got {alpha}, {beta}")
        self.capacity, self.replay_batch = int(buffer), int(replay_batch)
        self.alpha, self.beta = float(alpha), float(beta)
        self.buffer: ReservoirBuffer | None = None
        self._logits: torch.Tensor | None = None

    def before_task(self, learner, task):
        if self.buffer is None:
            self.buffer = ReservoirBuffer(self.capacity, learner.generator)

    def batch_loss(self, learner, x, y, t, feats, out):
        self._logits = out.detach().clone()
        ce = learner.ce(out, y, t)
        first = self.buffer.sample_indices(self.replay_batch)
        if first is None:
            return ce
        second = self.buffer.sample_indices(self.replay_batch)
        b = self.buffer
        out_a = learner.model(b.x[first])
        ce_b = learner.ce(learner.model(b.x[second]), b.y[second], b.t[second])
        return derpp_loss(ce, out_a, b.z[first], ce_b, self.alpha, self.beta)

    def after_step(self, learner, x, y, t):
        self.buffer.add(x, y, t, self._logits)
        self._logits = None
