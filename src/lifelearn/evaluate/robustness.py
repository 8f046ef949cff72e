"""Adversarial robustness: L-inf PGD (Madry et al. 2018) and the accuracies MTARD reports.

Inputs live in [0, 1] for every dataset (models normalise internally), so one attack
works everywhere. PGD maximises the cross-entropy of the attacked model:

    x_0 = clip_[0,1](x + delta_0),   delta_0 ~ U(-eps, eps)  or  0.001 * N(0, 1)
    x_{k+1} = clip_[0,1](Proj_{||. - x||_inf <= eps}(x_k + step * sign(grad_x CE(f(x_k), y))))

The model is put in eval mode while it is attacked (BatchNorm statistics neither used
per batch nor updated) and restored afterwards. Evaluation (PAPERS.md section 2 and 6):
clean accuracy, PGD-k accuracy and the weighted robust accuracy = their mean.
Hand-written because torchattacks needs torchvision (DESIGN: libraries before code).
Kept beside ART (evaluate/autoattack.py) because it agrees with ART's
ProjectedGradientDescentPyTorch from the same start, to 1e-6, with and without a random
start (tests/test_autoattack.py), and runs without ART's numpy round trips.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
from torch.nn import functional as F

from lifelearn.phases import timed
from lifelearn.progress import Progress

RANDOM_STARTS = ("uniform", "normal", "none")
# Values robustness_metrics' `{prefix}_<key>` can take: shares of the n samples, and their mean.
METRIC_RANGES = {"clean_acc": (0.0, 1.0), "pgd_acc": (0.0, 1.0), "weighted_robust_acc": (0.0, 1.0)}


def attack_settings(cfg: dict) -> tuple[float, float, int, str]:
    """(eps, step_size, steps, random_start) from an attack config section."""
    start = cfg.get("random_start", "uniform")
    if start not in RANDOM_STARTS:
        raise ValueError(f"unknown attack random_start {start!r}; allowed: {', '.join(RANDOM_STARTS)}")
    return float(cfg["eps"]), float(cfg["step_size"]), int(cfg["steps"]), start


def random_start(x: torch.Tensor, eps: float, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Starting point of PGD inside the eps-ball and [0, 1]: uniform in the ball (Madry),
    x + 0.001 * N(0, 1) (the MTARD/ARD reference code's training attack), or x itself."""
    if kind == "none":
        return x.clone()
    if kind == "uniform":
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1
        noise = noise * eps
    else:
        noise = (0.001 * torch.randn(x.shape, generator=generator, device="cpu").to(x.device)).clamp(-eps, eps)
    return (x + noise).clamp(0.0, 1.0)


@contextmanager
def attacked(model: torch.nn.Module):
    """`model` as an attack sees it: eval mode (BatchNorm on its running statistics) and its
    parameters frozen, so a backward computes the input gradient only, not the weights' (the
    same input gradient, bit for bit; about a quarter of an AutoAttack evaluation's time
    measured on this project's CPU); both restored after."""
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), grad_flags):
            p.requires_grad_(flag)
        model.train(was_training)


def linf_pgd(model: torch.nn.Module, x: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor], eps: float,
             step_size: float, steps: int, start: str = "uniform",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD ascending `loss(model(x'))` (a scalar); returns x_adv (detached) with
    ||x_adv - x||_inf <= eps and x_adv in [0, 1]. The model is `attacked` (eval mode, frozen)."""
    with attacked(model):
        x = x.detach()
        lower, upper = (x - eps).clamp_min(0.0), (x + eps).clamp_max(1.0)
        x_adv = random_start(x, eps, start, generator)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(loss(model(x_adv)), x_adv)
            x_adv = torch.max(torch.min(x_adv.detach() + step_size * grad.sign(), upper), lower)
    return x_adv.detach()


def pgd_attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step_size: float,
               steps: int, start: str = "uniform", generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD on the cross-entropy of `model` (Madry et al. 2018)."""
    return linf_pgd(model, x, lambda logits: F.cross_entropy(logits, y), eps, step_size, steps, start, generator)


def pgd_from_config(model, x, y, cfg: dict, generator: torch.Generator | None = None) -> torch.Tensor:
    eps, step, steps, start = attack_settings(cfg)
    return pgd_attack(model, x, y, eps, step, steps, start, generator)


@torch.no_grad()
def _correct(model, x, y) -> int:
    return int((model(x).argmax(1) == y).sum())


@timed("evaluation")
def robustness_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attack: dict,
                       batch_size: int = 1024, seed: int = 0, prefix: str = "test") -> dict[str, float]:
    """{prefix}_clean_acc, {prefix}_pgd_acc (PGD-`steps`) and {prefix}_weighted_robust_acc
    (their mean, MTARD's summary) of `model` on (x, y); the random start is seeded."""
    gen = torch.Generator().manual_seed(seed)
    clean = adv = 0
    batches = Progress(f"{prefix} PGD-{attack_settings(attack)[2]} batches", -(-len(y) // batch_size))
    with attacked(model):
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            clean += _correct(model, xb, yb)
            adv += _correct(model, pgd_from_config(model, xb, yb, attack, gen), yb)
            batches.update()
    n = len(y)
    out = {f"{prefix}_clean_acc": clean / n, f"{prefix}_pgd_acc": adv / n}
    out[f"{prefix}_weighted_robust_acc"] = (out[f"{prefix}_clean_acc"] + out[f"{prefix}_pgd_acc"]) / 2
    return out
