"""Refresh learning (Wang et al., ICLR 2024; PAPERS.md section 5): a plug-in for any
strategy that unlearns a little before each normal update.

Per batch, before the base method's step:
 (1) one SGD step of gradient *ascent* on the batch CE from a copy of the weights:
     theta_copy = theta + ascent_lr * grad CE(theta) (computed without building the copy:
     for plain SGD the copy differs from theta by exactly that term);
 (2) per tensor, D = theta_copy - theta and u = (||theta|| / (||D|| + 1e-20)) * D;
 (3) theta <- theta + delta * (1 / (1 + fisher_weight * F)) * (u + noise * xi), xi ~ N(0, I);
 (4) the base method's normal step (relearn), done by the template.
F is the diagonal Fisher (fisher.py), merged at each task end as F <- fisher_decay * F + F_new.
Defaults are the paper's: ascent_lr 0.01, delta 1e-5, fisher_weight 0.001, noise 0.001,
fisher_decay 1e-5. These are also the values of the authors' code (joey-wang123/CL-refresh-learning,
models/derpp.py `unlearn`/`end_task`), which applies the step inside DER++, before its update.
The noise and the Fisher sample come from the plug-in's own generator
(seeded from the learner's seed), so a run with refresh sees the same batches and replay
draws as the same seed without it: the paired comparison isolates the refresh step.

Size of the step: per batch, r = ||refresh update|| / ||optimiser update||, both global L2
norms over all trainable parameters (the change steps (1)-(3) make, against the change the
base method's optimiser step (4) makes, weight decay and momentum included); r is averaged
over each task's batches (`ratios`, one per task) and reported by `run_metrics` as
`refresh_sgd_ratio_task<j>` and their mean `refresh_sgd_ratio_mean` (the study logs the
per-task values to MLflow as the series `refresh_sgd_ratio`, step = task).
"""
from __future__ import annotations

import torch

from lifelearn.continual.fisher import diagonal_fisher
from lifelearn.continual.common import task_train_sample
from lifelearn.continual.template import Plugin


class Refresh(Plugin):
    name = "refresh"

    def __init__(self, ascent_lr: float = 0.01, delta: float = 1e-5, fisher_weight: float = 1e-3,
                 noise: float = 1e-3, fisher_decay: float = 1e-5, fisher_samples: int = 500):
        self.ascent_lr, self.delta, self.fisher_weight = float(ascent_lr), float(delta), float(fisher_weight)
        self.noise, self.fisher_decay, self.fisher_samples = float(noise), float(fisher_decay), int(fisher_samples)
        self.fisher: dict | None = None
        self.generator: torch.Generator | None = None
        self.ratios: list[float] = []  # per task: mean over its batches of r
        self._task_ratios: list[float] = []
        self._refresh_sq = 0.0
        self._after_refresh: list[torch.Tensor] | None = None

    def before_task(self, learner, task):
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(learner.seed + 104729)

    def unlearn(self, learner, x, y, t) -> None:
        """Steps (1)-(3) on `learner.model` in place."""
        model = learner.model
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(learner.ce(model(x), y, t), params, allow_unused=True)
        sq = 0.0
        with torch.no_grad():
            for (name, p), g in zip([(n, p) for n, p in model.named_parameters() if p.requires_grad], grads):
                if g is None:
                    continue
                D = self.ascent_lr * g
                u = (p.norm() / (D.norm() + 1e-20)) * D
                xi = torch.randn(p.shape, generator=self.generator)
                F = self.fisher[name] if self.fisher is not None else torch.zeros_like(p)
                step = self.delta / (1 + self.fisher_weight * F) * (u + self.noise * xi)
                p.add_(step)
                sq += float(step.double().pow(2).sum())
        self._refresh_sq = sq

    def before_step(self, learner, x, y, t):
        self.unlearn(learner, x, y, t)
        self._after_refresh = [p.detach().clone() for p in learner.model.parameters() if p.requires_grad]

    def after_step(self, learner, x, y, t):
        """r of this batch: the refresh step's norm over the optimiser step's (from the
        weights after the refresh step to those after the optimiser step)."""
        params = [p for p in learner.model.parameters() if p.requires_grad]
        sgd_sq = sum(float((p.detach() - q).double().pow(2).sum()) for p, q in zip(params, self._after_refresh))
        self._after_refresh = None
        if sgd_sq > 0:
            self._task_ratios.append(self._refresh_sq ** 0.5 / sgd_sq ** 0.5)

    def close_task_ratio(self) -> None:
        """Append the finished task's mean r over its batches to `ratios`."""
        self.ratios.append(sum(self._task_ratios) / len(self._task_ratios) if self._task_ratios else float("nan"))
        self._task_ratios = []

    def after_task(self, learner, task):
        self.close_task_ratio()
        x, y, t = task_train_sample(learner, task, self.fisher_samples, self.generator)
        new = diagonal_fisher(learner.model, x, y, learner.scenario.masks[t])
        self.fisher = new if self.fisher is None else {k: self.fisher_decay * self.fisher[k] + new[k] for k in new}

    def run_metrics(self) -> dict[str, float]:
        """Per-task mean of r and their mean over tasks."""
        out = {f"refresh_sgd_ratio_task{j}": r for j, r in enumerate(self.ratios)}
        if self.ratios:
            out["refresh_sgd_ratio_mean"] = sum(self.ratios) / len(self.ratios)
        return out
