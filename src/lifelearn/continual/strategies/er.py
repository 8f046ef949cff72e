"""Experience replay (Chaudhry et al. 2019): a reservoir buffer of past samples; each
step trains on the current batch together with `replay_batch` samples drawn uniformly
from the buffer, then offers the current batch to it.

How the two cross-entropies combine is the config key `combine` (PAPERS.md section 5):
- `mean` (default): one CE over the concatenation of current and replayed samples,
  (n CE_cur + m CE_rep) / (n + m), as Mammoth's `models/er.py` (it concatenates the
  buffer batch to the stream batch before a single loss);
- `sum`: CE_cur + CE_rep, each the mean over its own batch, as the online continual-learning
  framework UER was evaluated in (RaptorMai/online-continual-learning, `agents/exp_replay.py`,
  which adds the memory loss to the stream loss). At n = m this is twice `mean`'s step.
"""
from __future__ import annotations

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.template import Plugin

COMBINES = ("mean", "sum")


def combine_ce(ce: "torch.Tensor", ce_r: "torch.Tensor", n: int, m: int, combine: str):
    """The ER loss from the current batch's mean CE (n samples) and the replayed batch's (m)."""
    if combine == "sum":
        return ce + ce_r
    if combine == "mean":
        return (n * ce + m * ce_r) / (n + m)
    raise ValueError(f"er.combine must be one of {COMBINES}, got {combine!r}")


class ER(Plugin):
    name = "er"

    def __init__(self, buffer: int = 200, replay_batch: int = 10, combine: str = "mean"):
        if combine not in COMBINES:
            raise ValueError(f"er.combine must be one of {COMBINES}, got {combine!r}")
        self.capacity, self.replay_batch, self.buffer = int(buffer), int(replay_batch), None
        self.combine = combine

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
        return combine_ce(ce, ce_r, len(y), len(yr), self.combine)

    def after_step(self, learner, x, y, t):
        self.buffer.add(x, y, t)
