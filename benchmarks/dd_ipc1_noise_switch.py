"""Which switch makes smooth-MTT's IPC-1 images noise? Distils IPC 1 (100 iterations, seed 0,
the default profile's IPC-1 settings) with each switch alone and with all but one, from the
default profile's experts, and prints the learned step size and how far / how roughly the
images moved (mean |x - x_init|, total variation TV; the real init's TV is printed first).

    PYTHONPATH=src python benchmarks/dd_ipc1_noise_switch.py [checkpoints/default/dataset_distillation] [data/digits]
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from lifelearn.data import load_dataset
from lifelearn.distill import dataset_distillation as dd

ALL = {"inner_momentum": True, "balanced_loss": True, "intermediate_matching": True, "weight_perturbation": True}
RUNS = [("mtt", "plain", {}), ("smooth_experts", "smooth", {}), ("inner_momentum", "plain", {"inner_momentum": True}),
        ("smooth+momentum", "smooth", {"inner_momentum": True}),
        ("weight_perturbation", "plain", {"weight_perturbation": True}),
        ("balanced_loss", "plain", {"balanced_loss": True}), ("intermediate", "plain", {"intermediate_matching": True}),
        ("all_but_perturbation", "smooth", {**ALL, "weight_perturbation": False}),
        ("all_but_momentum", "smooth", {**ALL, "inner_momentum": False}), ("all", "smooth", ALL)]


def total_variation(a: np.ndarray) -> float:
    """Mean absolute difference of neighbouring pixels along width and height."""
    return float(np.abs(np.diff(a, axis=-1)).mean() + np.abs(np.diff(a, axis=-2)).mean())


def main(root: str, data: str) -> None:
    torch.set_num_threads(1)
    ds = load_dataset(data)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    trajectories = {s: [dd.load_trajectory(f"{root}/experts/{s}/expert{i}.pt") for i in range(5)]
                    for s in ("plain", "smooth")}
    payload = trajectories["plain"][0][1]
    idx = dd.random_real_init(ds.y_train, 1, ds.num_classes, 0)
    init = x[idx].numpy()
    print("real init TV", round(total_variation(init), 4), flush=True)
    for name, experts, switches in RUNS:
        settings = dd.DistillSettings(ipc=1, iterations=100, syn_steps=20, expert_epochs=2, max_start_epoch=2,
                                      lr_img=0.3, lr_lr=0.01, lr_init=0.03, **switches)
        start = time.perf_counter()
        out = dd.distill(dd.expert_model(payload, ds.mean, ds.std), [t for t, _ in trajectories[experts]], x[idx],
                         y[idx], settings, 0)
        xs = out["x"].numpy()
        print(json.dumps({"run": name, "lr": round(out["lr"], 5), "tv": round(total_variation(xs), 4),
                          "moved": round(float(np.abs(xs - init).mean()), 4),
                          "saturated": round(float(((xs < 0.01) | (xs > 0.99)).mean()), 3),
                          "loss_last10": round(float(np.mean([h["loss"] for h in out["history"][-10:]])), 4),
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/default/dataset_distillation",
         sys.argv[2] if len(sys.argv) > 2 else "data/digits")
