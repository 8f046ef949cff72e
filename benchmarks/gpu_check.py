"""The prepared GPU check (issue 18): the paper profile's costly pieces on one GPU, measured,
in one process and under 5 minutes, written to one JSON of figures.

    benchmarks/gpu_check.sh [--cpu] [--out FILE] [--pipeline-seconds S]

1. teacher: a CIFAR-10 ResNet-18 (the paper profile's `teachers.cifar10_resnet18`: width,
   batch size, SGD, crop+flip) trained one epoch through the pipeline's Lightning path
   (ClassifierModule + InMemoryDataModule + make_trainer): images/s, peak GPU memory;
2. mtt_ipc10: MTT distillation iterations at IPC 10 with the paper profile's ConvNet,
   syn_steps and expert_epochs (plain `mtt` switches): iterations/s, peak memory; the
   expert it matches is trained here for expert_epochs + 2 epochs (cost does not depend on
   which epochs are matched), one expert epoch timed too;
3. mtard_epoch: one MTARD student epoch (ResNet-18 student, the two wide teachers, PGD-10
   inner attack), training_loss + backward + step as benchmarks/mtard_epoch_cost.py does;
4. pipeline: the embedded default profile run by Snakemake in a scratch copy (its training
   jobs on the GPU: trainer.accelerator auto), for at most --pipeline-seconds; the jobs
   finished and each rule's wall seconds from its benchmark file.

Data: data/cifar10 when prepared (the real set), else the tiny official-format archives of
tests/cifar_mirror.py served on 127.0.0.1 through the real download and parsing code (md5s
from config/overrides/paper_dry_run.yaml). A small training set is tiled to
--samples images so an epoch is long enough to time.

`--cpu`: the same code on the CPU at the dry run's sizes (the paper profile with
config/overrides/paper_dry_run.yaml), a smoke test of this script. Printed, never asserted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
OVERRIDE = ROOT / "config" / "overrides" / "paper_dry_run.yaml"


def paper_config(cpu: bool) -> dict:
    """The resolved paper profile; with `cpu`, shrunk by the dry run's override file."""
    from lifelearn.config import load_config

    overrides = [yaml.safe_load(OVERRIDE.read_text())] if cpu else []
    return load_config(ROOT / "config", "paper", *overrides)


def cifar10(cpu: bool, scratch: Path) -> tuple[object, str]:
    """(Dataset, where it came from): data/cifar10 if prepared, else the 127.0.0.1 mirror."""
    from lifelearn.data import load_dataset, prepare_dataset

    if (ROOT / "data" / "cifar10" / "meta.json").exists():
        return load_dataset(ROOT / "data" / "cifar10"), "data/cifar10"
    from cifar_mirror import serve, write_mirror

    data = yaml.safe_load(OVERRIDE.read_text())["profiles"]["paper"]["data"]
    write_mirror(scratch / "mirror")
    with serve(scratch / "mirror") as url:
        out = prepare_dataset("cifar10", data_root=scratch / "data", cache_dir=scratch / "cache", mirror=url,
                              checksums=data["checksums"]["cifar10"], val_size=data["val_size"]["cifar10"])
    return load_dataset(out), f"tiny mirror {url} (tests/cifar_mirror.py)"


