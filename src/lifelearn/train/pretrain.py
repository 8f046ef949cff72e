"""Stage: teacher pretraining. One job per teacher runs all its seeds in one process
(DESIGN: imports cost ~4.5 s per process); each seed is its own MLflow run and writes
its own checkpoint, metrics.json and history.csv."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch

from lifelearn.data import load_dataset
from lifelearn.evaluate.classification import evaluate_classifier
from lifelearn.io import atomic_path, md5_tree, write_json
from lifelearn.models import build_model
from lifelearn.models.checkpoint import save_model
from lifelearn.tracking import RunContext, tracked_run
from lifelearn.train.data import InMemoryDataModule
from lifelearn.train.fit import clear_work_dir, fit, work_dir
from lifelearn.train.module import ClassifierModule

# Training methods for pretraining, by config name (`teachers.<name>.method`).
PRETRAIN_METHODS = {"natural": ClassifierModule}


@dataclass(frozen=True)
class SeedOutputs:
    """Files one seed of one job writes."""

    checkpoint: Path
    metrics: Path
    history: Path


def write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")


def train_teacher_seed(name: str, teacher: dict, data_dir: Path, seed: int, out: SeedOutputs,
                       ctx: RunContext, trainer_cfg: dict, study: str = "teachers") -> dict:
    """Train one seed of one teacher; write its outputs atomically; return its metrics.json."""
    ds = load_dataset(data_dir)
    train_cfg = teacher["train"]
    pl.seed_everything(seed, workers=True)
    model = build_model(teacher["model"], ds.input_shape, ds.num_classes, ds.mean, ds.std)
    module = PRETRAIN_METHODS[teacher.get("method", "natural")](model, train_cfg)
    datamodule = InMemoryDataModule(ds, train_cfg["batch_size"], train_cfg.get("eval_batch_size", 1024),
                                    seed=seed, augment=train_cfg.get("augment"))
    workdir = work_dir(out.checkpoint, teacher, seed, trainer_cfg)
    run_file = workdir / "mlflow_run_id"
    resume_id = run_file.read_text().strip() if run_file.exists() else None
    tags = {"stage": "pretrain", "method": teacher.get("method", "natural"), "dataset": ds.name,
            "model": teacher["model"]["arch"], "seed": seed, "name": name,
            "dataset_md5": md5_tree(data_dir)}
    with tracked_run(ctx, study, f"{name}/seed{seed}", tags, {**teacher, "seed": seed},
                     resume_run_id=resume_id) as run:
        workdir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(run.run_id)
        start = time.perf_counter()
        fit(module, datamodule, train_cfg["epochs"], workdir, run.lightning_logger(), trainer_cfg)
        seconds = time.perf_counter() - start
        x_test, y_test = datamodule.tensors["test"]
        metrics = evaluate_classifier(module.model, x_test, y_test, ds.num_classes)
        metrics.update({"val_acc": module.history[-1]["val_acc"], "epochs": len(module.history),
                        "train_seconds": round(seconds, 3)})
        record = {"study": study, "stage": "pretrain", "name": name, "seed": seed, "dataset": ds.name,
                  "model": teacher["model"]["arch"], "run_id": run.run_id, "git_commit": ctx.git_commit,
                  "metrics": metrics}
        save_model(out.checkpoint, module.model, teacher["model"], ds.input_shape, ds.num_classes)
        write_history(out.history, module.history)
        write_json(out.metrics, record)
        run.log_metrics({k: v for k, v in metrics.items() if k not in module.history[-1] and not isinstance(v, list)})
        run.log_artifact(out.metrics)
        run.log_artifact(out.history)
    clear_work_dir(workdir)
    return record


def pretrain_teacher(name: str, teacher: dict, data_dir: str | os.PathLike, outputs: list[SeedOutputs],
                     ctx: RunContext, trainer_cfg: dict, threads: int = 1) -> list[dict]:
    """Stage entry point: train `teacher` once per seed in `teacher["seeds"]`."""
    torch.set_num_threads(threads)
    if len(outputs) != len(teacher["seeds"]):
        raise ValueError(f"teacher {name}: {len(outputs)} output sets for {len(teacher['seeds'])} seeds")
    return [train_teacher_seed(name, teacher, Path(data_dir), seed, out, ctx, trainer_cfg)
            for seed, out in zip(teacher["seeds"], outputs)]
