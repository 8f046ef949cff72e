"""Cost of one training epoch of the MTARD study's students: natural training, PGD-AT,
ARD and MTARD, on the default profile's settings (dataset, student, teachers'
architecture, batch size, training attack), measured in the same process.

    python benchmarks/mtard_epoch_cost.py [--epochs 2] [--repeats 3]

Each method's `training_loss` + backward + optimiser step over the whole training set
(teachers randomly initialised: their weights do not change the cost). Methods are
interleaved per repeat; the median seconds per epoch and the ratios to natural training
are printed and written to benchmarks/results/mtard_epoch_cost.json. One thread, CPU.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from lifelearn.config import load_config
from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.studies.mtard import METHODS
from lifelearn.io import write_json
from lifelearn.models import build_model
from lifelearn.train.data import TensorBatches
from lifelearn.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]


def study_config() -> dict:
    cfg = load_config(ROOT / "config", "default")
    return cfg


def epoch_seconds(method_name: str, cfg: dict, ds, x, y, epochs: int) -> float:
    study = cfg["mtard"]
    method = study["methods"][method_name]
    spec = {**{k: v for k, v in study.items() if k != "methods"}, "method": method}
    torch.manual_seed(0)
    build = lambda s: build_model(s, ds.input_shape, ds.num_classes, ds.mean, ds.std)  # noqa: E731
    teachers = {role: build(cfg["teachers"][study["teachers"][role]]["model"]) for role in METHODS[method["method"]].teachers}
    module = METHODS[method["method"]].build(build(study["student"]), spec, teachers)
    module.train()
    optimizer = build_optimizer(module.model.parameters(), study["train"])
    start = time.perf_counter()
    for epoch in range(epochs):
        for xb, yb in TensorBatches(x, y, study["train"]["batch_size"], shuffle=True, epoch_fn=lambda: epoch):
            loss, _ = module.training_loss(xb, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = study_config()
    name = cfg["mtard"]["dataset"]
    if not (ROOT / "data" / name / "meta.json").exists():
        prepare_dataset(name, data_root=ROOT / "data")
    ds = load_dataset(ROOT / "data" / name)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    methods = list(cfg["mtard"]["methods"])
    times = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m in methods:
            times[m].append(epoch_seconds(m, cfg, ds, x, y, args.epochs))
    median = {m: statistics.median(t) for m, t in times.items()}
    base = median.get("natural", min(median.values()))
    result = {"dataset": name, "train_samples": len(y), "epochs": args.epochs, "repeats": args.repeats,
              "attack": cfg["mtard"]["attack"], "seconds_per_epoch": median,
              "ratio_to_natural": {m: v / base for m, v in median.items()}}
    for m in methods:
        print(f"{m:>8}: {median[m]:.3f} s/epoch  x{median[m] / base:.2f} natural")
    if {"mtard", "pgd_at"} <= set(median):
        print(f"MTARD / PGD-AT: x{median['mtard'] / median['pgd_at']:.2f}")
        result["mtard_over_pgd_at"] = median["mtard"] / median["pgd_at"]
    write_json(ROOT / "benchmarks" / "results" / "mtard_epoch_cost.json", result)


if __name__ == "__main__":
    main()
