"""Study `dataset_distillation` (PAPERS.md section 4): MTT (Cazenavette et al. 2022) and the
smooth-expert additions of Shen et al. 2023 against a random real subset. Three steps,
one job each per expert set or method (`run` dispatches on `job.step`):

- `zca` (with `zca: true`): MTT's ZCA whitening fitted once on the real train split
  (checkpoints/<profile>/dataset_distillation/zca/<dataset>.pt), read by every job below:
  the fit, an SVD of the D x D covariance (D = 3072 for CIFAR), costs minutes on CPU.
- `experts`: N experts of one expert set (plain or smooth) on the real train split,
  one compact trajectory file per expert (checkpoints/<profile>/dataset_distillation/experts/).
- `distill`: one method entry for every IPC and seed: METHODS["random"] (a random real
  subset, the baseline) or METHODS["mtt"] (trajectory matching with the entry's switches);
  each synthetic set is written in the datasets' array format (x_train/y_train = the
  synthetic set, x/y_val and x/y_test copied from the real dataset, meta.json = the real one
  plus "lr" and "synthetic"), so any study can train on it.
- `evaluate`: K fresh networks per synthetic set, trained on the synthetic train split alone
  as MTT evaluates (its learned step size, SGD momentum 0.9, wd 5e-4, 1000 epochs); test
  accuracy of the LAST epoch; plus the fixed-step-size control (`control_runs`).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from dataclasses import dataclass

from lifelearn import phases
from lifelearn.data.arrays import DATASET_FILES
from lifelearn.jobs import COMMON_CODE, LONG_CHAIN_PRIORITY, MODEL_EVALUATION, JobSpec, Layout

STUDY = "dataset_distillation"
CODE = ("studies/dataset_distillation.py", "distill/dataset_distillation.py", "distill/dsa.py", "models", "data",
        *COMMON_CODE)


@dataclass(frozen=True)
class Method:
    """`distills`: matches expert trajectories (reads an expert set) or only samples real images."""

    distills: bool


METHODS = {"random": Method(False), "mtt": Method(True)}  # a random real subset; trajectory matching


def expert_draw(num: int, per_seed: int, seed: int) -> list[int]:
    """The experts distillation seed `seed` matches: `per_seed` of the pool's `num`, drawn
    without replacement by numpy's default_rng(seed), sorted. Seeds thus vary the experts
    too (an interval over seeds includes expert variance); per_seed == num = the whole pool."""
    import numpy as np

    return sorted(int(i) for i in np.random.default_rng(seed).choice(num, per_seed, replace=False))


def pipeline_keys(section: dict) -> dict:
    """MTT's CIFAR pipeline switches every step reads: {"zca": bool, "dsa": strategy or False}."""
    return {"zca": bool(section.get("zca", False)),
            "dsa": section.get("dsa_strategy", "color_crop_cutout_flip_scale_rotate") if section.get("dsa") else False}


def prepared(ds, keys: dict, zca_files=()):
    """(x_train, x_val, x_test, mean, std, augment) of `ds` under the pipeline keys: with `zca`,
    the x arrays whitened by the ZCA the dd_zca job fitted on the REAL train split (its file
    in `zca_files`; without one, fitted here on ds itself) and no further
    normalisation in the model (mean = std = None; the transform centres); `augment`: the
    DSA (lifelearn.distill.dsa) or None."""
    import torch

    from lifelearn.distill import dsa

    augment = dsa.build(bool(keys["dsa"]), keys["dsa"] or "", ds.input_shape[0]) if len(ds.input_shape) == 3 else None
    if keys["dsa"] and augment is None:
        raise ValueError(f"dataset_distillation.dsa: needs image inputs (C, H, W), got {tuple(ds.input_shape)}")
    if not keys["zca"]:
        return (*(torch.as_tensor(getattr(ds, f"x_{s}")) for s in ("train", "val", "test")), ds.mean, ds.std, augment)
    from lifelearn.data.zca import load_zca, whiten_splits

    zca = load_zca(zca_files[0]) if zca_files else None
    w = whiten_splits(ds, zca=zca)
    return w["train"], w["val"], w["test"], None, None, augment


def method_seeds(config: dict, name: str) -> list[int]:
    """The seeds of method entry `name`: the global seeds, or their first `seeds` for an
    entry that sets it (the ablation rows, to bound their cost)."""
    n = config[STUDY]["methods"][name].get("seeds")
    return list(config["seeds"]) if n is None else list(config["seeds"])[:n]


