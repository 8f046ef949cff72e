"""Joint training (the upper bound): at task i, train on the union of tasks 0..i
(cumulative joint training, so the accuracy matrix is defined for every row)."""
from __future__ import annotations

import torch

from lifelearn.continual.template import Plugin


class Joint(Plugin):
    name = "joint"

    def train_data(self, learner, task):
        seen = learner.scenario.tasks[:task.task_id + 1]
        return (torch.cat([s.x_train for s in seen]), torch.cat([s.y_train for s in seen]),
                torch.cat([learner.task_ids(s, len(s.y_train)) for s in seen]))
