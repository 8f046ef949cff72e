"""Study `continual` (PAPERS.md sections 5-6): continual fine-tuning and its evaluation.
A *setting* (`continual.settings.<s>`) is a stream and its training; a *run*
(`continual.runs.<r>`) names a setting and the strategies (+ refresh) trained on it, its
resolved config being the setting deep-merged with the run's keys (lifelearn.continual.configs).
Two steps, one job each per run (`run` dispatches on `job.step`):

- `train` (continual_<run>): every seed of the run in one process, each its own MLflow run,
  writing under results/<profile>/continual/<run>/seed<k>/ atomically:
      metrics.json          the run record: iterations and costs, and the plug-ins' run metrics
                            (refresh: refresh_sgd_ratio_task<j>, _mean; the accuracy metrics come
                            from the evaluate step)
      history.csv           one row per finished task ("epoch" = task index): R[i, :]
      stream.csv            the raw continual-evaluation stream
                            (iteration, current_task, eval_task, accuracy, loss)
      accuracy_matrix.json  R[i, j], the loss matrix, the accuracies before training and of a
                            random initialisation, and each task's classes
  Per-task stream accuracy goes to MLflow as series `stream_acc_task<j>` (step = iteration),
  the matrix rows as `acc_task<j>` (step = task).
- `evaluate` (continual_eval_<run>): every metric of evaluate/continual_metrics over each
  seed's matrix and stream, against the setting's single-task experts (the run whose
  strategy is `single_task`) where there are any: evaluation.json per seed (the run record
  with the metrics added, also logged into the seed's MLflow run) and summary.json (mean,
  std and 95% t-interval over seeds).

METHODS is lifelearn.continual.strategies' registry, named without importing torch: one
file per strategy under continual/strategies/, the file name being the strategy's name.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from lifelearn.data.arrays import DATASET_FILES
from lifelearn.jobs import COMMON_CODE, JobSpec, Layout
from lifelearn.phases import timed

STUDY = STAGE = "continual"
STRATEGY_DIR = Path(__file__).resolve().parents[1] / "continual" / "strategies"
METHODS = tuple(sorted(p.stem for p in STRATEGY_DIR.glob("*.py") if not p.stem.startswith("_")))
TRAIN_FILES = {"metrics": "metrics.json", "history": "history.csv", "stream": "stream.csv",
               "matrix": "accuracy_matrix.json"}
TRAIN_CODE = ("studies/continual.py", "continual", "models", "data/arrays.py", *COMMON_CODE)
EVALUATE_CODE = ("studies/continual.py", "evaluate/continual_metrics.py", "stats.py", "jobs.py", "io.py")


def jobs(config: dict, layout: Layout) -> list[JobSpec]:
    """continual_<run> and continual_eval_<run> for every run, in name order."""
    from dataclasses import replace

    from lifelearn import tuning
    from lifelearn.continual.configs import (check_synthetic_sets, expert_run, init_checkpoint_dir,
                                             resolved_runs, synthetic_sets)
    from lifelearn.studies import check_names

    runs = resolved_runs(config)
    synthetic_root = f"{layout.checkpoints}/dataset_distillation/synthetic"
    check_tuning(config, runs)
    out = []
    for name, run in runs.items():
        check_names(run["strategies"], METHODS, f"continual.runs.{name}.strategies")
        check_synthetic_sets(config, name, run)
        seeds = run["seeds"]
        init_dir = init_checkpoint_dir(run, layout.checkpoints)

        def make_job(spec, job_seeds, out_name, step, rule, init_dir=init_dir, name=name):
            files = {key: layout.seed_files(STUDY, out_name, job_seeds, f) for key, f in TRAIN_FILES.items()}
            inputs = {"init": [f"{init_dir}/seed{s}.pt" for s in job_seeds] if init_dir else [],
                      "synthetic": [f"{synthetic_root}/{n}/seed{s}/{f}" for n in synthetic_sets(spec)
                                    for s in job_seeds for f in DATASET_FILES]}
            return JobSpec(STUDY, step, name, rule, spec=spec, seeds=job_seeds, outputs=files,
                           code=(*TRAIN_CODE, *tuning.CODE), datasets=(spec["dataset"],), inputs=inputs,
                           report={"history": files["history"], "extra": files["stream"] + files["matrix"]})

        spec, shared = tuning.borrowed_selection(runs, name, run, (), f"continual.runs.{name}",
                                                 f"{layout.results}/{STUDY}/tuning")
        planned = tuning.plan(f"continual_{name}", name, spec, (), seeds, f"continual.runs.{name}", make_job,
                              f"{layout.results}/{STUDY}/tuning", tuning.candidates_per_job(config))
        if shared:  # the final job reads the selection of the run it controls
            planned[-1] = replace(planned[-1], inputs={**planned[-1].inputs, "selection": [shared]})
        out += planned
        files = {key: layout.seed_files(STUDY, name, seeds, f) for key, f in TRAIN_FILES.items()}
        expert = expert_run(runs, name)
        evaluation = layout.seed_files(STUDY, name, seeds, "evaluation.json")
        summary = f"{layout.results}/{STUDY}/{name}/summary.json"
        out.append(JobSpec(STUDY, "evaluate", name, f"continual_eval_{name}", seeds=seeds,
                           spec={"windows": config[STUDY]["evaluation"]["windows"]}, code=EVALUATE_CODE,
                           inputs={"matrix": files["matrix"], "stream": files["stream"], "runs": files["metrics"],
                                   "expert": layout.seed_files(STUDY, expert, seeds, "stream.csv") if expert else []},
                           outputs={"evaluation": evaluation, "summary": [summary]}, training=False,
                           report={"metrics": evaluation, "extra": [summary]}))
    return out


def check_tuning(config: dict, runs: dict) -> None:
    """The two runs of every claim that are both tuned spend the same budget."""
    from lifelearn import tuning

    tunes = {n: r["tune"] for n, r in runs.items() if r.get("tune")}
    tuning.check_budgets(config.get("claims", []), tunes, {n: runs[n]["train"]["epochs"] for n in tunes}, STUDY)


def run(job, paths) -> list:
    return {"train": run_train, "tune": run_train, "evaluate": run_evaluate}[job.step](job, paths)


# ------------------------------------------------------------------------------ train
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
    import pandas as pd

    from lifelearn.io import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False, float_format="%.6g")


def log_stream(run, rows: list[dict], R) -> None:
    """Per-task stream accuracy (step = iteration) and matrix rows (step = task) as series."""
    run.log_series([(f"stream_acc_task{r['eval_task']}", r["accuracy"], r["iteration"]) for r in rows]
                   + [(f"acc_task{j}", R[i, j], i) for i in range(R.shape[0]) for j in range(R.shape[1])])


def run_train(job, paths) -> list:
    """Every seed of continual run `job.name` (its config is `job.spec`, with the values its
    selection chose when it was tuned). A tuning candidate (step `tune`) streams the same
    tasks but evaluates on the val split, the test split not even loaded, and records the
    final average accuracy on val as `val_avg_acc`."""
    from dataclasses import replace

    import torch

    from lifelearn import tuning
    from lifelearn.data import load_dataset

    spec, selection = tuning.selected_spec(job.spec, (), paths)
    job = replace(job, spec=spec | tuning.tuned_params(selection))
    torch.set_num_threads(job.threads)  # CPU kernels used here are deterministic; not calling
    # torch.use_deterministic_algorithms, whose import of torch._inductor costs ~3 s a job
    data_dir = paths.input("data")[0].parent
    init, synthetic = paths.input("init"), paths.input("synthetic")
    init_dir = init[0].parent if init else None
    # <root>/<set>/seed<k>/<file> -> <root>
    synthetic_root = synthetic[0].parents[2] if synthetic else None
    if job.step == "tune":
        ds = load_dataset(data_dir, tuning.TUNING_SPLITS)
        ds = replace(ds, x_test=ds.x_val, y_test=ds.y_val)  # the stream's evaluation sets: val
    else:
        ds = load_dataset(data_dir)
    outputs = zip(*(paths.output(key) for key in TRAIN_FILES))
    return [train_seed(job, ds, data_dir, seed, dict(zip(TRAIN_FILES, files)), init_dir, synthetic_root)
            for seed, files in zip(job.seeds, outputs)]


def train_seed(job, ds, data_dir: Path, seed: int, out: dict, init_dir: Path | None, synthetic_root: Path | None):
    """One seed's stream: train, evaluate continually, write the four files, log to MLflow."""
    import numpy as np
    import torch

    from lifelearn.continual.evaluation import ContinualEvaluator
    from lifelearn.continual.scenarios import build_stream
    from lifelearn.continual.starts import init_model, random_init_model
    from lifelearn.continual.strategies import build_plugins
    from lifelearn.continual.template import ContinualLearner
    from lifelearn.io import write_json
    from lifelearn.jobs import RunRecord
    from lifelearn.tracking import DatasetRef, tracked_run

    from lifelearn.tuning import run_name

    cfg, name = job.spec, run_name(job)
    torch.manual_seed(seed)
    np.random.seed(seed)
    scenario = build_stream(ds, cfg["scenario"], cfg["n_tasks"], seed, cfg.get("stream", "tasks"))
    model, arch = init_model(cfg, ds, seed, init_dir)
    plugins = build_plugins(strategies_for_seed(cfg["strategies"], seed, synthetic_root),
                            cfg.get("refresh", False), cfg.get("refresh_params"))
    ev = cfg.get("eval", {})
    evaluator = ContinualEvaluator(scenario, ev.get("every", 1), ev.get("subset", 1000), seed)
    learner = ContinualLearner(model, scenario, plugins, cfg["train"], seed, evaluator)
    method = "+".join(list(cfg["strategies"]) + (["refresh"] if cfg.get("refresh") else []))
    tags = {"stage": STAGE, "method": method, "name": name, "dataset": ds.name, "model": arch, "seed": seed,
            "scenario": cfg["scenario"], "init": cfg.get("init", "scratch")}
    with tracked_run(job.ctx, STUDY, f"{name}/seed{seed}", tags, {**cfg, "seed": seed},
                     dataset=DatasetRef.of(ds.name, data_dir)) as run:
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
        for p in plugins:  # e.g. refresh's ||refresh update|| / ||SGD update|| per task
            metrics.update(p.run_metrics())
        if job.step == "tune":  # the evaluation sets are val: the selection metric
            metrics["val_avg_acc"] = float(evaluator.R[-1].mean())
        record = RunRecord(STUDY, STAGE, name, method, seed, ds.name, arch, run.run_id, job.ctx.git_commit, metrics,
                           {"scenario": cfg["scenario"], "setting": cfg.get("setting", "")})
        T = scenario.n_tasks
        _write_csv(out["stream"], evaluator.rows, ["iteration", "current_task", "eval_task", "accuracy", "loss"])
        _write_csv(out["history"], [{"epoch": i, "avg_seen_acc": float(R[i, :i + 1].mean()),
                                     **{f"acc_task{j}": float(R[i, j]) for j in range(T)}} for i in range(T)],
                   ["epoch", "avg_seen_acc", *[f"acc_task{j}" for j in range(T)]])
        write_json(out["matrix"], {"accuracy": R.tolist(), "loss": evaluator.L.tolist(),
                                   "initial": evaluator.initial.tolist(), "random_init": evaluator.random_init.tolist(),
                                   "classes": [list(t.classes) for t in scenario.tasks]})
        record.write(out["metrics"])
        log_stream(run, evaluator.rows, R)
        run.log_series([(key.rpartition("_task")[0], v, int(key.rpartition("_task")[2])) for key, v in metrics.items()
                        if key.rpartition("_task")[2].isdigit()])  # per-task plug-in metrics, step = task
        run.log_metrics(metrics)
        for path in (out["metrics"], out["matrix"], out["stream"]):
            run.log_artifact(path)
    return record