def check_section(section: dict) -> None:
    """Config checks the schema cannot state; ValueError naming the keys.

    - experts.per_seed <= experts.num;
    - the expert optimiser is per expert set (experts.sets.<set>.momentum / weight_decay),
      not in experts.train;
    - evaluation.batched_networks and distill.batched_seeds, given per IPC, name configured IPCs only;
    - a trajectory-matching method's inner loop imitates the optimiser of the experts it
      matches: inner_momentum true (v <- 0.9 v + g) needs experts.sets.<set>.momentum 0.9,
      false (plain SGD) needs momentum 0 (Shen et al.'s distill.py --mom 0.9 pairs with their
      buffer.py SGDMOM 0.9; MTT's plain inner loop with its momentum-free experts).
    """
    from lifelearn.distill.dataset_distillation import INNER_MOMENTUM

    experts = section["experts"]
    if experts.get("per_seed", experts["num"]) > experts["num"]:
        raise ValueError(f"dataset_distillation.experts.per_seed ({experts['per_seed']}) exceeds "
                         f"dataset_distillation.experts.num ({experts['num']}), the pool it draws from")
    for key in ("momentum", "weight_decay"):
        if key in experts["train"]:
            raise ValueError(f"dataset_distillation.experts.train.{key}: the expert optimiser is set per expert "
                             f"set; use dataset_distillation.experts.sets.<set>.{key}")
    for key, batched in (("evaluation.batched_networks", section["evaluation"].get("batched_networks", 1)),
                         ("distill.batched_seeds", section["distill"].get("batched_seeds", 1))):
        unknown = sorted(set(batched) - {f"ipc{c['ipc']}" for c in section["ipc"]}) if isinstance(batched, dict) else []
        if unknown:
            raise ValueError(f"dataset_distillation.{key}.{unknown[0]}: no such IPC in "
                             f"dataset_distillation.ipc ({', '.join(str(c['ipc']) for c in section['ipc'])})")
    for name, entry in section["methods"].items():
        if entry.get("method") != "mtt":
            continue
        expert_set = entry["experts"]
        if expert_set not in experts["sets"]:
            raise ValueError(f"dataset_distillation.methods.{name}.experts: {expert_set!r} is not a name under "
                             f"dataset_distillation.experts.sets ({', '.join(sorted(experts['sets']))})")
        momentum = float(experts["sets"][expert_set]["momentum"])
        inner = INNER_MOMENTUM if entry["inner_momentum"] else 0.0
        if momentum != inner:
            raise ValueError(
                f"dataset_distillation.methods.{name}.inner_momentum is {entry['inner_momentum']} (inner-loop "
                f"momentum {inner}) but dataset_distillation.experts.sets.{expert_set}.momentum is {momentum}: the "
                f"inner loop must imitate the optimiser of the experts it matches")


def synthetic_dir(layout: Layout, name: str, ipc: int, seed: int) -> str:
    """Where the synthetic set `<name>_ipc<ipc>` of `seed` lives (a dataset directory)."""
    return f"{layout.checkpoints}/{STUDY}/synthetic/{name}_ipc{ipc}/seed{seed}"


def jobs(config: dict, layout: Layout) -> list[JobSpec]:
    """dd_experts_<set>, then dd_distill_<name> and dd_evaluate_<name> per method entry."""
    from lifelearn.studies import check_names

    section, seeds = config[STUDY], config["seeds"]
    check_section(section)
    ipcs = [c["ipc"] for c in section["ipc"]]
    experts = {k: v for k, v in section["experts"].items() if k != "sets"}
    root = f"{layout.results}/{STUDY}"

    def expert_files(expert_set):
        return [f"{layout.checkpoints}/{STUDY}/experts/{expert_set}/expert{i}.pt" for i in range(experts["num"])]

    def seed_files(name, filename):
        return [f"{root}/{name}_ipc{ipc}/seed{seed}/{filename}" for ipc in ipcs for seed in method_seeds(config, name)]

    def synthetic_files(name):
        return [f"{synthetic_dir(layout, name, ipc, seed)}/{f}" for ipc in ipcs for seed in method_seeds(config, name)
                for f in DATASET_FILES]

    zca = zca_job(section, layout) if section.get("zca") else None
    zca_input = {"zca": zca.outputs["zca"]} if zca else {}
    out = [JobSpec(STUDY, "experts", expert_set, f"dd_experts_{expert_set}",
                   spec={"options": options, "experts": experts, "model": section["model"], "dataset": section["dataset"],
                         **pipeline_keys(section)},
                   seeds=list(range(experts["num"])), code=CODE, datasets=(section["dataset"],), inputs=zca_input,
                   outputs={"experts": expert_files(expert_set), "summary": [f"{root}/experts/{expert_set}/summary.json"]},
                   priority=LONG_CHAIN_PRIORITY, report={"extra": [f"{root}/experts/{expert_set}/summary.json"]})
           for expert_set, options in section["experts"]["sets"].items()]
    for name, entry in section["methods"].items():
        check_names([entry["method"]], METHODS, f"dataset_distillation.methods.{name}.method")
        distills = METHODS[entry["method"]].distills
        seeds = method_seeds(config, name)
        shared = {"dataset": section["dataset"], "model": section["model"], "expert_lr": experts["train"]["lr"]}
        spec = shared | pipeline_keys(section) | ({"ipc": section["ipc"], "distill": section["distill"],
                          "experts_per_seed": experts.get("per_seed", experts["num"])}
                         if distills else {"ipc": [{"ipc": i} for i in ipcs]})
        method_cfg = {k: v for k, v in entry.items() if k not in ("seeds", "ablation")}
        out.append(JobSpec(STUDY, "distill", name, f"dd_distill_{name}", spec=spec | {"method_cfg": method_cfg}, seeds=seeds,
                           code=CODE + ("train/batched.py",),  # the stacked inner loop (distill.batched_seeds)
                           datasets=(section["dataset"],), priority=LONG_CHAIN_PRIORITY,
                           inputs=({"experts": expert_files(entry["experts"])} if distills else {}) | zca_input,
                           outputs={"synthetic": synthetic_files(name), "loss": seed_files(name, "loss.csv")},
                           report={"extra": seed_files(name, "loss.csv") + synthetic_files(name)}))
        # ablation rows are judged on the learned-step-size protocol only: no control runs
        evaluation = section["evaluation"] | ({"control_lr_grid": []} if entry.get("ablation") else {})
        keys = pipeline_keys(section)
        out.append(JobSpec(STUDY, "evaluate", name, f"dd_evaluate_{name}", seeds=seeds,
                           spec={"evaluation": evaluation, "model": section["model"], "ipcs": ipcs, **keys},
                           code=CODE + ("train/optim.py", "train/batched.py", *MODEL_EVALUATION),
                           inputs={"synthetic": synthetic_files(name)} | zca_input,
                           outputs={"metrics": seed_files(name, "metrics.json"), "history": seed_files(name, "history.csv")}))
    return ([zca] if zca else []) + out


