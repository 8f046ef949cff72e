"""Stage: teacher pretraining. One job per teacher runs all its seeds (train/runner.py)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from lifelearn.tracking import RunContext
from lifelearn.train.module import ClassifierModule
from lifelearn.train.runner import Job, SeedOutputs, run_seed

# Training methods for pretraining, by config name (`teachers.<name>.method`):
# each maps (model, dataset, train config) to its LightningModule.
PRETRAIN_METHODS = {"natural": lambda model, ds, train_cfg: ClassifierModule(model, train_cfg)}


def pretrain_teacher(name: str, teacher: dict, data_dir: str | os.PathLike, outputs: list[SeedOutputs],
                     ctx: RunContext, trainer_cfg: dict, threads: int = 1) -> list[dict]:
    """Stage entry point: train `teacher` once per seed in `teacher["seeds"]`."""
    torch.set_num_threads(threads)
    if len(outputs) != len(teacher["seeds"]):
        raise ValueError(f"teacher {name}: {len(outputs)} output sets for {len(teacher['seeds'])} seeds")
    method = teacher.get("method", "natural")
    job = Job(study="teachers", stage="pretrain", name=name, method=method, params=teacher)
    build = lambda model, ds: PRETRAIN_METHODS[method](model, ds, teacher["train"])  # noqa: E731
    return [run_seed(job, seed, Path(data_dir), teacher["model"], teacher["train"], build, out, ctx, trainer_cfg)
            for seed, out in zip(teacher["seeds"], outputs)]
