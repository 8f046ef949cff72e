"""TGeo-KD: trilateral-geometry sample-wise fusion ratios (Hu et al., "Less or More
From Teacher: Exploiting Trilateral Geometry For Knowledge Distillation", ICLR 2024;
PAPERS.md section 3).

The loss is the shared sample-wise form (`kd.fused_loss`)
    alpha_i * tau^2 * KL(T_i^tau || S_i^tau) + (1 - alpha_i) * CE(S_i, y_i),
with alpha_i = f_phi(x_i) from a fusion network on the 9C trilateral features
    [S, T, T_bar_y, G, |S - G|, |S - T|, |S - T_bar_y|, (G - T_bar_y) * (G - S), (G - T) * (G - S)]
(`trilateral_features`): S, T the student's and teacher's softmax outputs, G the
one-hot label, T_bar_y the teacher's mean softmax output over the training samples of
class y (`teacher_class_means`, training split only, never val or test).

Choices (the paper leaves them open; each is a config key):
- S and T in the features are softmax outputs at `feature_tau` (default 1, the plain
  softmax of the notation in PAPERS.md); the KL term uses the distillation `tau`.
  Features are computed from detached outputs: alpha is a weight for the student.
- Bilevel optimisation (the paper's outer/inner loop), with a one-step unrolled
  hypergradient as in meta-re-weighting: per step, the student's parameters theta take
  a virtual step theta' = step(theta, d/dtheta L_alpha(theta, phi)) on the batch, and phi
  takes an Adam step (`fusion_lr`) on the student's CE at theta' on a meta-validation
  batch (`meta_objective`, torch.func.functional_call); then the student takes its real
  step on the alpha-weighted loss with the updated phi. `inner_step: follow` (default)
  makes the virtual step the one the student's real optimiser would take now
  (`optimizer_step`: SGD with its momentum buffer and weight decay, or Adam / AdamW with
  their moments and bias correction, at the scheduled learning rate), differentiable in
  the gradient; `inner_step: sgd` is the meta-re-weighting papers' plain SGD step at
  `inner_lr`, which mismatches a student trained by Adam at a tenth of that rate.
- The meta-validation set is `meta_val_fraction` (default 10%) of the TRAINING split,
  stratified and fixed by the seed; with `meta_val_holdout` it is removed from the
  student's training samples (the paper's "validation split carved from train"). The
  dataset's own val split stays the model-selection/report split and is never used here.
- The fusion net's output bias starts at logit(`alpha_init`), so training starts from
  vanilla KD's fixed ratio and the features move it per sample.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from lifelearn.distill.kd import DistillationModule, fused_loss, per_sample_ce, per_sample_kd
from lifelearn.distill.reweight import alpha_summary
from lifelearn.train.data import epoch_generator
from lifelearn.train.optim import build_optimizer

NUM_FEATURE_BLOCKS = 9


def trilateral_features(s: torch.Tensor, t: torch.Tensor, t_bar_y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The 9 blocks of C numbers per sample, concatenated: shape (N, 9C).

    [S, T, T_bar_y, G, |S-G|, |S-T|, |S-T_bar_y|, (G-T_bar_y)*(G-S), (G-T)*(G-S)]."""
    return torch.cat([s, t, t_bar_y, g, (s - g).abs(), (s - t).abs(), (s - t_bar_y).abs(),
                      (g - t_bar_y) * (g - s), (g - t) * (g - s)], dim=1)