def zca_job(section: dict, layout: Layout) -> JobSpec:
    """dd_zca: the ZCA of the study's dataset, fitted on its real train split (MTT's eps)."""
    from lifelearn.data.zca import MTT_EPS

    dataset = section["dataset"]
    return JobSpec(STUDY, "zca", dataset, "dd_zca", spec={"dataset": dataset, "eps": MTT_EPS}, seeds=[],
                   code=("studies/dataset_distillation.py", "data", *COMMON_CODE), datasets=(dataset,),
                   outputs={"zca": [f"{layout.checkpoints}/{STUDY}/zca/{dataset}.pt"]}, priority=LONG_CHAIN_PRIORITY,
                   report={})


def run(job, paths) -> list:
    """The job's step over its seeds: experts, distill or evaluate."""
    import torch

    torch.set_num_threads(job.threads)
    return {"zca": run_zca, "experts": run_experts, "distill": run_distill,
            "evaluate": run_evaluate}[job.step](job, paths)


def run_zca(job, paths) -> list:
    """Fit the ZCA on the real train split and write it (no MLflow run: a preprocessing step)."""
    from lifelearn.data import load_dataset
    from lifelearn.data.zca import fit_zca, save_zca

    ds = load_dataset(paths.input("data")[0].parent)
    save_zca(paths.output("zca")[0], fit_zca(ds.x_train, job.spec["eps"]))
    return []


def _by_ipc_seed(spec_ipcs, seeds, files) -> dict:
    """{(ipc, seed): file} over the plan's (ipc, seed) order; dataset files collapse to their directory."""
    keys = [(ipc, seed) for ipc in spec_ipcs for seed in seeds]
    return dict(zip(keys, dict.fromkeys(files)))


# ----------------------------------------------------------------------------- experts
def run_experts(job, paths) -> list:
    """Train the experts of expert set `job.name`; expert i uses seed i. Returns their
    records (not written: summary.json has them)."""
    import torch

    from lifelearn.data import load_dataset
    from lifelearn.distill import dataset_distillation as dd
    from lifelearn.io import save_torch, write_json
    from lifelearn.jobs import RunRecord
    from lifelearn.models import build_model
    from lifelearn.tracking import DatasetRef, tracked_run

    spec, data_dir = job.spec, paths.input("data")[0].parent
    train, options, model_spec = spec["experts"]["train"], spec["options"], spec["model"]
    ds = load_dataset(data_dir)
    x, xv, xt, mean, std, augment = prepared(ds, spec, zca_files=paths.input("zca"))
    y, yv, yt = (torch.as_tensor(getattr(ds, f"y_{s}")) for s in ("train", "val", "test"))
    rows, records = [], []
    params = {"model": model_spec, "train": train, **options, "zca": spec["zca"], "dsa": spec["dsa"]}
    data = DatasetRef.of(ds.name, data_dir)
    for i, path in zip(job.seeds, paths.output("experts")):
        tags = {"stage": "dd_experts", "method": job.name, "name": f"experts_{job.name}", "dataset": ds.name,
                "model": model_spec["arch"], "seed": i}
        with tracked_run(job.ctx, STUDY, f"experts/{job.name}/seed{i}", tags, {**params, "seed": i},
                         dataset=data) as run:
            torch.manual_seed(i)
            model = build_model(model_spec, ds.input_shape, ds.num_classes, mean, std)
            start = time.perf_counter()
            result = dd.train_expert(model, x, y, train, seed=i, options=options, x_val=xv, y_val=yv, augment=augment)
            seconds = time.perf_counter() - start
            payload = dd.expert_payload(model, result, model_spec, ds.input_shape, ds.num_classes)
            save_torch(path, payload)
            steps = (result["trajectory"][1:] - result["trajectory"][:-1]).norm(dim=1)
            test_acc = (dd.logits_at(model, result["trajectory"][-1], xt).argmax(1) == yt).float().mean().item()
            row = {"expert": i, "val_acc": float(result["val_acc"][-1]), "test_acc": test_acc,
                   "mean_epoch_step": float(steps.mean()), "max_epoch_step": float(steps.max()),
                   "train_seconds": round(seconds, 3)}
            run.log_series([("val_acc", a, e) for e, a in enumerate(result["val_acc"])]
                           + [(k, v, e + 1) for e, (l, s) in enumerate(zip(result["train_loss"], steps))
                              for k, v in (("train_loss", l), ("epoch_step", s))])
            metrics = {k: v for k, v in row.items() if k != "expert"}
            run.log_metrics(metrics)
            rows.append(row)
            records.append(RunRecord(STUDY, "dd_experts", tags["name"], job.name, i, ds.name, model_spec["arch"],
                                     run.run_id, job.ctx.git_commit, metrics))
    write_json(paths.output("summary")[0], {"set": job.name, "options": options, "experts": rows})
    return records