def tiled(ds, n: int):
    """`ds` with its training split repeated (then cut) to `n` images."""
    reps = -(-n // len(ds.y_train))
    return dataclasses.replace(ds, x_train=np.concatenate([ds.x_train] * reps)[:n],
                               y_train=np.concatenate([ds.y_train] * reps)[:n])


class Memory:
    """Peak memory of a block: CUDA max_memory_allocated, or the process's max RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
            self.kind = "cuda max_memory_allocated"
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.kind = "process max RSS (cumulative)"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def teacher_epoch(cfg: dict, ds, device: torch.device) -> dict:
    import pytorch_lightning as pl
    from lifelearn.models import build_model
    from lifelearn.train.data import InMemoryDataModule
    from lifelearn.train.fit import make_trainer
    from lifelearn.train.module import ClassifierModule

    teacher = cfg["teachers"]["cifar10_resnet18"]
    train = {**teacher["train"], "epochs": 2}
    times = []

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            sync(device)
            times.append(time.perf_counter())

        def on_train_epoch_end(self, trainer, module):
            sync(device)
            times[-1] = time.perf_counter() - times[-1]

    pl.seed_everything(0, workers=True)
    model = build_model(teacher["model"], ds.input_shape, ds.num_classes, ds.mean, ds.std)
    trainer = make_trainer(2, None, False, {"accelerator": device.type if device.type == "cpu" else "gpu",
                                            "progress_bar": False, "deterministic": False})
    trainer.callbacks.append(EpochTimer())
    trainer.limit_val_batches = 0
    with Memory(device) as mem:
        trainer.fit(ClassifierModule(model, train), datamodule=InMemoryDataModule(ds, train["batch_size"],
                                                                                   augment=train.get("augment")))
    n = len(ds.y_train)
    return {"model": teacher["model"], "batch_size": train["batch_size"], "images": n,
            "first_epoch_s": times[0], "epoch_s": times[-1], "images_per_s": n / times[-1],
            "peak_memory_mb": mem.peak_mb, "memory": mem.kind}


def mtt_ipc10(cfg: dict, ds, device: torch.device, iterations: int, expert_images: int) -> dict:
    from lifelearn.distill import dataset_distillation as dd
    from lifelearn.models import build_model

    study = cfg["dataset_distillation"]
    entry = next(e for e in study["ipc"] if e["ipc"] == 10)
    method = study["methods"]["mtt"]
    fields = {f.name for f in dataclasses.fields(dd.DistillSettings)}
    x = torch.as_tensor(ds.x_train[:expert_images]).to(device)
    y = torch.as_tensor(ds.y_train[:expert_images]).to(device)
    torch.manual_seed(0)
    model = build_model(study["model"], ds.input_shape, ds.num_classes).to(device)
    train = {**study["experts"]["train"], "epochs": entry["expert_epochs"] + 2}
    sync(device)
    start = time.perf_counter()
    traj = dd.train_expert(model, x, y, train, 0)["trajectory"].to(device)
    sync(device)
    expert_epoch_s = (time.perf_counter() - start) / train["epochs"]
    idx = dd.random_real_init(y.cpu().numpy(), 10, ds.num_classes, 0)
    values = {**study["distill"], **{k: v for k, v in method.items() if k != "method"}, **entry,
              "lr_init": study["experts"]["train"]["lr"], "max_start_epoch": 2}
    settings = dd.DistillSettings(**{k: v for k, v in values.items() if k in fields})

    def run(n: int) -> float:
        sync(device)
        t = time.perf_counter()
        dd.distill(model, [traj], x[idx], y[idx], dataclasses.replace(settings, iterations=n), 0)
        sync(device)
        return time.perf_counter() - t

    run(1)  # warm-up: first kernels, allocator
    with Memory(device) as mem:
        seconds = run(iterations)
    return {"model": study["model"], "ipc": 10, "syn_steps": settings.syn_steps,
            "expert_epochs": settings.expert_epochs, "batch_syn": settings.batch_syn,
            "settings": dataclasses.asdict(settings) | {"iterations": iterations},
            "iterations_per_s": iterations / seconds, "peak_memory_mb": mem.peak_mb, "memory": mem.kind,
            "expert_images": len(y), "expert_epoch_s": expert_epoch_s}


def mtard_epoch(cfg: dict, ds, device: torch.device) -> dict:
    from lifelearn.models import build_model
    from lifelearn.studies.mtard import METHODS
    from lifelearn.train.data import TensorBatches
    from lifelearn.train.optim import build_optimizer

    study = cfg["mtard"]
    method = study["methods"]["mtard"]
    spec = {**{k: v for k, v in study.items() if k != "methods"}, "method": method}
    torch.manual_seed(0)
    build = lambda s: build_model(s, ds.input_shape, ds.num_classes, ds.mean, ds.std).to(device)  # noqa: E731
    teachers = {role: build(cfg["teachers"][study["teachers"][role]]["model"]).eval()
                for role in METHODS[method["method"]].teachers}
    module = METHODS[method["method"]].build(build(study["student"]), spec, teachers).to(device)
    module.train()
    optimizer = build_optimizer(module.model.parameters(), study["train"])
    x, y = torch.as_tensor(ds.x_train).to(device), torch.as_tensor(ds.y_train).to(device)
    with Memory(device) as mem:
        sync(device)
        start = time.perf_counter()
        for xb, yb in TensorBatches(x, y, study["train"]["batch_size"], shuffle=True, epoch_fn=lambda: 0):
            loss, _ = module.training_loss(xb, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        sync(device)
        seconds = time.perf_counter() - start
    return {"student": study["student"], "teachers": {r: cfg["teachers"][study["teachers"][r]]["model"]
                                                      for r in teachers},
            "attack_steps": study["attack"]["steps"], "batch_size": study["train"]["batch_size"],
            "images": len(y), "epoch_s": seconds, "images_per_s": len(y) / seconds,
            "peak_memory_mb": mem.peak_mb, "memory": mem.kind}


def default_pipeline(cpu: bool, seconds: float, scratch: Path) -> dict:
    """The embedded default profile in a scratch copy, stopped after `seconds`."""
    from conftest import copy_workflow

    work = copy_workflow(scratch / "repo")
    cores = 2 if cpu else min(os.cpu_count() or 1, 8)
    args = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--keep-going"]
    if cpu:
        (work / "cpu.yaml").write_text("trainer: {accelerator: cpu}\n")
        args += ["--configfile", "cpu.yaml"]
    env = {**os.environ, "PYTHONPATH": str(work / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)
    plan = subprocess.run([*args, "-n"], cwd=work, env=env, capture_output=True, text=True).stdout
    planned = re.search(r"^total\s+(\d+)\s*$", plan, re.M)
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    stopped = False
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this call started (snakemake and its jobs)
        _, err = proc.communicate()
        stopped = True
    complete = proc.returncode == 0 and not stopped
    wall = time.perf_counter() - start
    rules = {}
    for tsv in sorted((work / "logs" / "default" / "benchmarks").rglob("*.tsv")):
        lines = tsv.read_text().splitlines()
        if len(lines) > 1:
            rules[str(tsv.relative_to(work / "logs" / "default" / "benchmarks"))[:-4]] = float(lines[1].split("\t")[0])
    return {"complete": complete, "stopped_at_limit": stopped, "wall_s": wall, "limit_s": seconds,
            "cores": cores, "jobs_planned": int(planned[1]) if planned else None, "jobs_finished": len(rules),
            "job_s": rules, "training_job_s_total": sum(v for k, v in rules.items()
                                                        if not k.startswith(("prepare_data", "data_version"))),
            "failed": "" if complete or stopped else (err or "")[-1500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="smoke: CPU, the dry run's sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    parser.add_argument("--samples", type=int, default=None, help="training images per epoch (tiled)")
    parser.add_argument("--mtt-iterations", type=int, default=None)
    parser.add_argument("--pipeline-seconds", type=float, default=None)
    args = parser.parse_args()
    begin = time.perf_counter()
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device visible (torch.cuda.is_available() is False); "
                 "use --cpu for the CPU smoke run")
    device = torch.device("cpu" if args.cpu else "cuda")
    samples = args.samples or (256 if args.cpu else 20000)
    iterations = args.mtt_iterations or (2 if args.cpu else 20)
    pipeline_s = args.pipeline_seconds or (60 if args.cpu else 150)
    if args.cpu:
        torch.set_num_threads(1)
    torch.backends.cudnn.benchmark = not args.cpu
    cfg = paper_config(args.cpu)
    figures = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
               "torch": torch.__version__, "sizes": "dry run (paper + config/overrides/paper_dry_run.yaml)"
               if args.cpu else "paper profile", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def record(key, fn, *a):
        t = time.perf_counter()
        try:
            figures[key] = fn(*a)
        except Exception as err:  # noqa: BLE001 - a failed stage is a figure too; the others still run
            figures[key] = {"error": f"{type(err).__name__}: {err}"}
        figures[key]["stage_s"] = time.perf_counter() - t
        print(f"{key}: {json.dumps(figures[key], default=str)}", flush=True)
        args.out.write_text(json.dumps(figures, indent=2, default=str) + "\n")  # after every stage

    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        scratch = Path(tmp)
        ds, source = cifar10(args.cpu, scratch)
        figures["data"] = {"cifar10": source, "train_images": len(ds.y_train), "tiled_to": samples}
        big = tiled(ds, samples)
        record("teacher_epoch", teacher_epoch, cfg, big, device)
        record("mtt_ipc10", mtt_ipc10, cfg, big, device, iterations, min(samples, 5000))
        record("mtard_epoch", mtard_epoch, cfg, tiled(ds, min(samples, 10000)), device)
        record("pipeline", default_pipeline, args.cpu, pipeline_s, scratch)
        shutil.rmtree(scratch / "repo", ignore_errors=True)
    figures["total_s"] = time.perf_counter() - begin
    args.out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"wrote {args.out} ({figures['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
