"""Continual evaluation (PAPERS.md section 6).

- Every `every` training iterations (k = 1 allowed; 0 disables), every seen task is
  evaluated on a fixed random subset (<= `subset` samples) of its test split, as De Lange
  et al. (ICLR 2023) do to expose the stability gap; one forward pass over the
  concatenated subsets.
- After every task i, every task j (seen or not) on its full test split: R[i, j].
The raw stream is kept as tidy rows (iteration, current_task, eval_task, accuracy, loss).
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from lifelearn.continual.scenarios import Scenario


def accuracy_metrics(R: np.ndarray) -> dict[str, float]:
    """Summary of an accuracy matrix R[i, j] (T x T; row i = after training task i).

    avg_acc = mean_j R[T, j]; avg_incremental_acc = mean_i mean_{j<=i} R[i, j];
    forgetting (Chaudhry et al. 2018) = mean_{j<T} (max_{l<T} R[l, j] - R[T, j]);
    bwt (Lopez-Paz & Ranzato 2017) = mean_{j<T} (R[T, j] - R[j, j]) (T = last row).
    """
    T = R.shape[0]
    out = {"avg_acc": float(R[-1].mean()),
           "avg_incremental_acc": float(np.mean([R[i, :i + 1].mean() for i in range(T)]))}
    if T > 1:
        out["forgetting"] = float(np.mean([R[:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]))
        out["bwt"] = float(np.mean([R[T - 1, j] - R[j, j] for j in range(T - 1)]))
    return out


def min_acc(rows: list[dict], n_tasks: int) -> float | None:
    """min-ACC (De Lange et al. 2023): per finished task j < T, the lowest stream accuracy
    after its training ended (evaluations while a later task trains); mean over j."""
    lows = [min((r["accuracy"] for r in rows if r["eval_task"] == j and r["current_task"] > j), default=None)
            for j in range(n_tasks - 1)]
    lows = [v for v in lows if v is not None]
    return float(np.mean(lows)) if lows else None


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
        self.rows: list[dict] = []
        self.seconds = 0.0

    @torch.no_grad()
    def _scores(self, learner, x, y, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample correctness and CE loss, in eval mode, batched."""
        model = learner.model
        was = model.training
        model.eval()
        try:
            correct, losses = [], []
            for i in range(0, len(y), self.batch):
                out = learner.logits(x[i:i + self.batch], t[i:i + self.batch])
                yb = y[i:i + self.batch]
                correct.append(out.argmax(1) == yb)
                losses.append(F.cross_entropy(out, yb, reduction="none"))
        finally:
            model.train(was)
        return torch.cat(correct).float(), torch.cat(losses)

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

    def after_task(self, learner) -> None:
        start = time.perf_counter()
        i = learner.current_task
        for task in self.scenario.tasks:
            t = torch.full((len(task.y_test),), task.task_id, dtype=torch.long)
            correct, losses = self._scores(learner, task.x_test, task.y_test, t)
            self.R[i, task.task_id] = float(correct.mean())
            self.L[i, task.task_id] = float(losses.mean())
        self.seconds += time.perf_counter() - start

    def metrics(self) -> dict[str, float]:
        out = accuracy_metrics(self.R)
        low = min_acc(self.rows, self.scenario.n_tasks)
        if low is not None:
            out["min_acc"] = low
        return out
