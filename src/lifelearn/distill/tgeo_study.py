"""Stage: the `tgeo_kd` study. One job per method runs all seeds (train/runner.py);
student seed k distils from the pretrained teacher's seed k.

Methods by config name (`tgeo_kd.methods.<name>`), each a builder
(model, teacher, dataset, train config, method config, seed) -> LightningModule:
ce (cross-entropy only), kd (vanilla KD, fixed alpha and tau), anl / ada / wls (the
re-weighting baselines, distill/reweight.py) and tgeo (TGeo-KD, distill/tgeo.py).
After training each seed records, on the TEST split (held out: the teacher is almost
never wrong on its training data), the mean alpha over samples the teacher gets right
and over those it gets wrong.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from lifelearn.distill.reweight import SampleWiseKDModule, teacher_correctness_alpha
from lifelearn.distill.tgeo import TGeoKDModule
from lifelearn.models.checkpoint import load_model
from lifelearn.tracking import RunContext
from lifelearn.train.runner import Job, SeedOutputs, run_seed

STUDY = "tgeo_kd"


def _rule(rule: str) -> Callable:
    return lambda model, teacher, ds, train_cfg, cfg, seed: SampleWiseKDModule(model, teacher, train_cfg, rule, **cfg)


def _tgeo(model, teacher, ds, train_cfg, cfg, seed):
    return TGeoKDModule(model, teacher, train_cfg, num_classes=ds.num_classes, seed=seed, **cfg)


TGEO_METHODS: dict[str, Callable] = {
    "ce": _rule("ce"), "kd": _rule("kd"), "anl": _rule("anl"), "ada": _rule("ada"), "wls": _rule("wls"),
    "tgeo": _tgeo,
}


def held_out_alpha(module, datamodule, ds) -> dict:
    x, y = datamodule.tensors["test"]
    return teacher_correctness_alpha(module, x, y, prefix="test")


def run_method(method: str, section: dict, data_dir: str | os.PathLike, teacher_paths: list[str | os.PathLike],
               outputs: list[SeedOutputs], ctx: RunContext, trainer_cfg: dict, threads: int = 1) -> list[dict]:
    """Stage entry point: train `method` of the study config `section` once per seed.

    `section` holds student, train, seeds and `method_cfg` (this method's config);
    `teacher_paths[k]` is the teacher checkpoint of seed k (same order as the seeds).
    """
    torch.set_num_threads(threads)
    if method not in TGEO_METHODS:
        raise ValueError(f"unknown tgeo_kd method {method!r}; allowed: {', '.join(sorted(TGEO_METHODS))}")
    seeds = section["seeds"]
    if not len(outputs) == len(teacher_paths) == len(seeds):
        raise ValueError(f"{method}: {len(outputs)} outputs, {len(teacher_paths)} teachers for {len(seeds)} seeds")
    job = Job(study=STUDY, stage=STUDY, name=method, method=method, params=section)
    records = []
    for seed, teacher_path, out in zip(seeds, teacher_paths, outputs):
        teacher = load_model(teacher_path)
        build = lambda model, ds: TGEO_METHODS[method](model, teacher, ds, section["train"],  # noqa: E731
                                                       section["method_cfg"], seed)
        records.append(run_seed(job, seed, Path(data_dir), section["student"], section["train"], build, out, ctx,
                                trainer_cfg, evaluate=held_out_alpha))
    return records
