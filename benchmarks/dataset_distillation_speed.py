"""Dataset distillation cost at the default profile's settings, measured in one process:

- one expert epoch (plain and smooth: clipping + gradient penalty) on the real train split;
- distillation iterations per second for each IPC, plain MTT and with every switch on,
  and one iteration's cost relative to one plain expert epoch;
- the unrolled graph's memory: the bytes autograd keeps for the backward pass of one
  iteration (torch.autograd.graph.saved_tensors_hooks, each storage counted once), i.e.
  the graph's peak just before backward, next to the size of one parameter vector.

    python benchmarks/dataset_distillation_speed.py [--threads 1]

Printed, never asserted. Uses data/digits when prepared, random tensors of its shape otherwise.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from lifelearn.config import load_config
from lifelearn.distill import dataset_distillation as dd
from lifelearn.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def load_data(name: str):
    path = ROOT / "data" / name
    if (path / "meta.json").exists():
        from lifelearn.data import load_dataset

        ds = load_dataset(path)
        return torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train), ds.input_shape, ds.num_classes
    g = torch.Generator().manual_seed(0)
    return torch.rand(1293, 1, 8, 8, generator=g), torch.arange(1293) % 10, (1, 8, 8), 10


def graph_bytes(fn) -> int:
    """Bytes of the tensors autograd saves while `fn()` runs (distinct storages)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "config", "default")["dataset_distillation"]
    x, y, shape, classes = load_data(cfg["dataset"])
    torch.manual_seed(0)
    model = build_model(cfg["model"], shape, classes)
    one_epoch = {**cfg["experts"]["train"], "epochs": 1}
    timings = {}
    dd.train_expert(build_model(cfg["model"], shape, classes), x, y, one_epoch, 0)  # warm-up (first calls)
    for name, opts in cfg["experts"]["sets"].items():
        start = time.perf_counter()
        res = dd.train_expert(build_model(cfg["model"], shape, classes), x, y, one_epoch, 0, **opts)
        timings[name] = time.perf_counter() - start
        print(f"expert epoch ({name}: {opts}): {timings[name]:.3f} s")
    epoch_s = timings.get("plain", next(iter(timings.values())))
    traj = dd.train_expert(model, x, y, {**cfg["experts"]["train"], "epochs": max(c["max_start_epoch"] + c["expert_epochs"]
                                                                                  for c in cfg["ipc"]) + 1}, 0)["trajectory"]
    layout = dd.param_layout(model)
    n_params = traj.shape[1]
    print(f"parameters: {n_params} ({n_params * 4 / 1024:.1f} KiB per parameter vector)")
    for ipc_cfg in cfg["ipc"]:
        ipc = ipc_cfg["ipc"]
        idx = dd.random_real_init(y.numpy(), ipc, classes, 0)
        for label, on in (("plain MTT", False), ("all switches", True)):
            s = dd.DistillSettings(ipc=ipc, iterations=args.iterations, syn_steps=ipc_cfg["syn_steps"],
                                   expert_epochs=ipc_cfg["expert_epochs"], max_start_epoch=ipc_cfg["max_start_epoch"],
                                   lr_img=cfg["distill"]["lr_img"], lr_lr=cfg["distill"]["lr_lr"],
                                   lr_init=cfg["experts"]["train"]["lr"], **{k: on for k in dd.SWITCHES})
            start = time.perf_counter()
            dd.distill(model, [traj], x[idx], y[idx], s, 0)
            per_it = (time.perf_counter() - start) / args.iterations
            print(f"IPC {ipc:3d} {label:13s}: {1 / per_it:7.1f} it/s ({ipc_cfg['syn_steps']} unrolled steps), "
                  f"one iteration = {per_it / epoch_s:.3f} plain expert epochs")
        x_syn = x[idx].clone().requires_grad_(True)
        lr = torch.tensor(math.log(cfg["experts"]["train"]["lr"]), requires_grad=True)
        start_p = traj[0].clone().requires_grad_(True)
        nbytes, params = graph_bytes(lambda: dd.unroll(model, layout, start_p, x_syn, y[idx], lr.exp(),
                                                        ipc_cfg["syn_steps"]))
        loss = dd.matching_loss(params[-1], traj[0], traj[ipc_cfg["expert_epochs"]])
        loss.backward()
        print(f"IPC {ipc:3d} unrolled graph ({ipc_cfg['syn_steps']} steps, {len(idx)} images): "
              f"{nbytes / 2**20:.2f} MiB saved for backward = {nbytes / (n_params * 4):.1f} parameter vectors")
    print(f"torch {torch.__version__}, {args.threads} thread(s), numpy {np.__version__}")


if __name__ == "__main__":
    main()
