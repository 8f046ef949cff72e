"""Helpers shared by strategies: frozen snapshots and parameter copies."""
from __future__ import annotations

import copy

import torch


def snapshot(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of `model` in eval mode (the previous task's model)."""
    old = copy.deepcopy(model).eval()
    for p in old.parameters():
        p.requires_grad_(False)
    return old


def parameters_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def task_train_sample(learner, task, n: int, generator: torch.Generator | None = None):
    """Up to n samples of the task's train split with task ids (drawn with `generator`,
    by default the learner's)."""
    idx = torch.randperm(len(task.y_train), generator=generator or learner.generator)[:n]
    x, y = task.x_train[idx], task.y_train[idx]
    return x, y, learner.task_ids(task, len(y))