# ------------------------------------------------------------------------ distillation
def settings(spec: dict, ipc_cfg: dict, method_cfg: dict):
    """DistillSettings of one (IPC, method entry) from the distill job's spec."""
    from lifelearn.distill import dataset_distillation as dd

    d = spec["distill"]
    return dd.DistillSettings(
        ipc=ipc_cfg["ipc"], iterations=d["iterations"], syn_steps=ipc_cfg["syn_steps"],
        expert_epochs=ipc_cfg["expert_epochs"], max_start_epoch=ipc_cfg["max_start_epoch"],
        lr_img=ipc_cfg.get("lr_img", d["lr_img"]), lr_lr=d["lr_lr"], lr_init=spec["expert_lr"],
        batch_syn=ipc_cfg.get("batch_syn"), **{k: bool(method_cfg[k]) for k in dd.SWITCHES})


def write_synthetic(target: str | os.PathLike, real_dir: str | os.PathLike, x, y, lr: float, about: dict) -> Path:
    """A synthetic set in the datasets' format: train = (x, y); val and test copied from
    `real_dir` byte for byte; meta.json = the real one (name, normalisation) + lr + about."""
    import numpy as np

    from lifelearn.data.arrays import SPLITS, write_dataset
    from lifelearn.io import load_npy, read_json

    real_dir = Path(real_dir)
    meta = read_json(real_dir / "meta.json")
    arrays = {f"{k}_{s}": load_npy(real_dir / f"{k}_{s}.npy") for s in SPLITS if s != "train" for k in ("x", "y")}
    arrays |= {"x_train": np.asarray(x, np.float32), "y_train": np.asarray(y, np.int64)}
    meta |= {"splits": {**meta["splits"], "train": int(len(y))}, "lr": float(lr), "synthetic": about,
             "source": f"synthetic set ({about['method']}, IPC {about['ipc']}, seed {about['seed']}) "
                       f"of {meta['name']}; val/test copied from {meta['source']}"}
    return write_dataset(target, arrays, meta)


@dataclass
class _SeedTask:
    """One (IPC, seed) of a distill job: its experts, MLflow params and tags, work directory
    (progress file, run id); `initialise` sets init / idx, training result / seconds."""

    ipc: int
    seed: int
    name: str
    drawn: list
    trajectories: list
    params: dict
    tags: dict
    work: Path
    init: str = "random_real"
    idx: object = None
    result: dict | None = None
    seconds: float = 0.0

    @property
    def run_file(self) -> Path:
        return self.work / "mlflow_run_id"


