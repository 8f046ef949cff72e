"""Stage: teacher pretraining. One job per teacher runs all its seeds (train/runner.py)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from lifelearn.evaluate.robustness import robustness_metrics
from lifelearn.tracking import RunContext
from lifelearn.train.adversarial import PGDATModule
from lifelearn.train.module import ClassifierModule
from lifelearn.train.runner import Job, SeedOutputs, run_seed

# Training methods for pretraining, by config name (`teachers.<name>.method`):
# each maps (model, dataset, train config, **method options) to its LightningModule.
# Method options are the teacher's keys named in METHOD_OPTIONS (e.g. pgd_at's attack).
PRETRAIN_METHODS = {
    "natural": lambda model, ds, train_cfg: ClassifierModule(model, train_cfg),
    "pgd_at": lambda model, ds, train_cfg, attack: PGDATModule(model, train_cfg, attack),
}
METHOD_OPTIONS = {"natural": (), "pgd_at": ("attack",)}


def robustness_evaluator(attack: dict, seed: int):
    """run_seed's `evaluate` hook: clean / PGD / weighted robust accuracy on the test set."""
    def evaluate(module, datamodule, ds):
        x, y = datamodule.tensors["test"]
        return robustness_metrics(module.model, x, y, attack, seed=seed)
    return evaluate


def pretrain_teacher(name: str, teacher: dict, data_dir: str | os.PathLike, outputs: list[SeedOutputs],
                     ctx: RunContext, trainer_cfg: dict, threads: int = 1) -> list[dict]:
    """Stage entry point: train `teacher` once per seed in `teacher["seeds"]`."""
    torch.set_num_threads(threads)
    if len(outputs) != len(teacher["seeds"]):
        raise ValueError(f"teacher {name}: {len(outputs)} output sets for {len(teacher['seeds'])} seeds")
    method = teacher.get("method", "natural")
    job = Job(study="teachers", stage="pretrain", name=name, method=method, params=teacher)
    options = {key: teacher[key] for key in METHOD_OPTIONS[method]}
    build = lambda model, ds: PRETRAIN_METHODS[method](model, ds, teacher["train"], **options)  # noqa: E731
    # An optional `eval_attack` adds test-set robustness (clean / PGD / weighted) to the metrics.
    evaluators = {seed: robustness_evaluator(teacher["eval_attack"], seed) if "eval_attack" in teacher else None
                  for seed in teacher["seeds"]}
    return [run_seed(job, seed, Path(data_dir), teacher["model"], teacher["train"], build, out, ctx, trainer_cfg,
                     evaluate=evaluators[seed])
            for seed, out in zip(teacher["seeds"], outputs)]
