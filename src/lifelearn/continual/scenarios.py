"""Task streams built in memory from a registry dataset (PAPERS.md section 5).

- class_incremental: T tasks of disjoint classes (class order drawn from `seed`), one
  head over all classes, no task id at test time.
- task_incremental: the same split; the task id is given, so logits are masked to the
  task's classes in training and at test time.
- domain_incremental: T tasks with the same labels, task t's inputs permuted by a fixed
  random pixel permutation (task 0 unpermuted).
The online variant is a training setting (one pass, small batches), not a different split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SCENARIOS = ("class_incremental", "task_incremental", "domain_incremental")


@dataclass(frozen=True, eq=False)
class Task:
    """One task of a stream: its id, its classes and its train/test tensors."""

    task_id: int
    classes: tuple[int, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True, eq=False)
class Scenario:
    """A stream of tasks plus the logit mask per task (masks[t, c]: class c allowed)."""

    kind: str
    num_classes: int
    tasks: tuple[Task, ...]
    masks: torch.Tensor

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_aware(self) -> bool:
        return self.kind == "task_incremental"


def class_order(num_classes: int, seed: int) -> list[int]:
    """The classes in the order a seeded permutation puts them."""
    return [int(c) for c in np.random.default_rng(seed).permutation(num_classes)]


def split_classes(num_classes: int, n_tasks: int, seed: int) -> list[tuple[int, ...]]:
    """Disjoint class groups of (near-)equal size, in a seeded class order."""
    if not 1 <= n_tasks <= num_classes:
        raise ValueError(f"n_tasks must be in 1..{num_classes}, got {n_tasks}")
    return [tuple(sorted(int(c) for c in part)) for part in np.array_split(class_order(num_classes, seed), n_tasks)]


def _select(x: np.ndarray, y: np.ndarray, classes) -> tuple[torch.Tensor, torch.Tensor]:
    keep = np.isin(y, classes)
    return torch.from_numpy(np.ascontiguousarray(x[keep])), torch.from_numpy(y[keep])


def _permute(x: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
    if perm is None:
        return x
    flat = x.reshape(len(x), -1)[:, perm]
    return np.ascontiguousarray(flat.reshape(x.shape))


def build_scenario(ds, kind: str, n_tasks: int, seed: int) -> Scenario:
    """The stream of `kind` over dataset `ds` (lifelearn.data.Dataset), T = `n_tasks`."""
    if kind not in SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r}; allowed: {', '.join(SCENARIOS)}")
    C = ds.num_classes
    tasks, masks = [], torch.zeros(n_tasks, C, dtype=torch.bool)
    if kind == "domain_incremental":
        rng = np.random.default_rng(seed)
        size = int(np.prod(ds.input_shape))
        for t in range(n_tasks):
            perm = None if t == 0 else rng.permutation(size)
            tasks.append(Task(t, tuple(range(C)),
                              torch.from_numpy(_permute(ds.x_train, perm)), torch.from_numpy(ds.y_train),
                              torch.from_numpy(_permute(ds.x_test, perm)), torch.from_numpy(ds.y_test)))
        masks[:] = True
    else:
        for t, classes in enumerate(split_classes(C, n_tasks, seed)):
            tasks.append(Task(t, classes, *_select(ds.x_train, ds.y_train, classes),
                              *_select(ds.x_test, ds.y_test, classes)))
            masks[t, list(classes)] = True
        if kind == "class_incremental":
            masks[:] = True
    return Scenario(kind, C, tuple(tasks), masks)


STREAMS = ("tasks", "no_switch")


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Non-negative integers proportional to `weights` summing to `total` (Hamilton's method)."""
    share = total * weights / weights.sum()
    counts = np.floor(share).astype(int)
    rest = total - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts


def no_switch_scenario(scenario: Scenario, seed: int) -> Scenario:
    """The no-switch control of a class- or domain-incremental stream (PAPERS.md section 7;
    De Lange et al. 2023's stability gap measured against noise): segment i keeps task i's
    training-set size (so the stream has the real one's length, batch for batch, and the same
    evaluation schedule: tasks 0..i are evaluated during segment i, on the same test subsets),
    but its samples are drawn, without replacement, from the union of the training data of
    tasks 0..i with each class in the proportion it has in that union, i.e. in the proportion
    the real stream has shown it up to the end of segment i. So the stream never switches
    distribution abruptly: a dip of an old task's accuracy in it is noise, not a stability gap.
    Each segment's classes and test data stay the real task's (what it is evaluated on, and
    the classes it adds to the seen set). Drawn from its own generator (seed + 15485863)."""
    if scenario.task_aware:
        raise ValueError("a no-switch control needs a class- or domain-incremental stream "
                         "(task-incremental samples carry their task's mask)")
    g = np.random.default_rng(seed + 15485863)
    tasks = []
    for i, task in enumerate(scenario.tasks):
        xs = torch.cat([t.x_train for t in scenario.tasks[:i + 1]])
        ys = torch.cat([t.y_train for t in scenario.tasks[:i + 1]])
        # domain-incremental: every task has every class; the pool's "classes" are (task, class)
        groups = torch.cat([t.y_train + k * scenario.num_classes for k, t in enumerate(scenario.tasks[:i + 1])]) \
            if scenario.kind == "domain_incremental" else ys
        keys, sizes = np.unique(groups.numpy(), return_counts=True)
        counts = _largest_remainder(len(task.y_train), sizes.astype(float))
        picked = np.concatenate([g.choice(np.nonzero(groups.numpy() == k)[0], c, replace=False)
                                 for k, c in zip(keys, counts)])
        picked = torch.from_numpy(g.permutation(picked))
        tasks.append(Task(task.task_id, task.classes, xs[picked], ys[picked], task.x_test, task.y_test))
    return Scenario(scenario.kind, scenario.num_classes, tuple(tasks), scenario.masks)


def build_stream(ds, kind: str, n_tasks: int, seed: int, stream: str = "tasks") -> Scenario:
    """build_scenario, or its no-switch control (`stream: no_switch`)."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
    scenario = build_scenario(ds, kind, n_tasks, seed)
    return no_switch_scenario(scenario, seed) if stream == "no_switch" else scenario