def run_distill(job, paths) -> list:
    """Distil (or, for a `random` entry, sample) one synthetic set per IPC and seed; the
    matching loss per iteration goes to loss.csv (no rows for `random`). Returns the
    records of the MLflow runs (not written: the synthetic sets are the outputs).

    distill.batched_seeds (`per_ipc`) > 1 distils up to that many of an IPC's seeds in
    lock-step as one batched model (dd.distill_seeds, stacked); their MLflow runs are then
    opened after the chunk trains (as the evaluation's), distill_seconds is a seed's share of
    the chunk's wall time, and each work directory (progress file, run id) is cleared only when
    the whole chunk is logged, so a killed job resumes every seed of the chunk together."""
    import numpy as np
    import pandas as pd
    import torch

    from lifelearn.data import load_dataset
    from lifelearn.distill import dataset_distillation as dd
    from lifelearn.io import atomic_path, clear_work_dir, md5_file, work_dir
    from lifelearn.jobs import RunRecord
    from lifelearn.tracking import DatasetRef, tracked_run

    spec, data_dir, method = job.spec, paths.input("data")[0].parent, job.name
    entry = spec["method_cfg"]
    distills = METHODS[entry["method"]].distills
    ds = load_dataset(data_dir)
    trajectories, payload = [], None
    for p in paths.input("experts"):
        traj, payload = dd.load_trajectory(p)
        trajectories.append(traj)
    for ipc_cfg in spec["ipc"]:  # fail before any work or MLflow run
        dd.check_ipc(ds.y_train, ipc_cfg["ipc"], ds.num_classes, ds.name)
    x, _, _, mean, std, augment = prepared(ds, spec, zca_files=paths.input("zca"))
    y = torch.as_tensor(ds.y_train)
    expert_md5s = [md5_file(p) for p in paths.input("experts")]
    synthetic = _by_ipc_seed([c["ipc"] for c in spec["ipc"]], job.seeds, [p.parent for p in paths.output("synthetic")])
    losses = _by_ipc_seed([c["ipc"] for c in spec["ipc"]], job.seeds, paths.output("loss"))
    data, records = DatasetRef.of(ds.name, data_dir), []

    def plan(ipc_cfg, seed) -> _SeedTask:
        ipc = ipc_cfg["ipc"]
        drawn = expert_draw(len(trajectories), spec["experts_per_seed"], seed) if distills else []
        params = {"ipc": ipc_cfg, "method": entry, "distill": spec.get("distill", {}), "seed": seed,
                  "experts": drawn, "zca": spec["zca"], "dsa": spec["dsa"]}
        tags = {"stage": "dd_distill", "method": method, "name": f"{method}_ipc{ipc}", "dataset": ds.name,
                "model": spec["model"]["arch"], "seed": seed}
        # keyed by everything the result depends on: a changed config, expert or data never resumes
        work = work_dir(synthetic[(ipc, seed)], params, expert_md5s, data.digest)
        return _SeedTask(ipc, seed, f"{method}_ipc{ipc}", drawn, [trajectories[i] for i in drawn], params, tags, work)

    def initialise(task: _SeedTask) -> None:
        torch.manual_seed(task.seed)
        if distills and entry["representative_init"]:
            logits = dd.logits_at(dd.expert_model(payload, mean, std), task.trajectories[0][-1], x).numpy()
            task.idx = dd.representative_init(logits, ds.y_train, task.ipc, ds.num_classes, task.seed)
            task.init = f"representative (k-means on expert {task.drawn[0]}'s final logits)"
        else:
            task.idx = dd.random_real_init(ds.y_train, task.ipc, ds.num_classes, task.seed)

    def train(chunk: list[_SeedTask], ipc_cfg) -> None:
        start = time.perf_counter()
        if not distills:
            for task in chunk:
                task.result = {"x": x[task.idx], "lr": spec["expert_lr"], "history": []}
        else:
            runs = [dd.SeedRun(t.seed, t.trajectories, x[t.idx], t.work / "progress.pt") for t in chunk]
            labels = [y[t.idx] for t in chunk]
            if any(not torch.equal(lab, labels[0]) for lab in labels[1:]):
                raise ValueError("seeds batched in distillation need one label order (class-major initialisation)")
            results = dd.distill_seeds(dd.expert_model(payload, mean, std), runs, labels[0],
                                       settings(spec, ipc_cfg, entry), augment, clamp=not spec["zca"],
                                       stacked=len(chunk) > 1)
            for task, result in zip(chunk, results):
                task.result = result
        for task in chunk:
            task.seconds = (time.perf_counter() - start) / len(chunk)

    def log(run, task: _SeedTask, chunk: list[_SeedTask]) -> RunRecord:
        ipc, seed, result, idx = task.ipc, task.seed, task.result, task.idx
        history, lr = result["history"], result["lr"]
        about = {"method": method, "ipc": ipc, "seed": seed, "init": task.init, "init_indices": idx.tolist(),
                 "experts": task.drawn, "zca": spec["zca"],
                 "iterations": len(history), "seconds": round(task.seconds, 3)}
        if len(chunk) > 1:
            about["batched_seeds"] = [t.seed for t in chunk]
        target = write_synthetic(synthetic[(ipc, seed)], data_dir, result["x"].numpy(), y[idx].numpy(), lr, about)
        with atomic_path(losses[(ipc, seed)], suffix=".csv") as tmp:
            pd.DataFrame(history, columns=["iteration", "loss", "lr", "expert", "start_epoch"]).to_csv(
                tmp, index=False, float_format="%.6g")
        run.log_series((k, h[k], h["iteration"]) for h in history for k in ("loss", "lr"))
        metrics = {"syn_lr": lr, "distill_seconds": task.seconds,
                   **({"final_loss": float(np.mean([h["loss"] for h in history[-10:]]))} if history else {})}
        run.log_metrics(metrics)
        for f in ("x_train.npy", "y_train.npy", "meta.json"):
            run.log_artifact(target / f, "synthetic")
        run.log_artifact(losses[(ipc, seed)])
        return RunRecord(STUDY, "dd_distill", task.name, method, seed, ds.name, spec["model"]["arch"],
                         run.run_id, job.ctx.git_commit, metrics)

    def tracked(task: _SeedTask):
        resume_id = task.run_file.read_text().strip() if task.run_file.exists() else None
        return tracked_run(job.ctx, STUDY, f"{task.name}/seed{task.seed}/distill", task.tags, task.params,
                           resume_run_id=resume_id, dataset=data)

    for ipc_cfg in spec["ipc"]:
        tasks = [plan(ipc_cfg, seed) for seed in job.seeds]
        batch = per_ipc(spec.get("distill", {}).get("batched_seeds", 1), ipc_cfg["ipc"]) if distills else 1
        for c in range(0, len(tasks), batch):
            chunk = tasks[c:c + batch]
            if len(chunk) == 1:  # the run is open while the seed distils (resumed by its id after a kill)
                task = chunk[0]
                with tracked(task) as run:
                    task.work.mkdir(parents=True, exist_ok=True)
                    task.run_file.write_text(run.run_id)
                    initialise(task)
                    train(chunk, ipc_cfg)
                    records.append(log(run, task, chunk))
            else:
                for task in chunk:
                    task.work.mkdir(parents=True, exist_ok=True)
                    initialise(task)
                train(chunk, ipc_cfg)
                for task in chunk:
                    with tracked(task) as run:
                        task.run_file.write_text(run.run_id)
                        records.append(log(run, task, chunk))
            for task in chunk:
                clear_work_dir(task.work)
    return records


