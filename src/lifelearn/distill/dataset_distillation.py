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
- smooth experts (`train_expert`), as the authors' buffer.py trains them: SGD with momentum
  0.9 and weight decay 1e-3, lr x `lr_decay` once after epoch E // 2 + 1 (the optimiser
  rebuilt, as there), the CE multiplied by the clipping schedule over the first epochs and a
  gradient penalty lambda * mean (||d sum(logits) / d x||_2 over channels - 1)^2
  (`gradient_penalty`); plain experts as MTT's buffer.py: SGD, no momentum, no decay;
- representative initialisation: per class, k-means (k = IPC) on the final expert's
  logits, the real sample of each cluster nearest its centre (`representative_init`);
- balanced inner loss: CE x w(t), w(t) = log_5(t - h + 8) if t >= h else
  1 / log_5(h - t + 8), h = max_start_epoch // 2 (`balance_factor`);
- intermediate matching: + the same normalised distance at the student steps
  (N // M) * j, j = 1..M-1, against theta*_{t+j}, summed with weight 1 (the authors'
  --agg_middle_loss);
- weight perturbation: each convolution weight (ndim 4; the authors' weightPerturb)
  W <- W + W * d / ||d||_F, d ~ N(0, I), on the student's start point, and every matching
  distance normalised by the distance from that perturbed start (their param_dist);
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
from lifelearn.io import save_torch
from lifelearn.models import build_model
from lifelearn.progress import Progress

SWITCHES = ("representative_init", "balanced_loss", "intermediate_matching", "weight_perturbation", "inner_momentum")
INNER_MOMENTUM = 0.9
PERTURBATION_ALPHA = 1.0
INTERMEDIATE_WEIGHT = 1.0
PROGRESS_EVERY = 10  # iterations between saved distillation states (resume after a kill)
# The clipping schedule of the authors' buffer.py at its last revision (22873a8): CE x these
# factors over the first len(...) epochs, x 1 after. An earlier revision (207b2ef) used
# 0.5, 0.5, 0.55, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9 and lr x 0.7; both are config keys.
AUTHORS_CLIP_SCHEDULE = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


# --------------------------------------------------------------------------- experts
def clip_factor(epoch: int, schedule=AUTHORS_CLIP_SCHEDULE) -> float:
    """Clipping-loss factor of epoch `epoch`: schedule[epoch] over the schedule, then 1
    (an empty schedule = no clipping)."""
    return float(schedule[epoch]) if epoch < len(schedule) else 1.0


def lr_at(epoch: int, lr: float, epochs: int, decay: float) -> float:
    """Expert learning rate of epoch `epoch` (0-based): both reference buffer.py files test
    `e in [E // 2 + 1]` after training epoch e and multiply lr by the decay there, so epochs
    E // 2 + 2 .. E - 1 run at lr * decay (MTT: decay only with --decay, x0.1; Shen et al.: x0.6)."""
    return lr * decay if epoch > epochs // 2 + 1 else lr


def gradient_penalty(model: nn.Module, x: torch.Tensor, lam: float) -> torch.Tensor:
    """Gradient penalty as the authors' utils.epoch_gp computes it (LAMBDA = 2):
    g = d sum(model(x)) / d x on the clean batch (a second forward pass; the gradient of the
    summed LOGITS, not of the CE), its L2 norm over dim 1 (the channels: one norm per pixel
    for images; for flat inputs dim 1 is the whole sample), lam * mean((norm - 1)^2) over
    batch and pixels. We use their form, not the paper's per-sample WGAN-GP wording, because
    it is what produced the published trajectories; the graph is kept (create_graph)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    return lam * ((grad.norm(p=2, dim=1) - 1) ** 2).mean()


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
                 options: dict | None = None,
                 x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, augment=None) -> dict:
    """Train one expert by SGD on (x, y); the flat parameters after every epoch.

    `options` (an expert set of the config): momentum, weight_decay, lr_decay (applied as
    `lr_at`; the optimiser is rebuilt there, momentum buffer reset, as both buffer.py files
    do), clip_schedule (`clip_factor`; [] = off) and grad_penalty (lambda; 0 = off).
    `augment` (a dsa.SiameseAugment or None): each real batch is augmented, seeded from the
    expert's generator (both buffer.py files train experts with DSA); the gradient penalty
    is taken on the clean batch, as the authors' epoch_gp does.
    Returns {"trajectory": (epochs + 1, P) tensor (row 0 = initialisation),
    "train_loss": (epochs,), "val_acc": (epochs + 1,), "lr": (epochs,)}.
    """
    o = {"momentum": 0.0, "weight_decay": 0.0, "lr_decay": 1.0, "clip_schedule": [], "grad_penalty": 0.0,
         **(options or {})}
    epochs, bs = train_cfg["epochs"], train_cfg["batch_size"]
    gen = torch.Generator().manual_seed(seed)

    def make_opt(lr):
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=o["momentum"], weight_decay=o["weight_decay"])

    def val_acc() -> float:
        if x_val is None:
            return float("nan")
        with torch.no_grad():
            return (model(x_val).argmax(1) == y_val).float().mean().item()

    traj, losses, accs, lrs = [flat_params(model)], [], [val_acc()], []
    lr = lr_at(0, train_cfg["lr"], epochs, o["lr_decay"])
    opt = make_opt(lr)
    steps = Progress(f"expert seed{seed} steps", epochs * math.ceil(len(y) / bs))
    for epoch in range(epochs):
        if lr_at(epoch, train_cfg["lr"], epochs, o["lr_decay"]) != lr:
            lr = lr_at(epoch, train_cfg["lr"], epochs, o["lr_decay"])
            opt = make_opt(lr)
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for b in range(0, len(y), bs):
            idx = order[b:b + bs]
            xb = x[idx] if augment is None else augment(x[idx], seed=int(torch.randint(2**31, (1,), generator=gen)))
            ce = F.cross_entropy(model(xb), y[idx], reduction="none")
            loss = ce.mean() * clip_factor(epoch, o["clip_schedule"])
            if o["grad_penalty"] > 0:
                loss = loss + gradient_penalty(model, x[idx], o["grad_penalty"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += ce.detach().sum().item()
            steps.update()
        losses.append(total / len(y))
        lrs.append(lr)
        traj.append(flat_params(model))
        accs.append(val_acc())
    return {"trajectory": torch.stack(traj), "train_loss": torch.tensor(losses), "val_acc": torch.tensor(accs),
            "lr": torch.tensor(lrs)}


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
    """W <- W + alpha * W * d / ||d||_F, d ~ N(0, I), for every convolution weight (ndim 4),
    as the authors' weightPerturb (`len(i.shape) == 4`); linear weights and biases are kept."""
    parts = []
    for (name, shape), w in zip(layout, torch.split(flat, [math.prod(s) for _, s in layout])):
        if len(shape) == 4:
            d = torch.randn(w.shape, generator=gen, dtype=w.dtype)
            w = w + alpha * w * d / d.norm()
        parts.append(w)
    return torch.cat(parts)


def unroll(model: nn.Module, layout, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
           lr: torch.Tensor, steps: int, momentum: float = 0.0, loss_weight: float = 1.0,
           batch_syn: int | None = None, gen: torch.Generator | None = None, augment=None) -> list[torch.Tensor]:
    """`steps` differentiable SGD steps from `start` on (x, y); every iterate (steps + 1 tensors).
    `augment` (DSA, or None): each step's synthetic batch is augmented differentiably, seeded
    from `gen` (MTT's distill.py: DiffAugment on x inside the unrolled loop)."""
    params, velocity = [start], None
    n = len(y)
    for _ in range(steps):
        if batch_syn is None or batch_syn >= n:
            xb, yb = x, y
        else:
            idx = torch.randperm(n, generator=gen)[:batch_syn]
            xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, seed=int(torch.randint(2**31, (1,), generator=gen)))
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
    (N // M) * j is also matched to theta*_{t+j} (j = 1..M-1), each term added with weight 1
    (the authors' distill.py, --agg_middle_loss). Every distance is normalised by the distance
    from `start`, the point the student actually began from (the perturbed one under weight
    perturbation: their param_dist uses starting_params after weightPerturb)."""
    loss = matching_loss(params[-1], start, traj[start_epoch + expert_epochs])
    steps = len(params) - 1
    for j in range(1, expert_epochs if intermediate else 1):
        loss = loss + INTERMEDIATE_WEIGHT * matching_loss(params[(steps // expert_epochs) * j], start,
                                                          traj[start_epoch + j])
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
    save_torch(path, state)


def load_progress(path: Path | None) -> dict | None:
    return torch.load(path, weights_only=True) if path is not None and Path(path).exists() else None


@phases.timed("training")
def distill(model: nn.Module, trajectories: list[torch.Tensor], x_init: torch.Tensor, y_syn: torch.Tensor,
            s: DistillSettings, seed: int, progress: Path | None = None, augment=None, clamp: bool = True) -> dict:
    """Optimise synthetic images (initialised at `x_init`) and log(alpha) by trajectory matching.

    `model` only supplies the architecture (its parameters are replaced by the expert's);
    returns {"x": images, "lr": alpha, "history": [{iteration, loss, lr, expert, start_epoch}]}.
    With `progress`, the whole state (images, step size, both optimisers, the sampling
    generator, the loss history) is saved there every PROGRESS_EVERY iterations, and a
    run finding that file continues from it: a killed job resumes where it stopped and
    ends as an uninterrupted one would. `augment`: DSA in the inner loop (`unroll`); `clamp`:
    project the images to [0, 1] after each update (off for ZCA-whitened images, as MTT).
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
        start = start.clone().requires_grad_(True)  # the student's start; the losses' normaliser
        weight = balance_factor(t, s.max_start_epoch) if s.balanced_loss else 1.0
        params = unroll(model, layout, start, x_syn, y_syn, log_lr.exp(), s.syn_steps, momentum, weight,
                        s.batch_syn, gen, augment)
        loss = trajectory_loss(params, traj, t, s.expert_epochs, start.detach(), s.intermediate_matching)
        opt_img.zero_grad(set_to_none=True)
        opt_lr.zero_grad(set_to_none=True)
        loss.backward()
        opt_img.step()
        opt_lr.step()
        if clamp:
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
