"""One training job = one configuration run over several seeds in one process
(DESIGN: imports cost ~4.5 s per process). Each seed is its own MLflow run and writes
its own checkpoint, metrics.json and history.csv, atomically, after its training
resumed from its own last checkpoint if an earlier attempt was killed.

Every Lightning study (teachers, mtard, tgeo_kd) calls `run_seed` with a
`build_module(model, dataset) -> LightningModule`; only that differs between studies.
`train_and_test` is the training and testing inside it, also used without checkpoints or
MLflow logger by the dataset-distillation evaluation (many short fits in one run).
`run_seeds_batched` / `batched_train_and_test` do the same for all seeds of a plain
cross-entropy job at once, as one batched model (train/seed_batched.py).
"""
from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import pandas as pd
import pytorch_lightning as pl
import torch

from lifelearn.data import load_dataset
from lifelearn.data.arrays import SPLITS
from lifelearn.evaluate.classification import evaluate_classifier
from lifelearn.io import atomic_path, clear_work_dir, work_dir
from lifelearn.jobs import Job, Paths, RunRecord
from lifelearn.models import build_model
from lifelearn.models.checkpoint import save_model
from lifelearn.tracking import DatasetRef, tracked_run
from lifelearn.train.data import InMemoryDataModule
from lifelearn.train.fit import fit
from lifelearn.tuning import TUNING_SPLITS

if TYPE_CHECKING:
    from lifelearn.train.seed_batched import StackedClassifierModule


@dataclass(frozen=True)
class SeedOutputs:
    """Files one seed of one job writes."""

    checkpoint: Path
    metrics: Path
    history: Path


def seed_outputs(paths: Paths) -> list[SeedOutputs]:
    """Per seed, the checkpoint / metrics / history outputs a training job's plan names
    (lifelearn.jobs.Layout.trained_model_outputs)."""
    return [SeedOutputs(*files) for files in zip(paths.output("checkpoints"), paths.output("metrics"),
                                                   paths.output("history"))]


@dataclass(frozen=True)
class RunLabel:
    """What identifies a seed's run: MLflow experiment (study), stage, name, method, and
    the params it logs (the job's resolved config section)."""

    study: str
    stage: str
    name: str
    method: str
    params: dict = field(default_factory=dict)


def write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")


def last_val_acc(history: list[dict]) -> float | None:
    """The val accuracy of the last epoch that validated (with val_every > 1 not every
    epoch does; None if none did)."""
    return next((row["val_acc"] for row in reversed(history) if "val_acc" in row), None)


def training_subset(ds, n: int | None, seed: int):
    """`ds` with its training split cut to a stratified `n` of its samples, drawn by the run's
    seed (train option `train_samples`: the low-data regime where a student overfits and
    a teacher's soft labels carry what the labels alone do not; Hinton et al. 2015, sec. 3);
    val and test untouched. None: the whole split."""
    if n is None or n >= len(ds.y_train):
        return ds
    from dataclasses import replace

    from lifelearn.data.splits import stratified_split

    _, subset = stratified_split(ds.y_train, int(n), seed)
    return replace(ds, x_train=ds.x_train[subset], y_train=ds.y_train[subset])


