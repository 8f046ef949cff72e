"""Continual evaluation (PAPERS.md section 6).

- Every `every` training iterations (k = 1 allowed; 0 disables), every seen task is
  evaluated on a fixed random subset (<= `subset` samples) of its test split, as De Lange
  et al. (ICLR 2023) do to expose the stability gap; one forward pass over the
  concatenated subsets.
- After every task i, every task j (seen or not) on its full test split: R[i, j]; the
  same before training (`initial`) and for a randomly initialised network of the same
  architecture (`random_init`, the baseline b_j of FWT).
The metrics over these records are in lifelearn.evaluate.continual_metrics.
The raw stream is kept as tidy rows (iteration, current_task, eval_task, accuracy, loss).
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from lifelearn.continual.scenarios import Scenario
from lifelearn.phases import timed


class ContinualEvaluator:
    """Collects the evaluation stream and the accuracy matrix of one learner's run."""

    def __init__(self, scenario: Scenario, every: int, subset: int, seed: int, batch: int = 2048):
        self.scenario, self.every, self.batch = scenario, int(every), batch
        g = torch.Generator().manual_seed(seed + 7919)
        xs, ys, ts, self.bounds = [], [], [], [0]
        for task in scenario.tasks:
            idx = torch.randperm(len(task.y_test), generator=g)[:subset].sort().values
            xs.append(task.x_test[idx]), ys.append(task.y_test[idx])
            ts.append(torch.full((len(idx),), task.task_id, dtype=torch.long))
            self.bounds.append(self.bounds[-1] + len(idx))
        self.x, self.y, self.t = torch.cat(xs), torch.cat(ys), torch.cat(ts)
        T = scenario.n_tasks
        self.R = np.full((T, T), np.nan)
        self.L = np.full((T, T), np.nan)
        self.initial = self.random_init = np.full(T, np.nan)
        self.rows: list[dict] = []
        self.seconds = 0.0

    @torch.no_grad()
    def _scores(self, learner, x, y, t, model=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample correctness and CE loss of `model` (default: the learner's), in
        eval mode, batched; logits masked as the learner masks them."""
        model = learner.model if model is None else model
        was = model.training
        model.eval()
        try:
            correct, losses = [], []
            for i in range(0, len(y), self.batch):
                out = learner.mask(model(x[i:i + self.batch]), t[i:i + self.batch])
                yb = y[i:i + self.batch]
                correct.append(out.argmax(1) == yb)
                losses.append(F.cross_entropy(out, yb, reduction="none"))
        finally:
            model.train(was)
        return torch.cat(correct).float(), torch.cat(losses)

    @timed("evaluation")
    def after_iteration(self, learner) -> None:
        if self.every <= 0 or learner.iteration % self.every:
            return
        start = time.perf_counter()
        end = self.bounds[learner.current_task + 1]
        correct, losses = self._scores(learner, self.x[:end], self.y[:end], self.t[:end])
        for j in range(learner.current_task + 1):
            a, b = self.bounds[j], self.bounds[j + 1]
            self.rows.append({"iteration": learner.iteration, "current_task": learner.current_task,
                              "eval_task": j, "accuracy": float(correct[a:b].mean()),
                              "loss": float(losses[a:b].mean())})
        self.seconds += time.perf_counter() - start

    @timed("evaluation")
    def full_test(self, learner, model=None) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy and mean CE loss on every task's full test split."""
        acc, loss = np.zeros(self.scenario.n_tasks), np.zeros(self.scenario.n_tasks)
        for task in self.scenario.tasks:
            t = torch.full((len(task.y_test),), task.task_id, dtype=torch.long)
            correct, losses = self._scores(learner, task.x_test, task.y_test, t, model)
            acc[task.task_id], loss[task.task_id] = float(correct.mean()), float(losses.mean())
        return acc, loss

    @timed("evaluation")
    def before_training(self, learner, random_model=None) -> None:
        """Row "before training" and the random-initialisation baseline (`random_model`;
        None: the learner's own start is the random initialisation)."""
        self.initial = self.full_test(learner)[0]
        self.random_init = self.initial if random_model is None else self.full_test(learner, random_model)[0]

    @timed("evaluation")
    def after_task(self, learner) -> None:
        start = time.perf_counter()
        self.R[learner.current_task], self.L[learner.current_task] = self.full_test(learner)
        self.seconds += time.perf_counter() - start