# -------------------------------------------------------------------------- evaluation
def train_on_synthetic(ds, model_spec: dict, train_cfg: dict, lr: float, seed: int, val_every: int = 1,
                       arrays=None):
    """Train one fresh network on the synthetic train split of `ds` alone, as MTT's
    utils.evaluate_synset: SGD (train_cfg: momentum 0.9, weight decay 5e-4, batch 256,
    lr x0.1 at the milestone) from step size `lr`, a plain PyTorch loop (at 10-100 images an
    epoch is one step, and Lightning's per-epoch overhead would dominate 1000 epochs), no
    augmentation; returns the LAST epoch's test and val metrics (never a selected epoch) and
    the val history every `val_every` epochs. `arrays`: `prepared(...)` of the set (ZCA'd
    x arrays, model normalisation, DSA on each training batch as MTT's evaluation); default
    the set as stored with its own normalisation and no augmentation. The reference of
    `train_networks_batched`, which trains several such networks as one model."""
    import torch
    from torch.nn import functional as F

    from lifelearn.models import build_model
    from lifelearn.train.optim import build_optimizer, build_scheduler

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, xv, xt, mean, std, augment = _arrays(ds, arrays)
    y = torch.as_tensor(ds.y_train)
    model = build_model(model_spec, ds.input_shape, ds.num_classes, mean, std)
    cfg = {**train_cfg, "lr": float(lr)}
    opt = build_optimizer(model.parameters(), cfg)
    sched = build_scheduler(opt, cfg)
    epochs, bs, history = cfg["epochs"], cfg["batch_size"], []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for b in range(0, len(y), bs):
            idx = order[b:b + bs]
            xb = x[idx] if augment is None else augment(x[idx], seed=int(torch.randint(2**31, (1,), generator=gen)))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
        if (epoch + 1) % val_every == 0 or epoch + 1 == epochs:
            history.append(_val_row(model, ds, xv, epoch, loss.item(), opt.param_groups[0]["lr"]))
    return _last_epoch(model, ds, xt, lr, epochs, history), history


def _arrays(ds, arrays):
    """`arrays` (prepared(...) of the set) or the set as stored, its normalisation, no augmentation."""
    import torch

    return arrays or (*(torch.as_tensor(getattr(ds, f"x_{s}")) for s in ("train", "val", "test")), ds.mean, ds.std,
                      None)


def _val_row(model, ds, xv, epoch: int, train_loss: float, lr: float) -> dict:
    """One history row: the epoch's last training loss, val accuracy and loss, step size."""
    import torch

    from lifelearn.evaluate.classification import evaluate_classifier

    model.eval()
    val = evaluate_classifier(model, xv, torch.as_tensor(ds.y_val), ds.num_classes, prefix="val")
    return {"epoch": epoch, "train_loss": train_loss, "val_acc": val["val_acc"], "val_loss": val["val_loss"], "lr": lr}


def _last_epoch(model, ds, xt, lr: float, epochs: int, history: list) -> dict:
    """The LAST epoch's test metrics and val accuracy (never a selected epoch)."""
    import torch

    from lifelearn.evaluate.classification import evaluate_classifier

    model.eval()
    metrics = evaluate_classifier(model, xt, torch.as_tensor(ds.y_test), ds.num_classes)
    return metrics | {"val_acc": history[-1]["val_acc"], "lr": float(lr), "epochs": epochs}


