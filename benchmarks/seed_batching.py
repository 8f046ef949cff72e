"""Seed-batched training (lifelearn.train.batched) vs the same K seeds trained one after
another, in one process on the same data, batch size and number of steps (issue 16, part 3).

    python benchmarks/seed_batching.py [--ks 5 20] [--repeats 3] [--threads 1] [--cases NAME ...]

Cases (the pipeline's configurations; sizes cut where noted so the whole run stays short):
  continual_online   digits MLP [100, 100], class-incremental 5 tasks, 1 epoch of batch 10, SGD 0.1
  continual_offline  digits MLP [100, 100], 5 tasks, 5 epochs of batch 32, SGD 0.05
  teacher_mlp        MNIST-1D MLP [256, 256], batch 128, Adam + cosine (first 2048 samples, 2 epochs)
  teacher_convnet    MNIST-1D ConvNet [32, 64, 64] norm "batch" (the configured teacher), "instance"
                     and "none", same train settings
  kd_student         MNIST-1D MLP [64] student, vanilla KD (a 0.5, tau 4) from its own frozen
                     BatchNorm ConvNet teacher [32, 64, 64] (eval mode: batchable)
  pgd_student        MNIST-1D MLP [64] student, PGD-AT (PGD-3, eps 0.03)
  mtard_pgd_student  the MTARD study's student, ConvNet [16, 32] BatchNorm, PGD-AT with the study's
                     training attack (PGD-5, eps 0.03, step 0.015, normal start), 1 epoch
  dd_evaluation_ipc1, dd_evaluation_ipc10
                     the DD study's evaluation networks (studies/dataset_distillation.py
                     train_networks, batch 1 vs K): digits ConvNet [16, 32] instance norm on
                     K random real sets of 1 / 10 images per class (the `random` method's
                     draw), each its own step size, the default's SGD 0.9 / wd 5e-4 / batch
                     256, 100 of its 1000 epochs
  dd_distill_ipc1, dd_distill_ipc10
                     the DD study's distillation (distill/dataset_distillation.py, K `distill` runs vs
                     one `distill_seeds(..., stacked=True)`): plain MTT on 2 plain experts (digits
                     ConvNet [16, 32] instance norm, 15 epochs), the default's IPC settings (20
                     unrolled steps / max start 2 at IPC 1, 10 / 8 at IPC 10), 10 of its 100 iterations
  lightning_teacher_mlp, lightning_teacher_convnet
                     the teachers study's natural training as the pipeline runs it: train.runner's
                     train_and_test (Lightning, ClassifierModule) per seed vs batched_train_and_test
                     (one StackedClassifierModule, `seed_batched: true`), teacher_mlp's and the
                     BatchNorm teacher_convnet's settings, per-epoch validation and the test metrics
The other cases run on both sides the plain loop of train/batched.py (`fit_single` vs `fit_batched`): the
sequential side is the cheapest sequential path (no Lightning, no per-step evaluation), so
the ratios are a lower bound on what batching saves against the pipeline's Lightning jobs.
Prints per case the seconds of both, the throughput ratio sequential / batched and
writes benchmarks/results/seed_batching.json. Timings depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.distill.kd import fused_loss, per_sample_ce, per_sample_kd
from lifelearn.evaluate.robustness import pgd_from_config
from lifelearn.io import write_json
from lifelearn.models import build_model
from lifelearn.train.batched import StackedModels, fit_batched, fit_single, kd_loss, pgd_loss, template_order

ROOT = Path(__file__).resolve().parents[1]
ADAM = {"optimizer": "adam", "lr": 0.003, "weight_decay": 0.0001, "schedule": "cosine", "batch_size": 128, "epochs": 2}
ATTACK = {"eps": 0.03, "step_size": 0.025, "steps": 3, "random_start": "uniform"}
MTARD_ATTACK = {"eps": 0.03, "step_size": 0.015, "steps": 5, "random_start": "normal"}  # config/studies/mtard.yaml


def dataset(name: str):
    if not (ROOT / "data" / name / "meta.json").exists():
        prepare_dataset(name, data_root=ROOT / "data")
    return load_dataset(ROOT / "data" / name)


def class_tasks(x, y, n_tasks=5):
    """A class-incremental split: task t holds classes (2t, 2t + 1)."""
    return [(x[(y == 2 * t) | (y == 2 * t + 1)], y[(y == 2 * t) | (y == 2 * t + 1)]) for t in range(n_tasks)]


def build(ds, spec, seed):
    torch.manual_seed(seed)
    return build_model(spec, ds.input_shape, ds.num_classes, ds.mean, ds.std)


def run_sequential(ds, spec, tasks, cfg, seeds, loss_for=None):
    for k, s in enumerate(seeds):
        model, g = build(ds, spec, s), torch.Generator().manual_seed(s)
        for x, y in tasks:  # the optimiser is rebuilt per task, as in the continual template
            fit_single(model, x, y, cfg, lambda e, n: torch.randperm(n, generator=g),
                       loss_for(k) if loss_for else None)


def run_batched(ds, spec, tasks, cfg, seeds, loss=None):
    stacked, order = StackedModels([build(ds, spec, s) for s in seeds]), template_order(seeds)
    for x, y in tasks:
        fit_batched(stacked, x, y, cfg, order, **({"loss": loss(stacked)} if loss else {}))
    stacked.write_back()


def cases(digits, mnist1d):
    dx, dy = torch.as_tensor(digits.x_train), torch.as_tensor(digits.y_train)
    mx, my = torch.as_tensor(mnist1d.x_train)[:2048], torch.as_tensor(mnist1d.y_train)[:2048]
    mlp100, student = {"arch": "mlp", "hidden": [100, 100]}, {"arch": "mlp", "hidden": [64]}
    yield "continual_online", digits, mlp100, class_tasks(dx, dy), {"epochs": 1, "batch_size": 10, "optimizer": "sgd",
                                                                   "lr": 0.1}, None
    yield "continual_offline", digits, mlp100, class_tasks(dx, dy), {"epochs": 5, "batch_size": 32, "optimizer": "sgd",
                                                                    "lr": 0.05}, None
    yield "teacher_mlp", mnist1d, {"arch": "mlp", "hidden": [256, 256]}, [(mx, my)], ADAM, None
    for norm in ("batch", "instance", "none"):
        yield f"teacher_convnet_{norm}", mnist1d, {"arch": "convnet", "channels": [32, 64, 64], "norm": norm}, \
            [(mx, my)], ADAM, None
    yield "kd_student", mnist1d, student, [(mx, my)], ADAM, "kd"
    yield "pgd_student", mnist1d, student, [(mx, my)], {**ADAM, "epochs": 1}, ("pgd", ATTACK)
    yield "mtard_pgd_student", mnist1d, {"arch": "convnet", "channels": [16, 32]}, [(mx, my)], \
        {**ADAM, "epochs": 1}, ("pgd", MTARD_ATTACK)


def losses(kind, ds, seeds):
    """(per-seed sequential loss, batched loss factory) for KD / PGD-AT; (None, None) for CE."""
    if kind == "kd":
        teachers = [build(ds, {"arch": "convnet", "channels": [32, 64, 64]}, 100 + s).eval() for s in seeds]

        def seq(k):
            def loss(m, xb, yb):
                with torch.no_grad():
                    t = teachers[k](xb)
                s = m(xb)
                return fused_loss(0.5, per_sample_kd(s, t, 4.0), per_sample_ce(s, yb))
            return loss
        return seq, lambda stacked: kd_loss(StackedModels(teachers, training=False), 0.5, 4.0)
    if kind and kind[0] == "pgd":
        attack = kind[1]

        def seq(k):
            g = torch.Generator().manual_seed(1000 + seeds[k])
            return lambda m, xb, yb: F.cross_entropy(m(pgd_from_config(m, xb, yb, attack, g)), yb)
        return seq, lambda stacked: pgd_loss(attack, [torch.Generator().manual_seed(1000 + s) for s in seeds])
    return None, None


DD_MODEL = {"arch": "convnet", "channels": [16, 32], "norm": "instance"}
DD_TRAIN = {"epochs": 100, "batch_size": 256, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0005,
            "schedule": "multistep", "milestones": [51], "gamma": 0.1}


class _RandomSet:
    """A synthetic-set stand-in: the `random` method's draw of `ipc` real images per class."""

    def __init__(self, ds, ipc: int, seed: int):
        from lifelearn.distill.dataset_distillation import random_real_init

        idx = random_real_init(ds.y_train, ipc, ds.num_classes, seed)
        self.x_train, self.y_train = ds.x_train[idx], ds.y_train[idx]
        self.x_val, self.y_val, self.x_test, self.y_test = ds.x_val, ds.y_val, ds.x_test, ds.y_test
        self.input_shape, self.num_classes, self.mean, self.std = ds.input_shape, ds.num_classes, ds.mean, ds.std


