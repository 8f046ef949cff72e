"""What max pooling costs the 1-D ConvNets under autograd: PyTorch's nn.MaxPool1d(2) (its
with-indices kernel) against models.pooling.HalvingMaxPool1d (the kept element gathered),
same models, data and seeds, alternating in one process.

    python benchmarks/max_pool_cost.py [--repeats 3] [--samples 500]

Cases, on the default profile's MTARD settings (MNIST-1D, ConvNet [16, 32] student with
BatchNorm, [32, 64, 64] teachers, batch 128, PGD-5 training attack):
  pool             the pooling call alone, forward + backward, on the student's first
                   activations [128, 16, 40] (median of 200 calls)
  mtard_epoch      one MTARD training epoch (benchmarks/mtard_epoch_cost.py's loop:
                   training_loss, backward, Adam step over the whole training split)
  autoattack       one AutoAttack evaluation (APGD-CE, APGD-T x 9, 100 iterations) on the
                   first `samples` test points, a fresh student labelled with its own
                   predictions so that every point goes through every stage
Each case checks both variants give the same result bit for bit (the pool's output and input
gradient, the epoch's final weights, AutoAttack's examples), prints the median seconds and
the ratio, and writes benchmarks/results/max_pool_cost.json. One thread.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

from lifelearn.config import load_config
from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.evaluate.autoattack import autoattack
from lifelearn.io import write_json
from lifelearn.models import build_model
from lifelearn.models.pooling import HalvingMaxPool1d
from lifelearn.studies.mtard import METHODS, method_spec
from lifelearn.train.data import TensorBatches
from lifelearn.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("nn_max_pool", "halving_max_pool")


def pooling(variant: str):
    """A context in which every HalvingMaxPool1d runs as `variant`."""
    native = lambda self, x: nn.MaxPool1d.forward(self, x)  # noqa: E731
    return mock.patch.object(HalvingMaxPool1d, "forward", native if variant == "nn_max_pool" else
                             HalvingMaxPool1d.forward)


def pool_case(shape=(128, 16, 40), calls: int = 200):
    torch.manual_seed(0)
    x = torch.randn(shape).relu().requires_grad_()
    grad = torch.randn(*shape[:-1], shape[-1] // 2)
    pool = HalvingMaxPool1d()

    def run():
        start = time.perf_counter()
        for _ in range(calls):
            out = pool(x)
            (gx,) = torch.autograd.grad(out, x, grad)
        return (time.perf_counter() - start) / calls, torch.cat([out.flatten(), gx.flatten()])
    return run


def mtard_epoch_case(cfg: dict, ds):
    study = cfg["mtard"]
    spec = method_spec(study, "mtard")
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)

    def run():
        torch.manual_seed(0)
        build = lambda s: build_model(s, ds.input_shape, ds.num_classes, ds.mean, ds.std)  # noqa: E731
        teachers = {role: build(cfg["teachers"][study["teachers"][role]]["model"]) for role in ("clean", "robust")}
        module = METHODS["mtard"].build(build(study["student"]), spec, teachers).train()
        optimizer = build_optimizer(module.model.parameters(), study["train"])
        start = time.perf_counter()
        for xb, yb in TensorBatches(x, y, study["train"]["batch_size"], shuffle=True):
            loss, _ = module.training_loss(xb, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start, torch.cat([p.detach().flatten() for p in module.model.parameters()])
    return run


def autoattack_case(cfg: dict, ds, samples: int):
    study = cfg["mtard"]
    torch.manual_seed(0)
    model = build_model(study["student"], ds.input_shape, ds.num_classes, ds.mean, ds.std).eval()
    x = torch.as_tensor(ds.x_test[:samples])
    with torch.no_grad():
        y = model(x).argmax(1)
    settings = {**study["autoattack"], "samples": samples}

    def run():
        start = time.perf_counter()
        x_adv, _, _ = autoattack(model, x, y, settings, seed=0)
        return time.perf_counter() - start, x_adv
    return run


def compare(name: str, run, repeats: int) -> dict:
    seconds, results = {v: [] for v in VARIANTS}, {}
    for _ in range(repeats):
        for variant in VARIANTS:
            with pooling(variant):
                t, results[variant] = run()
            seconds[variant].append(t)
    median = {v: statistics.median(s) for v, s in seconds.items()}
    row = {"case": name, "seconds": seconds, "median": median,
           "ratio": median["nn_max_pool"] / median["halving_max_pool"],
           "same_result": bool(np.array_equal(results["nn_max_pool"].detach().numpy(), results["halving_max_pool"].detach().numpy()))}
    print(f"{name:12s} nn.MaxPool1d {1e3 * median['nn_max_pool']:9.2f} ms, HalvingMaxPool1d "
          f"{1e3 * median['halving_max_pool']:9.2f} ms, {row['ratio']:.2f}x; same result: {row['same_result']}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "config", "default")
    name = cfg["mtard"]["dataset"]
    if not (ROOT / "data" / name / "meta.json").exists():
        prepare_dataset(name, data_root=ROOT / "data")
    ds = load_dataset(ROOT / "data" / name)
    rows = [compare("pool", pool_case(), args.repeats),
            compare("mtard_epoch", mtard_epoch_case(cfg, ds), args.repeats),
            compare("autoattack", autoattack_case(cfg, ds, args.samples), args.repeats)]
    write_json(ROOT / "benchmarks" / "results" / "max_pool_cost.json",
               {"repeats": args.repeats, "samples": args.samples, "threads": 1, "torch": torch.__version__,
                "cases": rows})
    if not all(r["same_result"] for r in rows):
        raise SystemExit("HalvingMaxPool1d changed a result")


if __name__ == "__main__":
    main()
