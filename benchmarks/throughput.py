"""Training throughput: the Lightning module + in-memory data module vs a plain
PyTorch loop on the same model, data, batch size and number of steps.

    python benchmarks/throughput.py [--dataset mnist1d] [--epochs 5] [--repeats 3]

Prints steps/s of both and their ratio (Lightning time / plain time), measured in the
same process, and writes benchmarks/results/throughput.json. One thread, CPU.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.io import write_json
from lifelearn.models import build_model
from lifelearn.train.data import TensorBatches
from lifelearn.train.module import ClassifierModule
from lifelearn.train.optim import build_optimizer

from _timing import timed_fit

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"arch": "convnet", "channels": [32, 64, 64]}
TRAIN = {"epochs": 5, "batch_size": 128, "optimizer": "adam", "lr": 0.003, "schedule": "none"}


def dataset(name: str):
    if not (ROOT / "data" / name / "meta.json").exists():
        prepare_dataset(name, data_root=ROOT / "data")
    return load_dataset(ROOT / "data" / name)


def plain_loop(ds, epochs: int) -> tuple[float, int]:
    """The baseline: the same batches by index, a bare optimisation loop."""
    torch.manual_seed(0)
    model = build_model(MODEL, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    optimizer = build_optimizer(model.parameters(), TRAIN)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    steps, start = 0, time.perf_counter()
    for epoch in range(epochs):
        for xb, yb in TensorBatches(x, y, TRAIN["batch_size"], shuffle=True, epoch_fn=lambda: epoch):
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    return time.perf_counter() - start, steps


def lightning_loop(ds, epochs: int, tmp: Path) -> tuple[float, int]:
    """The pipeline's path: ClassifierModule + InMemoryDataModule + Trainer (no validation)."""
    pl.seed_everything(0, workers=True)
    model = build_model(MODEL, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    module = ClassifierModule(model, {**TRAIN, "epochs": epochs})
    return timed_fit(module, ds, TRAIN["batch_size"], epochs, tmp)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = dataset(args.dataset)
    tmp = ROOT / ".cache" / "benchmark-throughput"
    plain, light = [], []
    for _ in range(args.repeats):  # interleaved, so drift affects both alike
        seconds, steps = plain_loop(ds, args.epochs)
        plain.append(seconds / steps)
        seconds, lsteps = lightning_loop(ds, args.epochs, tmp)
        light.append(seconds / lsteps)
    assert steps == lsteps, (steps, lsteps)
    result = {
        "dataset": args.dataset, "model": MODEL, "batch_size": TRAIN["batch_size"], "steps": steps,
        "plain_ms_per_step": 1000 * statistics.median(plain),
        "lightning_ms_per_step": 1000 * statistics.median(light),
    }
    result["ratio_lightning_over_plain"] = result["lightning_ms_per_step"] / result["plain_ms_per_step"]
    write_json(ROOT / "benchmarks" / "results" / "throughput.json", result)
    print(f"{args.dataset}, {steps} steps of batch {TRAIN['batch_size']}, median of {args.repeats}:")
    print(f"  plain PyTorch loop  {result['plain_ms_per_step']:.2f} ms/step")
    print(f"  Lightning module    {result['lightning_ms_per_step']:.2f} ms/step")
    print(f"  ratio Lightning / plain = {result['ratio_lightning_over_plain']:.3f}")


if __name__ == "__main__":
    main()
