"""Experience replay (Chaudhry et al. 2019): a reservoir buffer of past samples; each
step trains on the current batch together with `replay_batch` samples drawn uniformly
from the buffer (CE over the concatenation), then offers the current batch to it."""
from __future__ import annotations

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.template import Plugin


class ER(Plugin):
    name = "er"

    def __init__(self, buffer: int = 200, replay_batch: int = 10):
        self.capacity, self.replay_batch, self.buffer = int(buffer), int(replay_batch), None

    def before_task(self, learner, task):
        if self.buffer is None:
            self.buffer = ReservoirBuffer(self.capacity, learner.generator)

    def batch_loss(self, learner, x, y, t, feats, out):
        ce = learner.ce(out, y, t)
        replay = self.buffer.sample(self.replay_batch)
        if replay is None:
            return ce
        xr, yr, tr = replay
        ce_r = learner.ce(learner.model(xr), yr, tr)
        n, m = len(y), len(yr)
        return (n * ce + m * ce_r) / (n + m)

    def after_step(self, learner, x, y, t):
        self.buffer.add(x, y, t)