class FusionNet(nn.Sequential):
    """Linear(9C, hidden) -> ReLU -> Linear(hidden, 1) -> Sigmoid; output bias at logit(alpha_init)."""

    def __init__(self, num_classes: int, hidden: int = 128, alpha_init: float = 0.5):
        super().__init__(nn.Linear(NUM_FEATURE_BLOCKS * num_classes, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())
        with torch.no_grad():
            self[2].bias.fill_(math.log(alpha_init / (1 - alpha_init)))


@torch.no_grad()
def teacher_class_means(teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                        tau: float = 1.0, batch_size: int = 1024) -> torch.Tensor:
    """T_bar: (C, C), row c = mean softmax(teacher(x)/tau) over the samples of class c
    (pass the TRAINING split only). A class without samples gets the uniform row."""
    probs = torch.cat([F.softmax(teacher(x[i:i + batch_size]) / tau, dim=1) for i in range(0, len(y), batch_size)])
    onehot = F.one_hot(y, num_classes).to(probs.dtype)  # a matmul: deterministic on every device
    sums, counts = onehot.T @ probs, onehot.sum(0)[:, None]
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, 1.0 / num_classes))


def carve_meta_val(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, meta) indices into the training split: `fraction` of each class (at least
    one sample of a class with two or more), drawn with a generator fixed by `seed`."""
    gen = torch.Generator().manual_seed(seed)
    y_cpu = y.cpu()
    meta = []
    for c in torch.unique(y_cpu).tolist():
        idx = torch.nonzero(y_cpu == c).squeeze(1)
        k = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        meta.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    meta_idx = torch.sort(torch.cat(meta)).values
    mask = torch.ones(len(y_cpu), dtype=torch.bool)
    mask[meta_idx] = False
    return torch.nonzero(mask).squeeze(1).to(y.device), meta_idx.to(y.device)


def fusion_alpha(fusion: nn.Module, fusion_params: dict | None, student_logits, teacher_logits, t_bar, y,
                 feature_tau: float) -> torch.Tensor:
    """alpha_i = f_phi(features_i), shape (N,); features from detached outputs."""
    num_classes = student_logits.shape[1]
    s = F.softmax(student_logits.detach() / feature_tau, dim=1)
    t = F.softmax(teacher_logits.detach() / feature_tau, dim=1)
    feats = trilateral_features(s, t, t_bar[y], F.one_hot(y, num_classes).to(s.dtype))
    out = fusion(feats) if fusion_params is None else functional_call(fusion, fusion_params, (feats,))
    return out.squeeze(1)


StepFn = Callable[[dict, dict], dict]  # (params, grads) -> params after one step


def sgd_step(lr: float) -> StepFn:
    """Plain SGD: theta - lr * g."""
    return lambda params, grads: {k: p - lr * grads[k] for k, p in params.items()}


def optimizer_step(optimizer: torch.optim.Optimizer, named: dict[str, torch.Tensor]) -> StepFn:
    """The step `optimizer` (torch SGD, Adam or AdamW, one param group) would take now from
    gradients g, as a differentiable function of (theta, g): its current lr (the schedule's),
    weight decay, momentum buffer / moments and step count, looked up by the real
    parameters `named` (name -> the optimiser's tensor). Follows torch.optim's update rules
    (dampening 0, no Nesterov, no AMSGrad); sqrt(v) is floored at 1e-15 so that an exactly
    zero gradient gives a finite derivative."""
    group = optimizer.param_groups[0]
    lr, wd = float(group["lr"]), float(group.get("weight_decay", 0.0))
    state = {k: optimizer.state.get(p, {}) for k, p in named.items()}
    if isinstance(optimizer, torch.optim.SGD):
        momentum = float(group.get("momentum", 0.0))
        if group.get("nesterov") or group.get("dampening", 0.0):
            raise ValueError("optimizer_step: SGD with Nesterov or dampening is not supported")

        def sgd(params, grads):
            out = {}
            for k, p in params.items():
                d = grads[k] + wd * p if wd else grads[k]
                buf = state[k].get("momentum_buffer")
                if momentum and buf is not None:
                    d = momentum * buf + d
                out[k] = p - lr * d
            return out
        return sgd
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay", False)
        if group.get("amsgrad"):
            raise ValueError("optimizer_step: AMSGrad is not supported")

        def adam(params, grads):
            out = {}
            for k, p in params.items():
                g, st = grads[k], state[k]
                if wd and not decoupled:
                    g = g + wd * p
                m = beta1 * st["exp_avg"] + (1 - beta1) * g if st else (1 - beta1) * g
                v = beta2 * st["exp_avg_sq"] + (1 - beta2) * g * g if st else (1 - beta2) * g * g
                t = float(st["step"]) + 1 if st else 1.0
                denom = v.clamp_min(1e-30).sqrt() / math.sqrt(1 - beta2 ** t) + eps
                base = p * (1 - lr * wd) if wd and decoupled else p
                out[k] = base - (lr / (1 - beta1 ** t)) * m / denom
            return out
        return adam
    raise ValueError(f"optimizer_step: {type(optimizer).__name__} is not supported (SGD, Adam, AdamW)")


def meta_objective(fusion_params: dict, fusion: nn.Module, student: nn.Module, student_params: dict,
                   x, y, teacher_logits, t_bar, x_val, y_val, tau: float, inner_lr: float = 0.1,
                   feature_tau: float = 1.0, step: StepFn | None = None) -> torch.Tensor:
    """The student's CE on (x_val, y_val) after one virtual step (`step`; default plain SGD
    at `inner_lr`) on the alpha-weighted loss of (x, y): a differentiable function of the
    fusion parameters phi."""
    logits = functional_call(student, student_params, (x,))
    alpha = fusion_alpha(fusion, fusion_params, logits, teacher_logits, t_bar, y, feature_tau)
    inner = fused_loss(alpha, per_sample_kd(logits, teacher_logits, tau), per_sample_ce(logits, y))
    grads = torch.autograd.grad(inner, tuple(student_params.values()), create_graph=True)
    updated = (step or sgd_step(inner_lr))(student_params, dict(zip(student_params, grads)))
    return F.cross_entropy(functional_call(student, updated, (x_val,)), y_val)


def fusion_hypergradient(fusion: nn.Module, student: nn.Module, *args, **kwargs) -> tuple[torch.Tensor, dict]:
    """(meta loss, d meta loss / d phi per fusion parameter) at the current phi and theta."""
    fusion_params = {k: p.detach().requires_grad_() for k, p in fusion.named_parameters()}
    student_params = {k: p.detach().requires_grad_() for k, p in student.named_parameters()}
    loss = meta_objective(fusion_params, fusion, student, student_params, *args, **kwargs)
    grads = torch.autograd.grad(loss, tuple(fusion_params.values()))
    return loss.detach(), dict(zip(fusion_params, grads))


class TGeoKDModule(DistillationModule):
    """Student + fusion network trained bilevel (see the module docstring).

    At fit start (`setup`) the training tensors of the datamodule are split into the
    student's samples and the meta-validation set, and T_bar is computed from the
    student's training samples only. Per epoch it reports the alpha distribution and
    `fusion_val_loss`, the mean meta-validation CE of its meta steps.
    """

    def __init__(self, model, teacher, train_cfg: dict, num_classes: int, seed: int, tau: float = 4.0,
                 fusion_hidden: int = 128, fusion_lr: float = 1e-3, inner_lr: float = 0.1,
                 meta_val_fraction: float = 0.1, meta_val_holdout: bool = True, meta_batch_size: int = 256,
                 alpha_init: float = 0.9, feature_tau: float = 1.0, inner_step: str = "follow"):
        super().__init__(model, teacher, train_cfg)
        self.fusion = FusionNet(num_classes, fusion_hidden, alpha_init)
        self.fusion_opt = build_optimizer(self.fusion.parameters(), {"optimizer": "adam", "lr": fusion_lr})
        self.num_classes, self.seed, self.tau = num_classes, seed, tau
        if inner_step not in ("follow", "sgd"):
            raise ValueError(f"tgeo.inner_step: 'follow' or 'sgd', got {inner_step!r}")
        self.inner_lr, self.feature_tau, self.inner_step = inner_lr, feature_tau, inner_step
        self.meta_val_fraction, self.meta_val_holdout = meta_val_fraction, meta_val_holdout
        self.meta_batch_size = meta_batch_size
        self.register_buffer("t_bar", torch.full((num_classes, num_classes), 1.0 / num_classes))
        self.x_meta = self.y_meta = None
        self._alphas: list[torch.Tensor] = []
        self._meta_losses: list[torch.Tensor] = []

    def prepare_from_train(self, x_train: torch.Tensor, y_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Carve the meta-validation set, compute T_bar from the student's training
        samples; return the student's training tensors."""
        keep, meta = carve_meta_val(y_train, self.meta_val_fraction, self.seed)
        self.x_meta, self.y_meta = x_train[meta], y_train[meta]
        if self.meta_val_holdout:
            x_train, y_train = x_train[keep], y_train[keep]
        self.t_bar = teacher_class_means(self.teacher, x_train, y_train, self.num_classes, self.feature_tau)
        return x_train, y_train

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule  # its setup() ran before this hook
        if stage == "fit" and datamodule is not None:
            datamodule.tensors["train"] = self.prepare_from_train(*datamodule.tensors["train"])

    def _meta_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.y_meta)
        if n <= self.meta_batch_size:
            return self.x_meta, self.y_meta
        idx = torch.randperm(n, generator=epoch_generator(self.seed, 7919 + self.global_step))[:self.meta_batch_size]
        idx = idx.to(self.y_meta.device)
        return self.x_meta[idx], self.y_meta[idx]

    def virtual_step(self) -> StepFn:
        """The inner loop's step: the student's real optimiser as it stands (`follow`), or
        plain SGD at inner_lr (`sgd`, and outside a Trainer, where there is no optimiser)."""
        if self.inner_step == "sgd" or self._trainer is None:
            return sgd_step(self.inner_lr)
        optimizer = self.optimizers()
        return optimizer_step(getattr(optimizer, "optimizer", optimizer), dict(self.model.named_parameters()))

    def meta_step(self, x, y, teacher_logits) -> None:
        """One outer step of the fusion network on the unrolled meta-validation CE."""
        x_val, y_val = self._meta_batch()
        loss, grads = fusion_hypergradient(self.fusion, self.model, x, y, teacher_logits, self.t_bar, x_val, y_val,
                                           tau=self.tau, inner_lr=self.inner_lr, feature_tau=self.feature_tau,
                                           step=self.virtual_step())
        for name, p in self.fusion.named_parameters():
            p.grad = grads[name]
        self.fusion_opt.step()
        self.fusion_opt.zero_grad(set_to_none=True)
        self._meta_losses.append(loss)

    def training_loss(self, x, y):
        t = self.teacher_logits(x)
        with torch.enable_grad():
            self.meta_step(x, y, t)
        logits = self(x)
        with torch.no_grad():
            alpha = fusion_alpha(self.fusion, None, logits, t, self.t_bar, y, self.feature_tau)
        self._alphas.append(alpha)
        return fused_loss(alpha, per_sample_kd(logits, t, self.tau), per_sample_ce(logits, y)), logits

    def extra_epoch_metrics(self) -> dict[str, float]:
        out = {}
        if self._alphas:
            out.update(alpha_summary(torch.cat(self._alphas)))
        if self._meta_losses:
            out["fusion_val_loss"] = torch.stack(self._meta_losses).mean().item()
        self._alphas, self._meta_losses = [], []
        return out

    @torch.no_grad()
    def alpha_on(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """alpha_i the fusion net gives samples (x, y) now (student in eval mode)."""
        was_training = self.model.training
        self.model.eval()
        out = torch.cat([fusion_alpha(self.fusion, None, self.model(x[i:i + batch_size]), self.teacher(x[i:i + batch_size]),
                                      self.t_bar, y[i:i + batch_size], self.feature_tau)
                         for i in range(0, len(y), batch_size)])
        self.model.train(was_training)
        return out

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["fusion_optimizer"] = self.fusion_opt.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "fusion_optimizer" in checkpoint:
            self.fusion_opt.load_state_dict(checkpoint["fusion_optimizer"])
