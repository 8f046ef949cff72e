"""Dataset distillation by trajectory matching (PAPERS.md section 4).

MTT (Cazenavette et al., CVPR 2022): expert networks are trained on the real data and
their parameters theta*_e saved after every epoch e. A synthetic set (IPC images per
class) and a learnable step size alpha are optimised so that `syn_steps` SGD steps on
the synthetic set, started from theta*_t, land near theta*_{t+M}:

    L = ||theta_hat_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2        (MTT eq. 2)

back-propagated through the unrolled steps (torch.func.functional_call on one flat
parameter vector) into the images and alpha, both updated by SGD with momentum 0.5.

The additions of Shen et al. 2023 ("Efficient Dataset Distillation through Alignment
with Smooth and High-Quality Expert Trajectories"), each its own switch (all off =
plain MTT):
- smooth experts: clipping loss (CE x 0.5, 0.55, ..., 0.95 over epochs 0..9, then x 1)
  and gradient penalty lambda * mean_i (||d CE_i / d x_i||_2 - 1)^2  (`train_expert`);
- representative initialisation: per class, k-means (k = IPC) on the final expert's
  logits, the real sample of each cluster nearest its centre (`representative_init`);
- balanced inner loss: CE x w(t), w(t) = log_5(t - h + 8) if t >= h else
  1 / log_5(h - t + 8), h = max_start_epoch // 2 (`balance_factor`);
- intermediate matching: + the same normalised distance at the student steps
  round(j N / M), j = 1..M-1, against theta*_{t+j}, averaged over j, weight 1;
- weight perturbation: each weight tensor (ndim > 1) W <- W + W * d / ||d||_F,
  d ~ N(0, I), on the student's start point;
- inner momentum: the unrolled SGD uses momentum 0.9 (v <- 0.9 v + g; theta <- theta - alpha v).

The step size is learned as log(alpha) (always positive; `lr_lr` is a step on log alpha).
Synthetic images are kept in [0, 1] (projected after every update), like every dataset
here, so they can be saved in the datasets' array format.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from lifelearn import phases
from lifelearn.io import atomic_path
from lifelearn.models import build_model
from lifelearn.progress import Progress

SWITCHES = ("representative_init", "balanced_loss", "intermediate_matching", "weight_perturbation", "inner_momentum")
INNER_MOMENTUM = 0.9
PERTURBATION_ALPHA = 1.0
INTERMEDIATE_WEIGHT = 1.0
PROGRESS_EVERY = 10  # iterations between saved distillation states (resume after a kill)
CLIP_START, CLIP_STEP, CLIP_EPOCHS = 0.5, 0.05, 10


# --------------------------------------------------------------------------- experts
def clip_factor(epoch: int) -> float:
    """Clipping-loss schedule of the smooth experts: 0.5, 0.55, ..., 0.95 for epochs 0..9, then 1."""
    return CLIP_START + CLIP_STEP * epoch if epoch < CLIP_EPOCHS else 1.0


def gradient_penalty(per_sample_loss: torch.Tensor, x: torch.Tensor, lam: float) -> torch.Tensor:
    """lam * mean_i (||d loss_i / d x_i||_2 - 1)^2; `x` must require grad (graph kept)."""
    (grad,) = torch.autograd.grad(per_sample_loss.sum(), x, create_graph=True)
    return lam * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def param_layout(model: nn.Module) -> list[tuple[str, torch.Size]]:
    return [(name, p.shape) for name, p in model.named_parameters()]


def unflatten(flat: torch.Tensor, layout: list[tuple[str, torch.Size]]) -> dict[str, torch.Tensor]:
    """Views of `flat` shaped as the model's parameters (gradients flow through)."""
    out, i = {}, 0
    for name, shape in layout:
        n = math.prod(shape)
        out[name] = flat[i:i + n].view(shape)
        i += n
    return out


