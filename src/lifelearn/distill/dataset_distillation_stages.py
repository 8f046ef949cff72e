"""Stages of the `dataset_distillation` study (PAPERS.md section 4), each a plain function
called by one Snakemake job:

- `train_experts`: N experts of one expert set (plain or smooth) on the real train split,
  one compact trajectory file per expert (checkpoints/<profile>/dataset_distillation/experts/).
- `distill_method`: one method (`random` real subset, or trajectory matching with its
  switches) for every IPC and seed; each synthetic set is written in the datasets' array
  format (x_train/y_train = the synthetic set, x/y_val and x/y_test copied from the real
  dataset, meta.json = the real one plus "lr" and "synthetic"), so any stage can train on it.
- `evaluate_method`: K fresh networks per synthetic set, trained by the Lightning
  classifier on the synthetic train split alone; test accuracy of the LAST epoch.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lifelearn.data import load_dataset
from lifelearn.data.arrays import SPLITS, write_dataset
from lifelearn.distill import dataset_distillation as dd
from lifelearn.io import atomic_path, clear_work_dir, load_npy, md5_file, md5_tree, read_json, work_dir, write_json
from lifelearn.models import build_model
from lifelearn.tracking import RunContext, tracked_run

STUDY = "dataset_distillation"
BASELINE = "random"  # the random real subset: no distillation


# ----------------------------------------------------------------------------- experts
def train_experts(set_name: str, cfg: dict, data_dir: str | os.PathLike, expert_paths: list,
                  summary_path: str | os.PathLike, ctx: RunContext, threads: int = 1) -> dict:
    """Train cfg["experts"]["num"] experts of expert set `set_name`; expert i uses seed i."""
    torch.set_num_threads(threads)
    experts, options = cfg["experts"], cfg["experts"]["sets"][set_name]
    if len(expert_paths) != experts["num"]:
        raise ValueError(f"{len(expert_paths)} expert paths for {experts['num']} experts")
    ds = load_dataset(data_dir)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    xv, yv = torch.as_tensor(ds.x_val), torch.as_tensor(ds.y_val)
    xt, yt = torch.as_tensor(ds.x_test), torch.as_tensor(ds.y_test)
    rows = []
    params = {"model": cfg["model"], "train": experts["train"], **options}
    for i, path in enumerate(expert_paths):
        tags = {"stage": "dd_experts", "method": set_name, "name": f"experts_{set_name}", "dataset": ds.name,
                "model": cfg["model"]["arch"], "seed": i, "dataset_md5": md5_tree(data_dir)}
        with tracked_run(ctx, STUDY, f"experts/{set_name}/expert{i}", tags, {**params, "seed": i}) as run:
            torch.manual_seed(i)
            model = build_model(cfg["model"], ds.input_shape, ds.num_classes, ds.mean, ds.std)
            start = time.perf_counter()
            result = dd.train_expert(model, x, y, experts["train"], seed=i, clip_loss=options["clip_loss"],
                                     grad_penalty=options["grad_penalty"], x_val=xv, y_val=yv)
            seconds = time.perf_counter() - start
            payload = dd.expert_payload(model, result, cfg["model"], ds.input_shape, ds.num_classes)
            with atomic_path(path, suffix=".pt") as tmp:
                torch.save(payload, tmp)
            steps = (result["trajectory"][1:] - result["trajectory"][:-1]).norm(dim=1)
            test_acc = (dd.logits_at(model, result["trajectory"][-1], xt).argmax(1) == yt).float().mean().item()
            row = {"expert": i, "val_acc": float(result["val_acc"][-1]), "test_acc": test_acc,
                   "mean_epoch_step": float(steps.mean()), "max_epoch_step": float(steps.max()),
                   "train_seconds": round(seconds, 3)}
            run.log_series([("val_acc", a, e) for e, a in enumerate(result["val_acc"])]
                           + [(k, v, e + 1) for e, (l, s) in enumerate(zip(result["train_loss"], steps))
                              for k, v in (("train_loss", l), ("epoch_step", s))])
            run.log_metrics({k: v for k, v in row.items() if k != "expert"})
            rows.append(row)
    summary = {"set": set_name, "options": options, "experts": rows}
    write_json(summary_path, summary)
    return summary


# ------------------------------------------------------------------------ distillation
def settings(cfg: dict, ipc_cfg: dict, method_cfg: dict) -> dd.DistillSettings:
    """DistillSettings of one (IPC, method) from the study config."""
    d = cfg["distill"]
    return dd.DistillSettings(
        ipc=ipc_cfg["ipc"], iterations=d["iterations"], syn_steps=ipc_cfg["syn_steps"],
        expert_epochs=ipc_cfg["expert_epochs"], max_start_epoch=ipc_cfg["max_start_epoch"],
        lr_img=ipc_cfg.get("lr_img", d["lr_img"]), lr_lr=d["lr_lr"], lr_init=cfg["experts"]["train"]["lr"],
        batch_syn=ipc_cfg.get("batch_syn"), **{k: bool(method_cfg[k]) for k in dd.SWITCHES})


def write_synthetic(target: str | os.PathLike, real_dir: str | os.PathLike, x: np.ndarray, y: np.ndarray,
                    lr: float, about: dict) -> Path:
    """A synthetic set in the datasets' format: train = (x, y); val and test copied from
    `real_dir` byte for byte; meta.json = the real one (name, normalisation) + lr + about."""
    real_dir = Path(real_dir)
    meta = read_json(real_dir / "meta.json")
    arrays = {f"{k}_{s}": load_npy(real_dir / f"{k}_{s}.npy") for s in SPLITS if s != "train" for k in ("x", "y")}
    arrays |= {"x_train": np.asarray(x, np.float32), "y_train": np.asarray(y, np.int64)}
    meta |= {"splits": {**meta["splits"], "train": int(len(y))}, "lr": float(lr), "synthetic": about,
             "source": f"synthetic set ({about['method']}, IPC {about['ipc']}, seed {about['seed']}) "
                       f"of {meta['name']}; val/test copied from {meta['source']}"}
    return write_dataset(target, arrays, meta)


def distill_method(method: str, cfg: dict, seeds: list[int], data_dir: str | os.PathLike, expert_paths: list,
                   synthetic_dirs: dict, loss_paths: dict, ctx: RunContext, threads: int = 1) -> list[dict]:
    """Distil (or, for `random`, sample) one synthetic set per IPC and seed.

    `synthetic_dirs[(ipc, seed)]` and `loss_paths[(ipc, seed)]` are the outputs; the matching
    loss per iteration goes to loss.csv (no rows for `random`)."""
    torch.set_num_threads(threads)
    ds = load_dataset(data_dir)
    method_cfg = None if method == BASELINE else cfg["methods"][method]
    trajectories, payload = [], None
    for p in expert_paths:
        traj, payload = dd.load_trajectory(p)
        trajectories.append(traj)
    for ipc_cfg in cfg["ipc"]:  # fail before any work or MLflow run
        dd.check_ipc(ds.y_train, ipc_cfg["ipc"], ds.num_classes, ds.name)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    expert_md5s = [md5_file(p) for p in expert_paths]
    out = []
    for ipc_cfg in cfg["ipc"]:
        ipc = ipc_cfg["ipc"]
        for seed in seeds:
            name = f"{method}_ipc{ipc}"
            tags = {"stage": "dd_distill", "method": method, "name": name, "dataset": ds.name,
                    "model": cfg["model"]["arch"], "seed": seed, "dataset_md5": md5_tree(data_dir)}
            params = {"ipc": ipc_cfg, "method": method_cfg or {}, "distill": cfg.get("distill", {}), "seed": seed}
            # keyed by everything the result depends on: a changed config, expert or data never resumes
            work = work_dir(synthetic_dirs[(ipc, seed)], params, expert_md5s, tags["dataset_md5"])
            run_file = work / "mlflow_run_id"
            resume_id = run_file.read_text().strip() if run_file.exists() else None
            with tracked_run(ctx, STUDY, f"{name}/seed{seed}/distill", tags, params, resume_run_id=resume_id) as run:
                work.mkdir(parents=True, exist_ok=True)
                run_file.write_text(run.run_id)
                torch.manual_seed(seed)
                init = "random_real"
                if method_cfg is not None and method_cfg["representative_init"]:
                    final = trajectories[seed % len(trajectories)][-1]
                    model = dd.expert_model(payload, ds.mean, ds.std)
                    logits = dd.logits_at(model, final, x).numpy()
                    idx = dd.representative_init(logits, ds.y_train, ipc, ds.num_classes, seed)
                    init = f"representative (k-means on expert {seed % len(trajectories)}'s final logits)"
                else:
                    idx = dd.random_real_init(ds.y_train, ipc, ds.num_classes, seed)
                start = time.perf_counter()
                if method_cfg is None:
                    x_syn, lr, history = x[idx], cfg["experts"]["train"]["lr"], []
                else:
                    model = dd.expert_model(payload, ds.mean, ds.std)
                    result = dd.distill(model, trajectories, x[idx], y[idx], settings(cfg, ipc_cfg, method_cfg), seed,
                                        progress=work / "progress.pt")
                    x_syn, lr, history = result["x"], result["lr"], result["history"]
                seconds = time.perf_counter() - start
                about = {"method": method, "ipc": ipc, "seed": seed, "init": init, "init_indices": idx.tolist(),
                         "iterations": len(history), "seconds": round(seconds, 3)}
                target = write_synthetic(synthetic_dirs[(ipc, seed)], data_dir, x_syn.numpy(), y[idx].numpy(), lr, about)
                with atomic_path(loss_paths[(ipc, seed)], suffix=".csv") as tmp:
                    pd.DataFrame(history, columns=["iteration", "loss", "lr", "expert", "start_epoch"]).to_csv(
                        tmp, index=False, float_format="%.6g")
                run.log_series((k, h[k], h["iteration"]) for h in history for k in ("loss", "lr"))
                run.log_metrics({"syn_lr": lr, "distill_seconds": seconds,
                                 **({"final_loss": float(np.mean([h["loss"] for h in history[-10:]]))} if history else {})})
                for f in ("x_train.npy", "y_train.npy", "meta.json"):
                    run.log_artifact(target / f, "synthetic")
                run.log_artifact(loss_paths[(ipc, seed)])
            clear_work_dir(work)
            out.append({"name": name, "seed": seed, "lr": lr, "seconds": seconds})
    return out


# -------------------------------------------------------------------------- evaluation
def train_on_synthetic(synthetic_dir, model_spec: dict, eval_cfg: dict, trainer_cfg: dict, seed: int) -> tuple[dict, list]:
    """Train one fresh network on a synthetic set (ClassifierModule through
    train.runner.train_and_test, validating every `val_every` epochs, without checkpoints
    or logger) with the set's step size `lr` from meta.json and no augmentation (its
    meta.json keeps the real set's); test accuracy and loss of the last epoch, its history."""
    from lifelearn.train.module import ClassifierModule
    from lifelearn.train.runner import train_and_test

    ds = load_dataset(synthetic_dir)
    lr = float(read_json(Path(synthetic_dir) / "meta.json")["lr"])
    train_cfg = {**eval_cfg["train"], "lr": lr, "augment": "none"}
    metrics, module = train_and_test(ds, model_spec, train_cfg, lambda model, _: ClassifierModule(model, train_cfg),
                                     seed, trainer_cfg, val_every=eval_cfg.get("val_every", 1))
    return metrics | {"lr": lr}, module.history


