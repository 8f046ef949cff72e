"""The one optimiser and learning-rate schedule builder of every training loop: the
Lightning modules (train.module) and the plain-PyTorch continual template. Torch only,
so continual jobs import it without pytorch_lightning.

A train config names `optimizer` (sgd, adam, adamw) and `lr`, optionally `momentum`
(sgd), `weight_decay`, and `schedule` (none, cosine over `epochs`, multistep at
`milestones` by `gamma`); the schedule steps once per epoch.
"""
from __future__ import annotations

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "multistep")


def build_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """The optimiser `cfg["optimizer"]` over `params` with cfg's lr and weight decay."""
    name, lr, wd = cfg["optimizer"], cfg["lr"], cfg.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.get("momentum", 0.0), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown train.optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict):
    """The per-epoch schedule `cfg["schedule"]` of `optimizer`; None for `none` or no key."""
    name = cfg.get("schedule", "none")
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["epochs"])
    if name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg["milestones"], cfg.get("gamma", 0.1))
    raise ValueError(f"unknown train.schedule {name!r}; allowed: {', '.join(SCHEDULES)}")


def lightning_optimizers(params, cfg: dict):
    """A LightningModule's `configure_optimizers` value: the optimiser over `params` and its
    per-epoch schedule, if any."""
    optimizer = build_optimizer(params, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