@phases.timed("training")
def train_expert(model: nn.Module, x: torch.Tensor, y: torch.Tensor, train_cfg: dict, seed: int,
                 clip_loss: bool = False, grad_penalty: float = 0.0,
                 x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None) -> dict:
    """Train one expert by SGD on (x, y); the flat parameters after every epoch.

    Returns {"trajectory": (epochs + 1, P) tensor (row 0 = initialisation),
    "train_loss": (epochs,), "val_acc": (epochs + 1,)}.
    """
    opt = torch.optim.SGD(model.parameters(), lr=train_cfg["lr"], momentum=train_cfg.get("momentum", 0.0),
                          weight_decay=train_cfg.get("weight_decay", 0.0))
    gen = torch.Generator().manual_seed(seed)
    bs = train_cfg["batch_size"]

    def val_acc() -> float:
        if x_val is None:
            return float("nan")
        with torch.no_grad():
            return (model(x_val).argmax(1) == y_val).float().mean().item()

    traj, losses, accs = [flat_params(model)], [], [val_acc()]
    steps = Progress(f"expert seed{seed} steps", train_cfg["epochs"] * math.ceil(len(y) / bs))
    for epoch in range(train_cfg["epochs"]):
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for b in range(0, len(y), bs):
            idx = order[b:b + bs]
            xb = x[idx].requires_grad_(grad_penalty > 0)
            ce = F.cross_entropy(model(xb), y[idx], reduction="none")
            loss = ce.mean() * (clip_factor(epoch) if clip_loss else 1.0)
            if grad_penalty > 0:
                loss = loss + gradient_penalty(ce, xb, grad_penalty)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += ce.detach().sum().item()
            steps.update()
        losses.append(total / len(y))
        traj.append(flat_params(model))
        accs.append(val_acc())
    return {"trajectory": torch.stack(traj), "train_loss": torch.tensor(losses), "val_acc": torch.tensor(accs)}


def expert_payload(model: nn.Module, result: dict, spec: dict, input_shape, num_classes: int) -> dict:
    """The compact per-expert file: a dict of stacked tensors (loads with weights_only=True)."""
    layout = param_layout(model)
    stacked = {name: t.reshape(len(result["trajectory"]), *shape)
               for (name, shape), t in zip(layout, _split_columns(result["trajectory"], layout))}
    return {"spec": dict(spec), "input_shape": list(input_shape), "num_classes": int(num_classes),
            "names": [n for n, _ in layout], "trajectory": stacked,
            "train_loss": result["train_loss"], "val_acc": result["val_acc"]}


def _split_columns(traj: torch.Tensor, layout) -> list[torch.Tensor]:
    return list(torch.split(traj, [math.prod(s) for _, s in layout], dim=1))


def load_trajectory(path) -> tuple[torch.Tensor, dict]:
    """(epochs + 1, P) flat trajectory of one expert file, and the file's payload."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    traj = torch.cat([payload["trajectory"][n].flatten(1) for n in payload["names"]], dim=1)
    return traj, payload


# --------------------------------------------------------------------- distillation
def matching_loss(student: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||student - target||^2 / ||start - target||^2 (MTT eq. 2)."""
    return (student - target).pow(2).sum() / (start - target).pow(2).sum()


def balance_factor(start_epoch: int, max_start_epoch: int) -> float:
    """Balanced inner loss weight w(t): log_5(t - h + 8) for t >= h, else 1 / log_5(h - t + 8),
    h = max_start_epoch // 2 (Shen et al.'s reference code, distill.py; larger for late starts)."""
    h = max_start_epoch // 2
    if start_epoch >= h:
        return math.log(start_epoch - h + 8, 5)
    return 1.0 / math.log(h - start_epoch + 8, 5)


def perturb(flat: torch.Tensor, layout, gen: torch.Generator, alpha: float = PERTURBATION_ALPHA) -> torch.Tensor:
    """W <- W + alpha * W * d / ||d||_F for every weight tensor (ndim > 1), d ~ N(0, I)."""
    parts = []
    for (name, shape), w in zip(layout, torch.split(flat, [math.prod(s) for _, s in layout])):
        if len(shape) > 1:
            d = torch.randn(w.shape, generator=gen, dtype=w.dtype)
            w = w + alpha * w * d / d.norm()
        parts.append(w)
    return torch.cat(parts)