def train_and_test(ds, model_spec: dict, train_cfg: dict, build_module: Callable, seed: int, trainer_cfg: dict,
                   workdir: Path | None = None, logger=False, evaluate: Callable | None = None,
                   val_every: int = 1, split: str = "test") -> tuple[dict, pl.LightningModule]:
    """Seed everything, build the model and `build_module(model, ds)`, fit it on `ds`
    (train.fit: per-epoch checkpoints and resume only with a `workdir`) and evaluate its
    last epoch on `split` (test; val for a tuning candidate, whose `ds` has no test split).
    Returns the metrics (`split` accuracy/loss/per-class accuracy, `evaluate`'s additions on
    the same split, the last validated epoch's val_acc, epochs, train_seconds) and the module."""
    pl.seed_everything(seed, workers=True)
    ds = training_subset(ds, train_cfg.get("train_samples"), seed)
    model = build_model(model_spec, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    module = build_module(model, ds)
    datamodule = InMemoryDataModule(ds, train_cfg["batch_size"], train_cfg.get("eval_batch_size", 1024),
                                    seed=seed, augment=train_cfg.get("augment"))
    start = time.perf_counter()
    fit(module, datamodule, train_cfg["epochs"], workdir, logger, trainer_cfg, val_every)
    seconds = time.perf_counter() - start
    x_eval, y_eval = datamodule.tensors[split]
    metrics = evaluate_classifier(module.model, x_eval, y_eval, ds.num_classes, prefix=split)
    if evaluate is not None:
        metrics.update(evaluate(module, datamodule, ds, split))
    metrics.update({"val_acc": last_val_acc(module.history), "epochs": len(module.history),
                    "train_seconds": round(seconds, 3)})
    return metrics, module


def run_seed(label: RunLabel, seed: int, data_dir: Path, model_spec: dict, train_cfg: dict,
             build_module: Callable, out: SeedOutputs, job: Job, evaluate: Callable | None = None,
             split: str = "test") -> RunRecord:
    """Train one seed (train_and_test, resuming from its work directory, logging to its
    MLflow run); write checkpoint, history.csv and metrics.json; return the record. The
    run records the dataset and the checkpoint (an MLflow logged model, TrackedRun.log_checkpoint).
    `job` gives the MLflow context, the Lightning settings and the thread count.

    `build_module(model, dataset)` wraps the freshly built model in the stage's
    LightningModule; `evaluate(module, datamodule, dataset, split)` may add metrics to the
    accuracy/loss/per-class accuracy computed here on `split`: the test split, or val for a
    tuning candidate (lifelearn.tuning), which does not even load the test split.
    """
    torch.set_num_threads(job.threads)
    ctx, trainer_cfg = job.ctx, job.trainer
    ds = load_dataset(data_dir, TUNING_SPLITS if split == "val" else SPLITS)
    workdir = work_dir(out.checkpoint, label.params, seed, model_spec, train_cfg, trainer_cfg)
    with _seed_run(label, seed, ds, data_dir, model_spec, ctx, workdir / "mlflow_run_id") as run:
        metrics, module = train_and_test(ds, model_spec, train_cfg, build_module, seed, trainer_cfg, workdir,
                                         run.lightning_logger(), evaluate, split=split)
        record = _write_seed(run, label, seed, ds, model_spec, ctx, metrics, module.model, module.history, out)
    clear_work_dir(workdir)
    return record


@contextmanager
def _seed_run(label: RunLabel, seed: int, ds, data_dir: Path, model_spec: dict, ctx, run_file: Path):
    """The seed's MLflow run: the one whose id `run_file` keeps (a killed attempt's), else a new one."""
    resume_id = run_file.read_text().strip() if run_file.exists() else None
    tags = {"stage": label.stage, "method": label.method, "name": label.name, "dataset": ds.name,
            "model": model_spec["arch"], "seed": seed}
    with tracked_run(ctx, label.study, f"{label.name}/seed{seed}", tags, {**label.params, "seed": seed},
                     resume_run_id=resume_id, dataset=DatasetRef.of(ds.name, data_dir)) as run:
        run_file.parent.mkdir(parents=True, exist_ok=True)
        run_file.write_text(run.run_id)
        yield run


def _write_seed(run, label: RunLabel, seed: int, ds, model_spec: dict, ctx, metrics: dict, model, history: list,
                out: SeedOutputs) -> RunRecord:
    """A trained seed's checkpoint, history.csv and metrics.json, and their MLflow logging."""
    record = RunRecord(label.study, label.stage, label.name, label.method, seed, ds.name, model_spec["arch"],
                       run.run_id, ctx.git_commit, metrics)
    save_model(out.checkpoint, model, model_spec, ds.input_shape, ds.num_classes)
    run.log_checkpoint(out.checkpoint, f"{label.name.replace('/', '-')}-seed{seed}")  # MLflow: no "/"
    write_history(out.history, history)
    record.write(out.metrics)
    last = history[-1]
    run.log_metrics({k: v for k, v in metrics.items() if k not in last and not isinstance(v, list)})
    run.log_artifact(out.metrics)
    run.log_artifact(out.history)
    return record


def batched_train_and_test(ds, seeds: Sequence[int], model_spec: dict, train_cfg: dict, trainer_cfg: dict,
                           workdir: Path | None = None, evaluators: Sequence[Callable | None] | None = None,
                           split: str = "test") -> tuple[list[dict], StackedClassifierModule]:
    """train_and_test's cross-entropy training (ClassifierModule) for every seed of `seeds`
    at once, as one StackedClassifierModule (train/seed_batched.py: the same initialisation,
    data order and updates per seed, within float tolerance). Returns per seed the metrics
    train_and_test returns (`evaluators[k]`, if any, called as its `evaluate` with a
    ClassifierModule around seed k's trained model); train_seconds is a seed's share of the
    batched fit."""
    from lifelearn.train.module import ClassifierModule
    from lifelearn.train.seed_batched import SeedBatchedDataModule, StackedClassifierModule

    datasets, models = [], []
    for seed in seeds:  # train_and_test's order: seed, training subset, model
        pl.seed_everything(seed, workers=True)
        datasets.append(training_subset(ds, train_cfg.get("train_samples"), seed))
        models.append(build_model(model_spec, ds.input_shape, ds.num_classes, ds.mean, ds.std))
    module = StackedClassifierModule(models, train_cfg)
    datamodule = SeedBatchedDataModule(datasets, seeds, train_cfg["batch_size"], train_cfg.get("eval_batch_size", 1024),
                                       augment=train_cfg.get("augment"))
    start = time.perf_counter()
    fit(module, datamodule, train_cfg["epochs"], workdir, False, trainer_cfg)
    seconds = (time.perf_counter() - start) / len(seeds)
    x_eval, y_eval = datamodule.tensors[split]
    results = []
    for k, model in enumerate(module.models()):
        metrics = evaluate_classifier(model, x_eval, y_eval, ds.num_classes, prefix=split)
        if evaluators and evaluators[k] is not None:
            metrics.update(evaluators[k](ClassifierModule(model, train_cfg), datamodule.members[0], datasets[k], split))
        metrics.update({"val_acc": last_val_acc(module.history[k]), "epochs": len(module.history[k]),
                        "train_seconds": round(seconds, 3)})
        results.append(metrics)
    return results, module


def run_seeds_batched(label: RunLabel, seeds: Sequence[int], data_dir: Path, model_spec: dict, train_cfg: dict,
                      outs: Sequence[SeedOutputs], job: Job, evaluators: Sequence[Callable | None] | None = None,
                      split: str = "test") -> list[RunRecord]:
    """run_seed for every seed of a cross-entropy job at once (batched_train_and_test): each
    seed keeps its own MLflow run, checkpoint, history.csv and metrics.json; the resume point
    is one checkpoint of the stacked ensemble in the job's work directory (beside seed
    `seeds[0]`'s checkpoint, keyed by the config and the seeds), with each seed's run id. A
    seed's epoch rows reach its MLflow run after the fit, at the steps the sequential path
    logs them (train.fit.EpochRows)."""
    torch.set_num_threads(job.threads)
    ctx, trainer_cfg = job.ctx, job.trainer
    ds = load_dataset(data_dir, TUNING_SPLITS if split == "val" else SPLITS)
    workdir = work_dir(outs[0].checkpoint, label.params, list(seeds), model_spec, train_cfg, trainer_cfg,
                       "seed-batched")
    with ExitStack() as stack:
        runs = [stack.enter_context(_seed_run(label, seed, ds, data_dir, model_spec, ctx,
                                              workdir / f"mlflow_run_id_seed{seed}")) for seed in seeds]
        results, module = batched_train_and_test(ds, seeds, model_spec, train_cfg, trainer_cfg, workdir, evaluators,
                                                 split)
        per_epoch = module.global_step // len(module.history[0])  # as train.fit.log_rows_lost_at_kill counts
        records = []
        for seed, run, metrics, model, history, out in zip(seeds, runs, results, module.stacked.models, module.history,
                                                           outs):
            log_epoch_rows(run, history, per_epoch)
            records.append(_write_seed(run, label, seed, ds, model_spec, ctx, metrics, model, history, out))
    clear_work_dir(workdir)
    return records


def log_epoch_rows(run, history: list[dict], batches_per_epoch: int) -> None:
    """The epoch rows of `history` the run does not hold yet (a killed attempt's rerun logs
    only the rest), epoch e at step (e + 1) * batches_per_epoch - 1 (train.fit.EpochRows' step)."""
    logged = run.points("epoch")
    run.log_series((key, float(value), (e + 1) * batches_per_epoch - 1)
                   for e, row in enumerate(history) if e >= logged for key, value in row.items())