# --------------------------------------------------------------------------- evaluate
@timed("evaluation")
def evaluate_seed(run_dir: Path, expert_dir: Path | None = None, windows=(10, 100)):
    """The run record of `run_dir` with the continual metrics merged into its metrics."""
    import numpy as np
    import pandas as pd

    from lifelearn.evaluate.continual_metrics import continual_metrics
    from lifelearn.io import read_json
    from lifelearn.jobs import RunRecord

    run_dir = Path(run_dir)
    record, matrix = RunRecord.read(run_dir / TRAIN_FILES["metrics"]), read_json(run_dir / TRAIN_FILES["matrix"])
    expert = pd.read_csv(Path(expert_dir) / TRAIN_FILES["stream"]) if expert_dir is not None else None
    values = continual_metrics(np.asarray(matrix["accuracy"], dtype=float), pd.read_csv(run_dir / TRAIN_FILES["stream"]),
                               np.asarray(matrix["initial"], dtype=float),
                               np.asarray(matrix["random_init"], dtype=float), expert, tuple(windows))
    record.metrics = record.metrics | values
    return record


def log_to_run(tracking_uri: str, record, evaluation_path: Path) -> None:
    """Add the metrics (step 0) and evaluation.json to the seed's MLflow run; a run the
    store does not have (a deleted store) is reported and skipped, not fatal."""
    import math

    from mlflow.exceptions import MlflowException

    from lifelearn.tracking import TrackedRun

    run = TrackedRun(record.run_id, record.study, tracking_uri)
    finite = {k: v for k, v in record.metrics.items() if v is not None and math.isfinite(v)}
    try:
        run.log_metrics(finite)
        run.log_artifact(evaluation_path)
    except MlflowException as err:
        print(f"warning: MLflow run {record.run_id} of {evaluation_path} not logged: {err}", file=sys.stderr)


