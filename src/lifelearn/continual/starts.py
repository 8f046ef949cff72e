"""Where a continual stream starts: a fresh model, or a pretrained teacher / distilled
student checkpoint with its head re-initialised, and the seeded random re-initialisation
that is FWT's baseline for a pretrained start."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from lifelearn.models import build_model
from lifelearn.models.checkpoint import load_model


def init_model(cfg: dict, ds, seed: int, init_dir: Path | None):
    """`init: scratch` builds cfg.model; `init: teacher:<name>` or
    `student:<study>/<name>` loads that checkpoint's seed (seed k uses seed k) and, with
    reset_head (or when its classes differ from the stream's), re-initialises its head."""
    init = cfg.get("init", "scratch")
    if init == "scratch":
        return build_model(cfg["model"], ds.input_shape, ds.num_classes, ds.mean, ds.std), cfg["model"]["arch"]
    kind, _, name = init.partition(":")
    if kind not in ("teacher", "student") or not name or init_dir is None:
        raise ValueError(f"init must be 'scratch', 'teacher:<name>' or 'student:<study>/<name>', got {init!r}")
    model = load_model(Path(init_dir) / f"seed{seed}.pt")
    if model.head.out_features != ds.num_classes:  # a source with other classes: a new head
        model.head = torch.nn.Linear(model.head.in_features, ds.num_classes)
    elif cfg.get("reset_head", True):
        model.head.reset_parameters()
    return model, type(model).__name__.lower()


def random_init_model(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of `model` with every layer re-initialised (seeded, global RNG untouched):
    the random-initialisation baseline of FWT for a pretrained start."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 104729)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh
