"""ER replaying a distilled synthetic set (the dataset-distillation stage's output)
instead of raw exemplars: after task t, the synthetic images of t's classes join the
memory; every step replays `replay_batch` of them drawn uniformly, with ER's loss.

The set was distilled once from the whole training split, so its images summarise
classes before the stream reaches them; only the classes already trained are replayed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.strategies.er import ER
from lifelearn.data import load_dataset


class SyntheticER(ER):
    name = "synthetic_er"

    def __init__(self, synthetic: str, replay_batch: int = 10, data_dir: str | Path | None = None):
        if data_dir is None:
            raise ValueError(f"synthetic_er: no directory for synthetic set {synthetic!r} "
                             "(the dataset_distillation stage writes it)")
        self.synthetic, self.data_dir = synthetic, Path(data_dir)
        self.replay_batch, self.buffer, self.x, self.y = int(replay_batch), None, None, None
        self.combine = "mean"  # ER's default (one CE over the concatenation)

    def before_task(self, learner, task):
        if self.buffer is not None:
            return
        if learner.scenario.kind == "domain_incremental":
            raise ValueError("synthetic_er replays class subsets; it needs a class- or task-incremental scenario")
        ds = load_dataset(self.data_dir)
        if tuple(ds.x_train.shape[1:]) != tuple(task.x_train.shape[1:]) or ds.num_classes != learner.scenario.num_classes:
            raise ValueError(f"synthetic set {self.data_dir} has inputs {ds.x_train.shape[1:]} and "
                             f"{ds.num_classes} classes; the stream has {tuple(task.x_train.shape[1:])} "
                             f"and {learner.scenario.num_classes}")
        self.x, self.y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
        self.buffer = ReservoirBuffer(len(self.y), learner.generator)  # never full: keeps all

    def after_step(self, learner, x, y, t):
        pass  # the memory holds synthetic images only

    def after_task(self, learner, task):
        keep = torch.from_numpy(np.isin(self.y.numpy(), task.classes))
        self.buffer.add(self.x[keep], self.y[keep], learner.task_ids(task, int(keep.sum())))
