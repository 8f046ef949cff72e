"""UER (Lin et al., ACM MM 2023; PAPERS.md section 5). With W_c . h = ||W_c|| ||h|| cos(theta_c):
current samples are trained with CE on the cosine logits s * cos(theta_c) only (no norm,
no bias), replayed samples with CE on the full dot-product logits W h + b. Reservoir
buffer, random retrieval; prediction uses the dot-product logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.template import Plugin


def cosine_logits(feats: torch.Tensor, head: torch.nn.Linear, scale: float) -> torch.Tensor:
    """scale * cos(angle(h, W_c)) for every class c."""
    return scale * F.normalize(feats, dim=1) @ F.normalize(head.weight, dim=1).T


def dot_logits(feats: torch.Tensor, head: torch.nn.Linear) -> torch.Tensor:
    """W_c . h + b_c = ||W_c|| ||h|| cos(theta_c) + b_c."""
    return feats @ head.weight.T + head.bias


class UER(Plugin):
    name = "uer"

    def __init__(self, buffer: int = 200, replay_batch: int = 10, scale: float = 1 / 0.09):
        self.capacity, self.replay_batch, self.scale = int(buffer), int(replay_batch), float(scale)
        self.buffer = None

    def before_task(self, learner, task):
        if self.buffer is None:
            self.buffer = ReservoirBuffer(self.capacity, learner.generator)

    def batch_loss(self, learner, x, y, t, feats, out):
        loss = learner.ce(cosine_logits(feats, learner.model.head, self.scale), y, t)
        replay = self.buffer.sample(self.replay_batch)
        if replay is not None:
            xr, yr, tr = replay
            loss = loss + learner.ce(dot_logits(learner.model.features(xr), learner.model.head), yr, tr)
        return loss

    def after_step(self, learner, x, y, t):
        self.buffer.add(x, y, t)