def unroll(model: nn.Module, layout, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
           lr: torch.Tensor, steps: int, momentum: float = 0.0, loss_weight: float = 1.0,
           batch_syn: int | None = None, gen: torch.Generator | None = None) -> list[torch.Tensor]:
    """`steps` differentiable SGD steps from `start` on (x, y); every iterate (steps + 1 tensors)."""
    params, velocity = [start], None
    n = len(y)
    for _ in range(steps):
        if batch_syn is None or batch_syn >= n:
            xb, yb = x, y
        else:
            idx = torch.randperm(n, generator=gen)[:batch_syn]
            xb, yb = x[idx], y[idx]
        logits = functional_call(model, unflatten(params[-1], layout), (xb,))
        ce = F.cross_entropy(logits, yb) * loss_weight
        (grad,) = torch.autograd.grad(ce, params[-1], create_graph=True)
        velocity = grad if velocity is None or momentum == 0 else momentum * velocity + grad
        params.append(params[-1] - lr * velocity)
    return params


def trajectory_loss(params: list[torch.Tensor], traj: torch.Tensor, start_epoch: int, expert_epochs: int,
                    start: torch.Tensor, intermediate: bool = False) -> torch.Tensor:
    """Matching loss of the unrolled iterates against the expert trajectory.

    The final iterate is matched to theta*_{t+M}; with `intermediate`, the iterate at step
    round(j N / M) is also matched to theta*_{t+j} (j = 1..M-1), mean over j, weight 1.
    Distances are normalised by the distance of the (unperturbed) expert start theta*_t."""
    expert_start = traj[start_epoch]
    loss = matching_loss(params[-1], expert_start, traj[start_epoch + expert_epochs])
    steps = len(params) - 1
    if intermediate and expert_epochs > 1:
        extra = [matching_loss(params[round(j * steps / expert_epochs)], expert_start, traj[start_epoch + j])
                 for j in range(1, expert_epochs)]
        loss = loss + INTERMEDIATE_WEIGHT * torch.stack(extra).mean()
    return loss


def check_ipc(y: np.ndarray, ipc: int, num_classes: int, dataset: str) -> None:
    """ValueError naming `dataset_distillation.ipc` when a class of the training split
    has fewer than `ipc` images (initialisation takes `ipc` distinct real images a class)."""
    counts = np.bincount(y, minlength=num_classes)
    short = {c: int(n) for c, n in enumerate(counts) if n < ipc}
    if short:
        raise ValueError(f"dataset_distillation.ipc: IPC {ipc} needs {ipc} training images per class, but "
                         f"{dataset}'s training split has fewer for class(es) {short} (at most {int(counts.min())})")


def random_real_init(y: np.ndarray, ipc: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices of `ipc` random real samples per class (class-major order)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), ipc, replace=False) for c in range(num_classes)])