def dd_evaluation(digits, ipc: int, k: int, batch: int) -> None:
    from lifelearn.studies.dataset_distillation import Network, train_networks

    nets = [Network(_RandomSet(digits, ipc, s), None, 0.01 * (1 + s % 4), s) for s in range(k)]
    train_networks(nets, DD_MODEL, DD_TRAIN, 100, batch)


DD_IPC = {1: {"syn_steps": 20, "expert_epochs": 2, "max_start_epoch": 2},
          10: {"syn_steps": 10, "expert_epochs": 2, "max_start_epoch": 8}}


def dd_experts(digits) -> list:
    """Two plain experts (MTT's buffer.py: SGD, no momentum) of the DD study's ConvNet."""
    from lifelearn.distill import dataset_distillation as dd

    x, y = torch.as_tensor(digits.x_train), torch.as_tensor(digits.y_train)
    out = []
    for seed in range(2):
        torch.manual_seed(seed)
        model = build_model(DD_MODEL, digits.input_shape, digits.num_classes, digits.mean, digits.std)
        out.append(dd.train_expert(model, x, y, {"epochs": 15, "batch_size": 64, "lr": 0.03}, seed=seed)["trajectory"])
    return out


def dd_distill(digits, experts, ipc: int, k: int, batched: bool) -> None:
    from lifelearn.distill import dataset_distillation as dd

    s = dd.DistillSettings(ipc=ipc, iterations=10, lr_img=0.3, lr_lr=0.01, lr_init=0.03, **DD_IPC[ipc])
    model = build_model(DD_MODEL, digits.input_shape, digits.num_classes, digits.mean, digits.std)
    x, y = torch.as_tensor(digits.x_train), torch.as_tensor(digits.y_train)
    runs = [dd.SeedRun(seed, experts, x[dd.random_real_init(digits.y_train, ipc, digits.num_classes, seed)])
            for seed in range(k)]
    y_syn = y[dd.random_real_init(digits.y_train, ipc, digits.num_classes, 0)]
    if batched:
        dd.distill_seeds(model, runs, y_syn, s, stacked=True)
    else:
        for run in runs:
            dd.distill(model, run.trajectories, run.x_init, y_syn, s, run.seed)


