"""Single-task experts (the reference of New et al. 2022's lifelong-learning metrics):
before every task the model returns to its starting weights, so task j's learning curve
and R[j, j] are those of a network trained on task j alone from the same start."""
from __future__ import annotations

import copy

from lifelearn.continual.template import Plugin


class SingleTask(Plugin):
    name = "single_task"

    def __init__(self):
        self.start = None

    def before_task(self, learner, task):
        if self.start is None:
            self.start = copy.deepcopy(learner.model.state_dict())
        else:
            learner.model.load_state_dict(self.start)