def evaluate_method(method: str, cfg: dict, seeds: list[int], synthetic_dirs: dict, outputs: dict,
                    ctx: RunContext, trainer_cfg: dict, threads: int = 1) -> list[dict]:
    """K = cfg["evaluation"]["networks"] fresh networks per synthetic set; per (IPC, seed) a
    metrics.json (test_acc = mean over the K networks, last epoch) and history.csv."""
    from lifelearn.train.runner import write_history

    torch.set_num_threads(threads)
    ev = cfg["evaluation"]
    records = []
    for ipc_cfg in cfg["ipc"]:
        ipc = ipc_cfg["ipc"]
        name = f"{method}_ipc{ipc}"
        for seed in seeds:
            syn = Path(synthetic_dirs[(ipc, seed)])
            metrics_path, history_path = outputs[(ipc, seed)]
            ds_name = read_json(syn / "meta.json")["name"]
            tags = {"stage": STUDY, "method": method, "name": name, "dataset": ds_name,
                    "model": cfg["model"]["arch"], "seed": seed, "dataset_md5": md5_tree(syn)}
            with tracked_run(ctx, STUDY, f"{name}/seed{seed}", tags, {"evaluation": ev, "model": cfg["model"], "ipc": ipc,
                                                                     "seed": seed}) as run:
                start = time.perf_counter()
                nets, history = [], []
                for k in range(ev["networks"]):
                    m, h = train_on_synthetic(syn, cfg["model"], ev, trainer_cfg, seed * 1000 + k)
                    nets.append(m)
                    history += [{"network": k, **row} for row in h]
                accs = [m["test_acc"] for m in nets]
                metrics = {"test_acc": float(np.mean(accs)), "test_acc_networks": accs,
                           "test_acc_std_networks": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                           "test_loss": float(np.mean([m["test_loss"] for m in nets])),
                           "val_acc": float(np.mean([m["val_acc"] for m in nets])), "ipc": ipc,
                           "syn_lr": nets[0]["lr"], "networks": len(nets), "epochs": ev["train"]["epochs"],
                           "train_seconds": round(time.perf_counter() - start, 3)}
                record = {"study": STUDY, "stage": STUDY, "name": name, "method": method, "seed": seed,
                          "dataset": ds_name, "model": cfg["model"]["arch"], "run_id": run.run_id,
                          "git_commit": ctx.git_commit, "synthetic_set": str(syn), "metrics": metrics}
                write_history(history_path, history)
                write_json(metrics_path, record)
                run.log_metrics({k: v for k, v in metrics.items() if not isinstance(v, list)})
                run.log_artifact(metrics_path)
                run.log_artifact(history_path)
                records.append(record)
    return records