LIGHTNING_TRAINER = {"accelerator": "cpu", "devices": 1, "deterministic": True, "progress_bar": False}


def lightning_cases(mnist1d):
    from dataclasses import replace

    cut = replace(mnist1d, x_train=mnist1d.x_train[:2048], y_train=mnist1d.y_train[:2048])
    yield "lightning_teacher_mlp", cut, {"arch": "mlp", "hidden": [256, 256]}
    yield "lightning_teacher_convnet", cut, {"arch": "convnet", "channels": [32, 64, 64], "norm": "batch"}


def lightning_sequential(ds, spec, seeds) -> None:
    from lifelearn.train.module import ClassifierModule
    from lifelearn.train.runner import train_and_test

    for s in seeds:
        train_and_test(ds, spec, ADAM, lambda m, d: ClassifierModule(m, ADAM), s, LIGHTNING_TRAINER)


def lightning_batched(ds, spec, seeds) -> None:
    from lifelearn.train.runner import batched_train_and_test

    batched_train_and_test(ds, seeds, spec, ADAM, LIGHTNING_TRAINER)


def compare(results: list, name: str, k: int, spec: dict, batch_size: int, samples: int, sequential, batched,
            repeats: int) -> None:
    """Time `sequential` and `batched` `repeats` times, interleaved (drift affects both alike);
    append and print the row."""
    seq, bat = [], []
    for _ in range(repeats):
        seq.append(timed(sequential))
        bat.append(timed(batched))
    row = {"case": name, "K": k, "model": spec, "batch_size": batch_size, "samples_per_seed": samples,
           "sequential_s": statistics.median(seq), "batched_s": statistics.median(bat)}
    row["ratio"] = row["sequential_s"] / row["batched_s"]
    results.append(row)
    print(f"{name:24s} K={k:3d} batch {batch_size:4d}: sequential {row['sequential_s']:7.2f} s, "
          f"batched {row['batched_s']:6.2f} s, throughput ratio {row['ratio']:5.1f}x", flush=True)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", nargs="+", help="only these cases (names as printed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    digits, mnist1d = dataset("digits"), dataset("mnist1d")
    results = []
    for ipc in (1, 10):
        name = f"dd_evaluation_ipc{ipc}"
        if args.cases and name not in args.cases:
            continue
        dd_evaluation(digits, ipc, 2, 2)  # warm-up
        for k in args.ks:
            compare(results, name, k, DD_MODEL, DD_TRAIN["batch_size"], DD_TRAIN["epochs"] * ipc * digits.num_classes,
                    lambda: dd_evaluation(digits, ipc, k, 1), lambda: dd_evaluation(digits, ipc, k, k), args.repeats)
    experts = None
    for ipc in (1, 10):
        name = f"dd_distill_ipc{ipc}"
        if args.cases and name not in args.cases:
            continue
        experts = experts or dd_experts(digits)
        dd_distill(digits, experts, ipc, 2, True)  # warm-up
        for k in args.ks:
            compare(results, name, k, DD_MODEL, ipc * digits.num_classes, 10 * DD_IPC[ipc]["syn_steps"],
                    lambda: dd_distill(digits, experts, ipc, k, False), lambda: dd_distill(digits, experts, ipc, k, True),
                    args.repeats)
    for name, ds, spec, tasks, cfg, kind in cases(digits, mnist1d):
        if args.cases and name not in args.cases:
            continue
        warm = [(x[:64], y[:64]) for x, y in tasks[:1]]
        for k in args.ks:
            seeds = list(range(k))
            seq_loss, bat_loss = losses(kind, ds, seeds)
            run_sequential(ds, spec, warm, cfg, seeds[:2], seq_loss)  # warm-up: first calls, allocator
            run_batched(ds, spec, warm, cfg, seeds, bat_loss)
            compare(results, name, k, spec, cfg["batch_size"], cfg["epochs"] * sum(len(y) for _, y in tasks),
                    lambda: run_sequential(ds, spec, tasks, cfg, seeds, seq_loss),
                    lambda: run_batched(ds, spec, tasks, cfg, seeds, bat_loss), args.repeats)
    for name, ds, spec in lightning_cases(mnist1d):
        if args.cases and name not in args.cases:
            continue
        lightning_sequential(ds, spec, [0])  # warm-up
        for k in args.ks:
            seeds = list(range(k))
            compare(results, name, k, spec, ADAM["batch_size"], ADAM["epochs"] * len(ds.y_train),
                    lambda: lightning_sequential(ds, spec, seeds), lambda: lightning_batched(ds, spec, seeds),
                    args.repeats)
    write_json(ROOT / "benchmarks" / "results" / "seed_batching.json",
               {"threads": args.threads, "repeats": args.repeats, "torch": torch.__version__, "cases": results})


if __name__ == "__main__":
    main()
