"""Cost of a TGeo-KD training epoch relative to a vanilla-KD epoch, same run.

    python benchmarks/tgeo_kd_epoch_cost.py [--epochs 3] [--repeats 3]

Both are the pipeline's Lightning modules with the default profile's `tgeo_kd` settings
(student, batch size, optimiser, tau, TGeo-KD config) on the same data; the teacher is
the pretrained checkpoint of seed 0 when present, else a fresh network of the same
architecture (same cost). Runs are interleaved so drift affects both alike; prints
seconds per epoch and per step of each (median of the repeats) and the ratios, and
writes benchmarks/results/tgeo_kd_epoch_cost.json. One thread, CPU, no validation.
TGeo-KD trains on 90% of the training split (the rest is its meta-validation set), so
it has fewer steps per epoch; both ratios are reported.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pytorch_lightning as pl
import torch
from lifelearn.config import load_config
from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.studies.tgeo_kd import METHODS
from lifelearn.io import write_json
from lifelearn.models import build_model
from lifelearn.models.checkpoint import load_model

from _timing import timed_fit

ROOT = Path(__file__).resolve().parents[1]


def study_config() -> dict:
    cfg = load_config(ROOT / "config", "default")
    return cfg["tgeo_kd"] | {"teacher_spec": cfg["teachers"][cfg["tgeo_kd"]["teacher"]]}


def teacher_for(cfg: dict, ds):
    path = ROOT / "checkpoints" / "default" / "teachers" / cfg["teacher"] / "seed0.pt"
    if path.exists():
        return load_model(path)
    torch.manual_seed(0)
    return build_model(cfg["teacher_spec"]["model"], ds.input_shape, ds.num_classes, ds.mean, ds.std)


def time_method(method: str, cfg: dict, ds, teacher, epochs: int, tmp: Path) -> tuple[float, int]:
    """Seconds and optimiser steps of `epochs` training epochs of `method`."""
    pl.seed_everything(0, workers=True)
    model = build_model(cfg["student"], ds.input_shape, ds.num_classes, ds.mean, ds.std)
    train = {**cfg["train"], "epochs": epochs}
    method_cfg = {k: v for k, v in cfg["methods"][method].items() if k != "tune"}  # the grid is the sweep's
    module = METHODS[method].build(model, teacher, ds, train, method_cfg, 0)
    return timed_fit(module, ds, train["batch_size"], epochs, tmp / method)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = study_config()
    if not (ROOT / "data" / cfg["dataset"] / "meta.json").exists():
        prepare_dataset(cfg["dataset"], data_root=ROOT / "data")
    ds = load_dataset(ROOT / "data" / cfg["dataset"])
    teacher = teacher_for(cfg, ds)
    tmp = ROOT / ".cache" / "benchmark-tgeo-kd"
    epoch_s = {"kd": [], "tgeo": []}
    step_s = {"kd": [], "tgeo": []}
    steps = {}
    for _ in range(args.repeats):
        for method in ("kd", "tgeo"):
            seconds, steps[method] = time_method(method, cfg, ds, teacher, args.epochs, tmp)
            epoch_s[method].append(seconds / args.epochs)
            step_s[method].append(seconds / steps[method])
    result = {"dataset": cfg["dataset"], "student": cfg["student"], "batch_size": cfg["train"]["batch_size"],
              "epochs": args.epochs, "repeats": args.repeats,
              "steps_per_epoch": {m: steps[m] // args.epochs for m in steps}}
    for m in ("kd", "tgeo"):
        result[f"{m}_s_per_epoch"] = statistics.median(epoch_s[m])
        result[f"{m}_ms_per_step"] = 1000 * statistics.median(step_s[m])
    result["ratio_epoch_tgeo_over_kd"] = result["tgeo_s_per_epoch"] / result["kd_s_per_epoch"]
    result["ratio_step_tgeo_over_kd"] = result["tgeo_ms_per_step"] / result["kd_ms_per_step"]
    write_json(ROOT / "benchmarks" / "results" / "tgeo_kd_epoch_cost.json", result)
    print(f"{cfg['dataset']}, student {cfg['student']}, batch {cfg['train']['batch_size']}, "
          f"median of {args.repeats} x {args.epochs} epochs:")
    for m in ("kd", "tgeo"):
        print(f"  {m:5s} {result[f'{m}_s_per_epoch']:.3f} s/epoch ({result['steps_per_epoch'][m]} steps), "
              f"{result[f'{m}_ms_per_step']:.2f} ms/step")
    print(f"  ratio TGeo-KD / vanilla KD: {result['ratio_epoch_tgeo_over_kd']:.2f} per epoch, "
          f"{result['ratio_step_tgeo_over_kd']:.2f} per step")


if __name__ == "__main__":
    main()