def evaluate_run(run_dirs: list[Path], expert_dirs: list[Path] | None, summary_path: Path,
                 tracking_uri: str | None = None, windows=(10, 100)) -> list:
    """Every seed of one continual run (`expert_dirs` paired with `run_dirs`, or None)."""
    from lifelearn.io import write_json
    from lifelearn.stats import seed_summary

    experts = expert_dirs or [None] * len(run_dirs)
    records = []
    for run_dir, expert_dir in zip(run_dirs, experts):
        record = evaluate_seed(run_dir, expert_dir, windows)
        path = record.write(Path(run_dir) / "evaluation.json")
        if tracking_uri:
            log_to_run(tracking_uri, record, path)
        records.append(record)
    first = records[0]
    write_json(summary_path, {"study": first.study, "name": first.name, "method": first.method,
                              "seeds": [r.seed for r in records],
                              "metrics": seed_summary([r.metrics for r in records])})
    return records


def run_evaluate(job, paths) -> list:
    """The evaluate step of run `job.name`: every seed's metrics, logged, and their summary."""
    expert = paths.input("expert")
    return evaluate_run([p.parent for p in paths.input("runs")], [p.parent for p in expert] or None,
                        paths.output("summary")[0], job.ctx.tracking_uri, tuple(job.spec["windows"]))
