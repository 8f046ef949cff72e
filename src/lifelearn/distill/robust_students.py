"""Stage: the students of the MTARD study (PAPERS.md section 2), one job per method
running all seeds; student seed k uses the teachers' seed k. Every student is
evaluated on the test set by clean accuracy, PGD-k accuracy and the weighted robust
accuracy (`evaluate.robustness`).

STUDENT_METHODS maps a method name (`mtard.methods.<name>.method`) to a builder
(model, spec, teachers) -> LightningModule; TEACHER_ROLES says which teachers
(`mtard.teachers.clean` / `.robust`) each method loads.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from lifelearn.distill.ard import ARDModule
from lifelearn.distill.mtard import MTARDModule
from lifelearn.models.checkpoint import load_model
from lifelearn.tracking import RunContext
from lifelearn.train.adversarial import PGDATModule
from lifelearn.train.module import ClassifierModule
from lifelearn.train.pretrain import robustness_evaluator
from lifelearn.train.runner import Job, SeedOutputs, run_seed

STUDY = "mtard"
STAGE = "mtard"


def _natural(model, spec, teachers):
    return ClassifierModule(model, spec["train"])


def _pgd_at(model, spec, teachers):
    return PGDATModule(model, spec["train"], spec["attack"])


def _ard(model, spec, teachers):
    m = spec["method"]
    return ARDModule(model, teachers["robust"], spec["train"], spec["attack"], m["alpha"], m["tau"])


def _mtard(model, spec, teachers):
    return MTARDModule(model, teachers["clean"], teachers["robust"], spec["train"], spec["attack"], spec["method"])


STUDENT_METHODS = {"natural": _natural, "pgd_at": _pgd_at, "ard": _ard, "mtard": _mtard}
TEACHER_ROLES = {"natural": (), "pgd_at": (), "ard": ("robust",), "mtard": ("clean", "robust")}


def train_students(name: str, spec: dict, data_dir: str | os.PathLike, teacher_paths: dict[str, list],
                   outputs: list[SeedOutputs], ctx: RunContext, trainer_cfg: dict, threads: int = 1) -> list[dict]:
    """Train student `name` once per seed. `spec`: the study's shared settings (dataset,
    seeds, teachers, student, train, attack, eval_attack) plus `method` = this method's
    section; `teacher_paths[role][i]` is the checkpoint for seed `spec["seeds"][i]`."""
    torch.set_num_threads(threads)
    seeds, method = spec["seeds"], spec["method"]["method"]
    if method not in STUDENT_METHODS:
        raise ValueError(f"unknown mtard method {method!r}; allowed: {', '.join(sorted(STUDENT_METHODS))}")
    missing = [r for r in TEACHER_ROLES[method] if len(teacher_paths.get(r, [])) != len(seeds)]
    if missing or len(outputs) != len(seeds):
        raise ValueError(f"{name}: need {len(seeds)} outputs and checkpoints of teachers {TEACHER_ROLES[method]}")
    job = Job(study=STUDY, stage=STAGE, name=name, method=method, params=spec)
    records = []
    for i, (seed, out) in enumerate(zip(seeds, outputs)):
        teachers = {role: load_model(teacher_paths[role][i]) for role in TEACHER_ROLES[method]}
        build = lambda model, ds, teachers=teachers: STUDENT_METHODS[method](model, spec, teachers)  # noqa: E731
        records.append(run_seed(job, seed, Path(data_dir), spec["student"], spec["train"], build, out, ctx,
                                trainer_cfg, evaluate=robustness_evaluator(spec["eval_attack"], seed)))
    return records