@dataclass(frozen=True)
class Network:
    """One fresh evaluation network: the set it trains on (`ds`, its `arrays`), step size, seed."""

    ds: object
    arrays: tuple | None
    lr: float
    seed: int


def train_networks(networks: list[Network], model_spec: dict, train_cfg: dict, val_every: int = 1,
                   batch: int = 1) -> list[tuple[dict, list]]:
    """(metrics, history) of each network, as `train_on_synthetic` trains it alone. With
    batch > 1, up to `batch` networks whose training sets have one shape train as one
    seed-batched model (`train_networks_batched`), equal to their runs alone within float
    tolerance (tests/test_dataset_distillation_report.py)."""
    if batch <= 1:
        return [train_on_synthetic(n.ds, model_spec, train_cfg, n.lr, n.seed, val_every, n.arrays) for n in networks]
    groups: dict = {}
    for i, n in enumerate(networks):
        groups.setdefault(tuple(_arrays(n.ds, n.arrays)[0].shape), []).append(i)
    results: list = [None] * len(networks)
    for members in groups.values():
        for c in range(0, len(members), batch):
            chunk = members[c:c + batch]
            for i, result in zip(chunk, train_networks_batched([networks[i] for i in chunk], model_spec, train_cfg,
                                                                 val_every)):
                results[i] = result
    return results


def train_networks_batched(networks: list[Network], model_spec: dict, train_cfg: dict,
                           val_every: int = 1) -> list[tuple[dict, list]]:
    """`train_on_synthetic` for K networks at once (issue 16, part 3): their parameters stacked
    (train/batched.py, `StackedModels`; the instance-norm ConvNet has no running statistics,
    so batching is exact up to float rounding), one `StackedSGD` with each network's own step
    size, each network's own init (torch.manual_seed(seed) before it is built), data order and
    augmentation seeds (its own generator, drawn in the sequential order); val every
    `val_every` epochs and the last epoch's test metrics per network, from its own copy."""
    import torch

    from lifelearn.models import build_model
    from lifelearn.train.batched import StackedModels, fit_batched

    sets, models, gens = [_arrays(n.ds, n.arrays) for n in networks], [], []
    for n, (_, _, _, mean, std, _) in zip(networks, sets):
        torch.manual_seed(n.seed)
        models.append(build_model(model_spec, n.ds.input_shape, n.ds.num_classes, mean, std))
        gens.append(torch.Generator().manual_seed(n.seed))
    stacked = StackedModels(models)
    x = torch.stack([s[0] for s in sets])
    y = torch.stack([torch.as_tensor(n.ds.y_train) for n in networks])
    epochs, histories = train_cfg["epochs"], [[] for _ in networks]

    def augment(k, xb):
        return sets[k][5](xb, seed=int(torch.randint(2**31, (1,), generator=gens[k])))

    def on_epoch(epoch, last_losses, optimizer):
        if (epoch + 1) % val_every == 0 or epoch + 1 == epochs:
            for k, model in enumerate(stacked.write_back()):
                histories[k].append(_val_row(model, networks[k].ds, sets[k][1], epoch, float(last_losses[k]),
                                             networks[k].lr * optimizer.param_groups[0]["lr"]))

    fit_batched(stacked, x, y, train_cfg, lambda k, epoch, n: torch.randperm(n, generator=gens[k]),
                augment=augment if sets[0][5] is not None else None,
                model_lr=[n.lr for n in networks], on_epoch=on_epoch)
    return [(_last_epoch(model, n.ds, s[2], n.lr, epochs, h), h)
            for model, n, s, h in zip(stacked.write_back(), networks, sets, histories)]


def control_networks(ds, ev: dict, seed: int, arrays=None) -> list[Network]:
    """The fixed-step-size control: one network per step size of evaluation.control_lr_grid
    (seed `seed`), whose last-epoch val and test accuracy the metrics keep. The report picks,
    per IPC, the ONE grid value with the highest mean val accuracy over every method and
    seed, and reports every method's test accuracy at it, so no method can win only through
    its learned step size (test accuracy is never used to choose)."""
    return [Network(ds, arrays, float(lr), seed) for lr in ev.get("control_lr_grid", [])]


def per_ipc(value, ipc: int) -> int:
    """A batching setting at IPC `ipc`: one integer for every IPC or {ipc<n>: value} (1 where
    an IPC is not named)."""
    return value.get(f"ipc{ipc}", 1) if isinstance(value, dict) else value


def batched_networks(ev: dict, ipc: int) -> int:
    """How many of IPC `ipc`'s evaluation networks train as one batched model:
    evaluation.batched_networks (`per_ipc`)."""
    return per_ipc(ev.get("batched_networks", 1), ipc)