def representative_init(logits: np.ndarray, y: np.ndarray, ipc: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices of the representative real samples: per class, k-means (k = ipc, scikit-learn)
    on the expert logits; for each cluster, its member nearest the centre (Euclidean, in
    logit space). Members are used so the ipc samples of a class are distinct."""
    from sklearn.cluster import KMeans

    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        km = KMeans(n_clusters=ipc, n_init=10, random_state=seed).fit(logits[members])
        for k in range(ipc):
            in_k = members[km.labels_ == k]
            dist = np.linalg.norm(logits[in_k] - km.cluster_centers_[k], axis=1)
            chosen.append(in_k[np.argmin(dist)])
    return np.asarray(chosen)


@dataclass
class DistillSettings:
    """One distillation run: the method's switches, the shared optimiser settings and
    the per-IPC trajectory settings (PAPERS.md section 4)."""

    ipc: int
    iterations: int
    syn_steps: int
    expert_epochs: int
    max_start_epoch: int
    lr_img: float
    lr_lr: float
    lr_init: float
    batch_syn: int | None = None
    representative_init: bool = False
    balanced_loss: bool = False
    intermediate_matching: bool = False
    weight_perturbation: bool = False
    inner_momentum: bool = False


def save_progress(path: Path, state: dict) -> None:
    """Write the distillation state atomically (a kill leaves the previous one intact)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_progress(path: Path | None) -> dict | None:
    return torch.load(path, weights_only=True) if path is not None and Path(path).exists() else None


@phases.timed("training")
def distill(model: nn.Module, trajectories: list[torch.Tensor], x_init: torch.Tensor, y_syn: torch.Tensor,
            s: DistillSettings, seed: int, progress: Path | None = None) -> dict:
    """Optimise synthetic images (initialised at `x_init`) and log(alpha) by trajectory matching.

    `model` only supplies the architecture (its parameters are replaced by the expert's);
    returns {"x": images, "lr": alpha, "history": [{iteration, loss, lr, expert, start_epoch}]}.
    With `progress`, the whole state (images, step size, both optimisers, the sampling
    generator, the loss history) is saved there every PROGRESS_EVERY iterations, and a
    run finding that file continues from it: a killed job resumes where it stopped and
    ends as an uninterrupted one would.
    """
    max_start = min(s.max_start_epoch, min(len(t) for t in trajectories) - 1 - s.expert_epochs)
    if max_start < 1:
        raise ValueError(f"experts have {min(len(t) for t in trajectories) - 1} epochs: too few for "
                         f"expert_epochs {s.expert_epochs}")
    layout = param_layout(model)
    gen = torch.Generator().manual_seed(seed)
    x_syn = x_init.clone().requires_grad_(True)
    log_lr = torch.tensor(math.log(s.lr_init), requires_grad=True)
    opt_img = torch.optim.SGD([x_syn], lr=s.lr_img, momentum=0.5)
    opt_lr = torch.optim.SGD([log_lr], lr=s.lr_lr, momentum=0.5)
    momentum = INNER_MOMENTUM if s.inner_momentum else 0.0
    history, first = [], 0
    state = load_progress(progress)
    if state is not None:
        with torch.no_grad():
            x_syn.copy_(state["x"])
            log_lr.copy_(state["log_lr"])
        opt_img.load_state_dict(state["opt_img"])
        opt_lr.load_state_dict(state["opt_lr"])
        gen.set_state(state["generator"])
        history, first = list(state["history"]), int(state["iteration"])
    iterations = Progress(f"distill ipc{s.ipc} seed{seed} iterations", s.iterations, initial=first)
    for it in range(first, s.iterations):
        e = int(torch.randint(len(trajectories), (1,), generator=gen))
        t = int(torch.randint(max_start, (1,), generator=gen))  # t < max_start_epoch
        traj = trajectories[e]
        start = traj[t]
        if s.weight_perturbation:
            start = perturb(start, layout, gen)
        start = start.clone().requires_grad_(True)
        weight = balance_factor(t, s.max_start_epoch) if s.balanced_loss else 1.0
        params = unroll(model, layout, start, x_syn, y_syn, log_lr.exp(), s.syn_steps, momentum, weight,
                        s.batch_syn, gen)
        loss = trajectory_loss(params, traj, t, s.expert_epochs, traj[t], s.intermediate_matching)
        opt_img.zero_grad(set_to_none=True)
        opt_lr.zero_grad(set_to_none=True)
        loss.backward()
        opt_img.step()
        opt_lr.step()
        with torch.no_grad():
            x_syn.clamp_(0.0, 1.0)
        history.append({"iteration": it, "loss": loss.item(), "lr": log_lr.exp().item(),
                        "expert": e, "start_epoch": t})
        if progress is not None and (it + 1) % PROGRESS_EVERY == 0 and it + 1 < s.iterations:
            save_progress(progress, {"iteration": it + 1, "x": x_syn.detach(), "log_lr": log_lr.detach(),
                                     "opt_img": opt_img.state_dict(), "opt_lr": opt_lr.state_dict(),
                                     "generator": gen.get_state(), "history": history})
        iterations.update()
    return {"x": x_syn.detach(), "lr": float(log_lr.detach().exp()), "history": history}


def expert_model(payload: dict, mean=None, std=None) -> nn.Module:
    """The expert architecture (normalisation from the dataset), for functional calls."""
    return build_model(payload["spec"], payload["input_shape"], payload["num_classes"], mean, std)


def logits_at(model: nn.Module, flat: torch.Tensor, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """Logits of `model` with parameters `flat` on `x`."""
    params = unflatten(flat, param_layout(model))
    with torch.no_grad():
        return torch.cat([functional_call(model, params, (x[i:i + batch],)) for i in range(0, len(x), batch)])


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
