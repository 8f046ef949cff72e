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

Seed batching (issue 16): `distill_seeds` distils K seeds in lock-step, each with its own
experts, generator, images and step size; `stacked` runs their unrolled inner loops as one
batched model (train.batched.stacked_functional: grouped convolutions, baddbmm), which equals
the seeds alone up to float rounding. `distill` is its one-seed case, unchanged in every bit.

The step size is learned as log(alpha) (always positive; `lr_lr` is a step on log alpha).
Synthetic images are kept in [0, 1] (projected after every update), like every dataset
here, so they can be saved in the datasets' array format.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
    """Views of `flat` ([P], or [K, P] for K seeds: [K, *shape] each) shaped as the model's
    parameters (gradients flow through)."""
    out, i = {}, 0
    for name, shape in layout:
        n = math.prod(shape)
        out[name] = flat[..., i:i + n].reshape(*flat.shape[:-1], *shape)
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


def per_seed_forward(model: nn.Module, layout) -> Callable:
    """forward(params [K, P], xb [K, B, ...]) -> [K, B, C]: `model` on each seed's flat
    parameters and batch in turn (torch.func.functional_call), the arithmetic of one seed alone."""

    def forward(params: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        return torch.stack([functional_call(model, unflatten(params[k], layout), (xb[k],)) for k in range(len(xb))])

    return forward


def stacked_forward(model: nn.Module, layout) -> Callable:
    """forward(params [K, P], xb [K, B, ...]) -> [K, B, C] as one batched model: train.batched's
    kernels (grouped convolution, baddbmm) on the K seeds' parameters side by side. Each seed's
    function is its own, so its gradient is too; only float rounding differs from `per_seed_forward`."""
    from lifelearn.train.batched import stacked_functional

    run = stacked_functional(model)
    return lambda params, xb: run(unflatten(params, layout), xb)


def unroll(model: nn.Module, layout, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
           lr: torch.Tensor, steps: int, momentum: float = 0.0, loss_weight: float = 1.0,
           batch_syn: int | None = None, gen: torch.Generator | None = None, augment=None) -> list[torch.Tensor]:
    """`steps` differentiable SGD steps from `start` on (x, y); every iterate (steps + 1 tensors).
    `augment` (DSA, or None): each step's synthetic batch is augmented differentiably, seeded
    from `gen` (MTT's distill.py: DiffAugment on x inside the unrolled loop). One seed of `unroll_seeds`."""
    params = unroll_seeds(per_seed_forward(model, layout), start[None], x[None], y, lr.reshape(1), steps, momentum,
                          [loss_weight], batch_syn, [gen], augment)
    return [p[0] for p in params]


def unroll_seeds(forward: Callable, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor,
                 steps: int, momentum: float = 0.0, loss_weights=None, batch_syn: int | None = None,
                 gens=None, augment=None) -> list[torch.Tensor]:
    """`unroll` for K seeds at once: start [K, P], x [K, N, ...] (each seed's synthetic set, labels
    `y` [N] shared), lr [K], `loss_weights` and `gens` one per seed. Seed k draws its batch and
    augmentation from gens[k] in the order one seed alone draws them; the loss is the SUM of the
    seeds' cross-entropies, and seed k's CE depends only on row k, so the gradient of row k is seed
    k's own. `forward`: `per_seed_forward` or `stacked_forward`. Iterates are [K, P]."""
    K, n = len(start), len(y)
    loss_weights, gens = loss_weights or [1.0] * K, gens or [None] * K
    params, velocity = [start], None
    for _ in range(steps):
        batches, labels = [], []
        for k in range(K):
            xb, yb = x[k], y
            if batch_syn is not None and batch_syn < n:
                idx = torch.randperm(n, generator=gens[k])[:batch_syn]
                xb, yb = xb[idx], y[idx]
            if augment is not None:
                xb = augment(xb, seed=int(torch.randint(2**31, (1,), generator=gens[k])))
            batches.append(xb)
            labels.append(yb)
        logits = forward(params[-1], torch.stack(batches))
        ce = torch.stack([F.cross_entropy(logits[k], labels[k]) * loss_weights[k] for k in range(K)]).sum()
        (grad,) = torch.autograd.grad(ce, params[-1], create_graph=True)
        velocity = grad if velocity is None or momentum == 0 else momentum * velocity + grad
        params.append(params[-1] - lr[:, None] * velocity)
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


@dataclass
class SeedRun:
    """One distillation seed: its experts' trajectories, initial images and progress file, and
    the state `distill_seeds` advances (images, log step size, both optimisers' state dicts,
    the sampling generator, the loss history, the next iteration)."""

    seed: int
    trajectories: list
    x_init: torch.Tensor
    progress: Path | None = None
    x: torch.Tensor | None = None
    log_lr: torch.Tensor | None = None
    opt_img: dict | None = None
    opt_lr: dict | None = None
    gen: torch.Generator | None = None
    history: list = field(default_factory=list)
    iteration: int = 0

    def start(self, s: DistillSettings) -> "SeedRun":
        """Fresh state (images x_init, alpha = lr_init, generator seeded by `seed`), or the one
        saved in `progress`."""
        self.x, self.log_lr = self.x_init.clone(), torch.tensor(math.log(s.lr_init))
        self.gen = torch.Generator().manual_seed(self.seed)
        state = load_progress(self.progress)
        if state is not None:
            self.x, self.log_lr = state["x"].clone(), state["log_lr"].clone()
            self.opt_img, self.opt_lr = state["opt_img"], state["opt_lr"]
            self.gen.set_state(state["generator"])
            self.history, self.iteration = list(state["history"]), int(state["iteration"])
        return self

    def max_start(self, s: DistillSettings) -> int:
        epochs = min(len(t) for t in self.trajectories) - 1
        if epochs - s.expert_epochs < 1:
            raise ValueError(f"experts have {epochs} epochs: too few for expert_epochs {s.expert_epochs}")
        return min(s.max_start_epoch, epochs - s.expert_epochs)

    def save(self) -> None:
        save_progress(self.progress, {"iteration": self.iteration, "x": self.x, "log_lr": self.log_lr,
                                      "opt_img": self.opt_img, "opt_lr": self.opt_lr,
                                      "generator": self.gen.get_state(), "history": self.history})

    def result(self) -> dict:
        return {"x": self.x, "lr": float(self.log_lr.exp()), "history": self.history}


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
    run = SeedRun(seed, trajectories, x_init, progress)
    return distill_seeds(model, [run], y_syn, s, augment, clamp)[0]


def distill_seeds(model: nn.Module, runs: list[SeedRun], y_syn: torch.Tensor, s: DistillSettings, augment=None,
                  clamp: bool = True, stacked: bool = False) -> list[dict]:
    """`distill` for K seeds in lock-step, one result per run (issue 16: seed batching).

    Each seed keeps its own experts, generator (drawn in the order one seed alone draws it),
    images, step size and progress file; the images [K, N, ...] and log step sizes [K] of
    the K seeds are stacked under one SGD each (momentum 0.5 is elementwise, so one optimiser
    equals K), and the summed matching losses give each seed its own gradient. `stacked`:
    the inner loop runs as one batched model (`stacked_forward`), equal to the seeds alone
    within float rounding (tests/test_dataset_distillation.py); without it each seed's
    forward is its own functional_call, and K = 1 is `distill` exactly. Runs resumed at
    different iterations (a kill between two seeds' progress files) first bring the
    lagging ones level, batched among themselves."""
    runs = [run.start(s) for run in runs]
    while len({run.iteration for run in runs}) > 1:
        lag = min(run.iteration for run in runs)
        lead = min(run.iteration for run in runs if run.iteration > lag)
        _advance(model, [run for run in runs if run.iteration == lag], y_syn, s, lead, augment, clamp, stacked)
    _advance(model, runs, y_syn, s, s.iterations, augment, clamp, stacked)
    return [run.result() for run in runs]


def _stacked_sgd(tensor: torch.Tensor, lr: float, states: list) -> torch.optim.SGD:
    """SGD (momentum 0.5) over the K seeds' stacked `tensor`, its momentum buffer stacked from
    the seeds' saved state dicts (none before the first step)."""
    opt = torch.optim.SGD([tensor], lr=lr, momentum=0.5)
    if states[0] is not None:
        merged = {"state": {0: {"momentum_buffer": torch.stack([st["state"][0]["momentum_buffer"] for st in states])}},
                  "param_groups": states[0]["param_groups"]}
        opt.load_state_dict(merged)
    return opt


def _seed_state(opt: torch.optim.SGD, k: int) -> dict:
    """Seed k's slice of a stacked SGD's state dict (the format one seed alone saves)."""
    sd = opt.state_dict()
    return {"state": {0: {"momentum_buffer": sd["state"][0]["momentum_buffer"][k].clone()}},
            "param_groups": sd["param_groups"]}


def _advance(model: nn.Module, runs: list[SeedRun], y_syn: torch.Tensor, s: DistillSettings, until: int,
             augment, clamp: bool, stacked: bool) -> None:
    """Advance `runs` (all at one iteration) to iteration `until`, writing progress files on the way."""
    layout = param_layout(model)
    forward = (stacked_forward if stacked else per_seed_forward)(model, layout)
    max_starts = [run.max_start(s) for run in runs]
    x_syn = torch.stack([run.x for run in runs]).requires_grad_(True)
    log_lr = torch.stack([run.log_lr for run in runs]).requires_grad_(True)
    opt_img = _stacked_sgd(x_syn, s.lr_img, [run.opt_img for run in runs])
    opt_lr = _stacked_sgd(log_lr, s.lr_lr, [run.opt_lr for run in runs])
    momentum = INNER_MOMENTUM if s.inner_momentum else 0.0
    seeds = ",".join(str(run.seed) for run in runs)
    label = f"seed{seeds}" if len(runs) == 1 else f"seeds {seeds}"
    bar = Progress(f"distill ipc{s.ipc} {label} iterations", s.iterations, initial=runs[0].iteration)
    for it in range(runs[0].iteration, until):
        draws, starts = [], []
        for run, max_start in zip(runs, max_starts):
            e = int(torch.randint(len(run.trajectories), (1,), generator=run.gen))
            t = int(torch.randint(max_start, (1,), generator=run.gen))  # t < max_start_epoch
            start = run.trajectories[e][t]
            starts.append(perturb(start, layout, run.gen) if s.weight_perturbation else start)
            draws.append((e, t))
        start = torch.stack(starts).requires_grad_(True)  # the students' starts; the losses' normalisers
        weights = [balance_factor(t, s.max_start_epoch) if s.balanced_loss else 1.0 for _, t in draws]
        params = unroll_seeds(forward, start, x_syn, y_syn, log_lr.exp(), s.syn_steps, momentum, weights,
                              s.batch_syn, [run.gen for run in runs], augment)
        losses = [trajectory_loss([p[k] for p in params], run.trajectories[e], t, s.expert_epochs,
                                  start[k].detach(), s.intermediate_matching)
                  for k, (run, (e, t)) in enumerate(zip(runs, draws))]
        opt_img.zero_grad(set_to_none=True)
        opt_lr.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        opt_img.step()
        opt_lr.step()
        if clamp:
            with torch.no_grad():
                x_syn.clamp_(0.0, 1.0)
        for k, (run, (e, t)) in enumerate(zip(runs, draws)):
            run.history.append({"iteration": it, "loss": losses[k].item(), "lr": log_lr[k].exp().item(),
                                "expert": e, "start_epoch": t})
        if (it + 1) % PROGRESS_EVERY == 0 and it + 1 < s.iterations:
            _sync(runs, x_syn, log_lr, opt_img, opt_lr, it + 1)
            for run in runs:
                if run.progress is not None:
                    run.save()
        bar.update()
    _sync(runs, x_syn, log_lr, opt_img, opt_lr, until)


def _sync(runs: list[SeedRun], x_syn, log_lr, opt_img, opt_lr, iteration: int) -> None:
    """Write the stacked state back into each run."""
    for k, run in enumerate(runs):
        run.x, run.log_lr, run.iteration = x_syn[k].detach().clone(), log_lr[k].detach().clone(), iteration
        if opt_img.state:
            run.opt_img, run.opt_lr = _seed_state(opt_img, k), _seed_state(opt_lr, k)


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