@phases.timed("training")
def _train_evaluation_networks(sets: dict, ev: dict, model_spec: dict, batch: int) -> dict:
    """{seed: (networks' (metrics, history), control rows)} of one IPC's synthetic sets
    ({seed: (ds, arrays, lr)}): evaluation.networks fresh networks at the set's step size
    (seeds seed * 1000 + k) and the control networks (seed seed * 1000 + networks), up to
    `batch` of them trained as one batched model (1: one by one)."""
    plan = {seed: ([Network(ds, arrays, lr, seed * 1000 + k) for k in range(ev["networks"])],
                   control_networks(ds, ev, seed * 1000 + ev["networks"], arrays))
            for seed, (ds, arrays, lr) in sets.items()}
    flat = [n for nets, control in plan.values() for n in nets + control]
    results = iter(train_networks(flat, model_spec, ev["train"], ev.get("val_every", 1), batch))
    out = {}
    for seed, (nets, control) in plan.items():
        trained = [next(results) for _ in nets]
        out[seed] = (trained, [{"lr": n.lr, **{k: m[k] for k in ("val_acc", "test_acc")}}
                               for n, (m, _) in zip(control, (next(results) for _ in control))])
    return out


def run_evaluate(job, paths) -> list:
    """K = evaluation.networks fresh networks per synthetic set; per (IPC, seed) a
    metrics.json (test_acc = mean over the K networks, last epoch) and history.csv. The
    networks of one IPC (every seed's, and the control's) train before the seeds' MLflow
    runs, batched as evaluation.batched_networks says for that IPC; train_seconds is a
    seed's share of its IPC's training wall time."""
    import numpy as np

    from lifelearn.data import load_dataset
    from lifelearn.io import read_json
    from lifelearn.jobs import RunRecord
    from lifelearn.tracking import DatasetRef, tracked_run
    from lifelearn.train.runner import write_history

    import torch

    spec, method = job.spec, job.name
    ev, model_spec = spec["evaluation"], spec["model"]
    if spec["zca"] and not paths.input("zca"):  # a synthetic set is whitened with the REAL split's fit
        raise ValueError("dataset_distillation.zca: the evaluation needs the dd_zca job's fit (input 'zca')")
    synthetic = _by_ipc_seed(spec["ipcs"], job.seeds, [p.parent for p in paths.input("synthetic")])
    outputs = _by_ipc_seed(spec["ipcs"], job.seeds, zip(paths.output("metrics"), paths.output("history")))
    records = []
    for ipc in spec["ipcs"]:
        name = f"{method}_ipc{ipc}"
        sets = {}
        for seed in job.seeds:
            ds = load_dataset(synthetic[(ipc, seed)])
            # the stored synthetic images are already whitened: only val/test need the real split's fit
            arrays = prepared(ds, spec, zca_files=paths.input("zca"))
            if spec["zca"]:
                arrays = (torch.as_tensor(ds.x_train), *arrays[1:])
            sets[seed] = (ds, arrays, float(read_json(synthetic[(ipc, seed)] / "meta.json")["lr"]))
        start = time.perf_counter()
        trained = _train_evaluation_networks(sets, ev, model_spec, batched_networks(ev, ipc))
        seconds = round((time.perf_counter() - start) / len(job.seeds), 3)
        for seed in job.seeds:
            syn = synthetic[(ipc, seed)]
            metrics_path, history_path = outputs[(ipc, seed)]
            ds_name = read_json(syn / "meta.json")["name"]
            tags = {"stage": STUDY, "method": method, "name": name, "dataset": ds_name, "model": model_spec["arch"],
                    "seed": seed}
            nets, control = trained[seed]
            history = [{"network": k, **row} for k, (_, h) in enumerate(nets) for row in h]
            accs = [m["test_acc"] for m, _ in nets]
            metrics = {"test_acc": float(np.mean(accs)), "test_acc_networks": accs,
                       "test_acc_std_networks": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                       "test_loss": float(np.mean([m["test_loss"] for m, _ in nets])),
                       "val_acc": float(np.mean([m["val_acc"] for m, _ in nets])), "ipc": ipc,
                       "syn_lr": sets[seed][2], "networks": len(nets), "epochs": ev["train"]["epochs"],
                       "control": control, "train_seconds": seconds}
            with tracked_run(job.ctx, STUDY, f"{name}/seed{seed}", tags,
                             {"evaluation": ev, "model": model_spec, "ipc": ipc, "seed": seed},
                             dataset=DatasetRef.of(f"{ds_name}-{name}-seed{seed}", syn)) as run:
                record = RunRecord(STUDY, STUDY, name, method, seed, ds_name, model_spec["arch"], run.run_id,
                                   job.ctx.git_commit, metrics, {"synthetic_set": str(syn)})
                write_history(history_path, history)
                record.write(metrics_path)
                run.log_metrics({k: v for k, v in metrics.items() if not isinstance(v, list)})
                run.log_artifact(metrics_path)
                run.log_artifact(history_path)
                records.append(record)
    return records
