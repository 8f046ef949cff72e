"""The continual stage: one configuration (scenario + start + strategies) over its seeds
in one process (DESIGN: imports cost seconds per process). Each seed is its own MLflow
run (experiment `continual`) and writes, atomically, under its own directory:

    metrics.json          the run record (runner.run_seed's shape): iterations and costs; the
                          accuracy metrics come from the evaluation rule (evaluate_continual.py)
    history.csv           one row per finished task ("epoch" = task index): R[i, :]
    stream.csv            the raw continual-evaluation stream
                          (iteration, current_task, eval_task, accuracy, loss)
    accuracy_matrix.json  R[i, j], the loss matrix, the accuracies before training and of a
                          random initialisation, and each task's classes

Per-task stream accuracy goes to MLflow as series `stream_acc_task<j>` with the
iteration as step (TrackedRun.log_series), the accuracy matrix rows as
`acc_task<j>` with the task index as step.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lifelearn.continual.evaluation import ContinualEvaluator
from lifelearn.continual.scenarios import build_scenario
from lifelearn.continual.strategies import build_plugins
from lifelearn.continual.template import ContinualLearner
from lifelearn.data import load_dataset
from lifelearn.io import atomic_path, md5_tree, write_json
from lifelearn.models import build_model
from lifelearn.models.checkpoint import load_model
from lifelearn.tracking import RunContext, tracked_run

STUDY, STAGE = "continual", "continual"


@dataclass(frozen=True)
class ContinualOutputs:
    metrics: Path
    history: Path
    stream: Path
    matrix: Path

    @classmethod
    def in_dir(cls, d: Path) -> "ContinualOutputs":
        d = Path(d)
        return cls(d / "metrics.json", d / "history.csv", d / "stream.csv", d / "accuracy_matrix.json")


def init_model(cfg: dict, ds, seed: int, init_dir: Path | None):
    """`init: scratch` builds cfg.model; `init: teacher:<name>` or
    `student:<study>/<name>` loads that checkpoint's seed (seed k uses seed k) and, with
    reset_head (or when its classes differ from the stream's), re-initialises its head."""
    init = cfg.get("init", "scratch")
    if init == "scratch":
        return build_model(cfg["model"], ds.input_shape, ds.num_classes, ds.mean, ds.std), cfg["model"]["arch"]
    kind, _, name = init.partition(":")
    if kind not in ("teacher", "student") or not name or init_dir is None:
        raise ValueError(f"init must be 'scratch', 'teacher:<name>' or 'student:<study>/<name>', got {init!r}")
    model = load_model(Path(init_dir) / f"seed{seed}.pt")
    if model.head.out_features != ds.num_classes:  # a source with other classes: a new head
        model.head = torch.nn.Linear(model.head.in_features, ds.num_classes)
    elif cfg.get("reset_head", True):
        model.head.reset_parameters()
    return model, type(model).__name__.lower()


def random_init_model(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of `model` with every layer re-initialised (seeded, global RNG untouched):
    the random-initialisation baseline of FWT for a pretrained start."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 104729)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh


def strategies_for_seed(strategies: dict, seed: int, synthetic_root: Path | None) -> dict:
    """The strategies' hyper-parameters, with the seed's synthetic-set directory added to
    those replaying a distilled set (`synthetic: <method>_ipc<n>`)."""
    out = {}
    for name, params in strategies.items():
        params = dict(params or {})
        if "synthetic" in params:
            if synthetic_root is None:
                raise ValueError(f"strategy {name!r} replays synthetic set {params['synthetic']!r}, "
                                 "but no synthetic-set directory was given")
            params["data_dir"] = Path(synthetic_root) / params["synthetic"] / f"seed{seed}"
        out[name] = params
    return out


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False, float_format="%.6g")


def log_stream(run, rows: list[dict], R: np.ndarray) -> None:
    """Per-task stream accuracy (step = iteration) and matrix rows (step = task) as series."""
    run.log_series([(f"stream_acc_task{r['eval_task']}", r["accuracy"], r["iteration"]) for r in rows]
                   + [(f"acc_task{j}", R[i, j], i) for i in range(R.shape[0]) for j in range(R.shape[1])])


def run_continual_seed(name: str, cfg: dict, ds, data_dir: Path, seed: int, out: ContinualOutputs,
                       ctx: RunContext, init_dir: Path | None = None, synthetic_root: Path | None = None) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    scenario = build_scenario(ds, cfg["scenario"], cfg["n_tasks"], seed)
    model, arch = init_model(cfg, ds, seed, init_dir)
    plugins = build_plugins(strategies_for_seed(cfg["strategies"], seed, synthetic_root),
                            cfg.get("refresh", False), cfg.get("refresh_params"))
    ev = cfg.get("eval", {})
    evaluator = ContinualEvaluator(scenario, ev.get("every", 1), ev.get("subset", 1000), seed)
    learner = ContinualLearner(model, scenario, plugins, cfg["train"], seed, evaluator)
    method = "+".join(list(cfg["strategies"]) + (["refresh"] if cfg.get("refresh") else []))
    tags = {"stage": STAGE, "method": method, "name": name, "dataset": ds.name, "model": arch,
            "seed": seed, "dataset_md5": md5_tree(data_dir), "scenario": cfg["scenario"], "init": cfg.get("init", "scratch")}
    with tracked_run(ctx, STUDY, f"{name}/seed{seed}", tags, {**cfg, "seed": seed}) as run:
        scratch = cfg.get("init", "scratch") == "scratch"
        evaluator.before_training(learner, None if scratch else random_init_model(model, seed))
        start = time.perf_counter()
        learner.fit()
        wall = time.perf_counter() - start
        R = evaluator.R
        metrics = {
            "iterations": learner.iteration, "train_seconds": round(learner.train_seconds, 4),
            "eval_seconds": round(evaluator.seconds, 4), "wall_seconds": round(wall, 4),
            "steps_per_second": round(learner.iteration / max(learner.train_seconds, 1e-9), 1)}
        record = {"study": STUDY, "stage": STAGE, "name": name, "method": method, "seed": seed,
                  "dataset": ds.name, "model": arch, "run_id": run.run_id, "git_commit": ctx.git_commit,
                  "scenario": cfg["scenario"], "setting": cfg.get("setting", ""), "metrics": metrics}
        T = scenario.n_tasks
        _write_csv(out.stream, evaluator.rows, ["iteration", "current_task", "eval_task", "accuracy", "loss"])
        _write_csv(out.history, [{"epoch": i, "avg_seen_acc": float(R[i, :i + 1].mean()),
                                  **{f"acc_task{j}": float(R[i, j]) for j in range(T)}} for i in range(T)],
                   ["epoch", "avg_seen_acc", *[f"acc_task{j}" for j in range(T)]])
        write_json(out.matrix, {"accuracy": R.tolist(), "loss": evaluator.L.tolist(),
                                "initial": evaluator.initial.tolist(), "random_init": evaluator.random_init.tolist(),
                                "classes": [list(t.classes) for t in scenario.tasks]})
        write_json(out.metrics, record)
        log_stream(run, evaluator.rows, R)
        run.log_metrics(metrics)
        for path in (out.metrics, out.matrix, out.stream):
            run.log_artifact(path)
    return record


def run_continual(name: str, cfg: dict, data_dir: Path, out_dirs: list[Path], ctx: RunContext,
                  init_dir: Path | None = None, threads: int = 1, synthetic_root: Path | None = None) -> list[dict]:
    """Every seed of configuration `name` (cfg["seeds"], paired with `out_dirs`)."""
    torch.set_num_threads(threads)  # CPU kernels used here are deterministic; not calling
    # torch.use_deterministic_algorithms, whose import of torch._inductor costs ~3 s a job
    ds = load_dataset(data_dir)
    return [run_continual_seed(name, cfg, ds, Path(data_dir), seed, ContinualOutputs.in_dir(d), ctx, init_dir,
                               synthetic_root)
            for seed, d in zip(cfg["seeds"], out_dirs)]
