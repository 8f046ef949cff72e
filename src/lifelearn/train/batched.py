"""Seed-batched training: the K seeds of one configuration trained as one batched model
(issue 16, part 3), following the torch.func "model ensembling" recipe
(`torch.func.stack_module_state` + `torch.func.vmap(functional_call)`).

What is batched and why it is exact
- Parameters: `stack_module_state(models)` stacks each parameter of the K models along a
  new leading dimension (new leaf tensors); the forward is
  `vmap(functional_call(base, (params, buffers), x))` with x of shape [K, B, ...]: model k
  sees only its own batch x[k].
- Gradients: the loss is the SUM of the K per-model losses. Model k's loss depends only
  on its own slice of the stacked parameters, so d(sum)/d(params[k]) = d(loss_k)/d(params[k]):
  each model gets exactly the gradient it would get alone.
- Optimiser: SGD (momentum, weight decay), Adam and AdamW update every element from that
  element's gradient and state only, so one optimiser over the stacked tensors equals K
  independent optimisers (tests/test_batched.py checks it on a hand-made case); with a
  step size per model, `StackedSGD` (SGD's update, slice k scaled by its own lr). Anything
  global over a parameter tensor (gradient-norm clipping, LARS/LAMB trust ratios, a
  loss-scale shared across models) is not elementwise: `check_train_config` accepts only
  the keys of the schema's `train_options` (config/schema.yaml), all of which are
  elementwise per model; a key outside that set is refused by name.
- Data: each seed draws its own order (and augmentation) from its own generator, so the
  batch of model k is the batch seed k would see alone.

Where vmap cannot serve (refused with a clear error, `check_batchable`)
- BatchNorm in training mode on the "vmap" backend: its running statistics are updated in
  place, which vmap does not do on stacked buffers (torch.func docs, "Patching Batch
  Norm"); in eval mode it is a pure function of its buffers and is allowed (frozen
  teachers). The "layers" backend batches it exactly in training too (see _StackedLayers):
  BatchNorm's statistics are per channel, and model k's channels hold only model k's batch.
- Dropout in training mode: its random masks would come from one stream for all K models,
  so no model would match its sequential run.
- Data-dependent Python control flow inside a forward (vmap traces one program for all K).
  None of the project's MLP/ConvNet/ResNet forwards has any; a strategy whose loss branches
  on a model's values (e.g. a per-seed buffer whose size depends on training) must stay on
  the sequential path.

Two backends compute the same per-model function: "vmap" (the recipe above, any vmap-able
model) and "layers" (`_StackedLayers`: the project's MLP/ConvNet backbones as batched
kernels, baddbmm and grouped convolution, without vmap's per-call overhead, which on this
project's CPU machine cost more than a digits MLP's whole step); "auto" takes "layers"
where it applies. Batching removes per-step overhead, not arithmetic: on one CPU thread it
pays for small batches and models (the continual streams) and little or nothing for
compute-bound steps (benchmarks/seed_batching.py).

Not batchable in lock-step (callers keep those on the sequential path): seeds whose data
differ in size, e.g. continual streams whose per-seed class order gives tasks of different
sizes (digits class-/task-incremental), since every model must take the same number of
steps of the same batch size.

Reference: the torch.func ensembling tutorial (stack_module_state, functional_call on a
"meta" copy of the base model); departs from it in calling any method of the base model
(`features`, `head`) through a thin wrapper, and in training (the tutorial only predicts).
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from lifelearn.train.optim import build_optimizer, build_scheduler

#: the keys of config/schema.yaml#/$defs/train_options: all elementwise per model
ELEMENTWISE_TRAIN_KEYS = frozenset({
    "epochs", "batch_size", "eval_batch_size", "optimizer", "lr", "momentum", "weight_decay",
    "schedule", "milestones", "gamma", "augment", "train_samples",
})


def check_train_config(cfg: dict) -> None:
    """Refuse a train config whose update is not elementwise per model (so batching K seeds
    under one optimiser would not equal K independent runs)."""
    unknown = sorted(set(cfg) - ELEMENTWISE_TRAIN_KEYS)
    if unknown:
        raise ValueError(f"seed-batched training refuses train.{unknown[0]}: not known to be elementwise per "
                         f"model (allowed: {', '.join(sorted(ELEMENTWISE_TRAIN_KEYS))}); train these seeds "
                         "sequentially")


def check_batchable(model: nn.Module, training: bool = True, backend: str = "vmap") -> None:
    """Raise ValueError naming the first module `backend` cannot batch exactly (see module docstring)."""
    if not training:
        return
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and backend != "layers":
            raise ValueError(f"seed-batched training refuses {name or 'the model'} ({type(module).__name__}) on "
                             "the vmap backend: BatchNorm updates running statistics in place, which vmap cannot "
                             "batch; use a model the 'layers' backend supports (MLP/ConvNet Backbone), convnet norm "
                             "'instance' or 'none', or train the seeds sequentially")
        if isinstance(module, nn.modules.dropout._DropoutNd):
            raise ValueError(f"seed-batched training refuses {name} ({type(module).__name__}): dropout masks "
                             "would not follow each seed's own random stream")


class _Method(nn.Module):
    """Calls `method` of the wrapped module, so functional_call can reach features/head."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, method: str = "forward"):
        return getattr(self.module, method)(x)


_CHANNEL_LAYERS = (nn.ReLU, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)


class _StackedLayers:
    """The same stacked parameters run layer by layer with batched kernels instead of
    vmap: a Linear is one `baddbmm` over the K models, a Conv one grouped convolution
    (groups = K) on the models' channels side by side, GroupNorm one group_norm with K
    times the groups, BatchNorm one batch_norm over K x C channels. The same
    arithmetic per model as vmap's batching rules, without vmap's and functional_call's
    per-call Python overhead (about 2.5 ms a step on this project's machine, more than a
    digits MLP's whole step). Serves Backbones (models/base.py) whose body is a
    Sequential of these layers; `supports` says whether a model qualifies.

    Layouts: "kb" is [K, B, ...]; "merged" is [B, K * C, ...] (model k's channels at
    k * C .. k * C + C - 1), the layout grouped kernels read. Linear weights are kept
    transposed ([K, in, out], contiguous; `StackedModels.write_back` turns them back): the
    gradient of x @ W^T with respect to W^T is then contiguous, so autograd accumulates it
    without a strided copy (a third of a digits MLP step on this machine). The optimiser
    is elementwise, so the layout does not change the update.

    BatchNorm in training mode is exact here: in the merged layout a channel of model k
    holds model k's batch only, so batch_norm's per-channel batch statistics are model k's,
    and its in-place update of the flattened [K * C] running statistics (views of the
    stacked buffers) is model k's own update (same momentum, same unbiased variance over
    B x spatial); num_batches_tracked counts the training forwards as nn.BatchNorm does.
    `__call__(..., training=False)` runs it on the running statistics instead (a model put in
    eval mode, e.g. while PGD attacks it, evaluate.robustness.linf_pgd)."""

    def __init__(self, base: nn.Module, params: dict, buffers: dict, training: bool):
        self.base, self.p, self.b, self.training = base, params, buffers, training

    @staticmethod
    def supports(model: nn.Module, training: bool) -> bool:
        body = getattr(model, "body", None)
        if not (hasattr(model, "normalize") and isinstance(body, nn.Sequential)
                and isinstance(getattr(model, "head", None), nn.Linear)):
            return False
        for layer in body:
            if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
                if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                    return False
            elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
                if not layer.track_running_stats:
                    return False
            elif isinstance(layer, nn.Flatten):
                if layer.start_dim != 1 or layer.end_dim != -1:
                    return False
            elif not isinstance(layer, (nn.Linear, nn.GroupNorm) + _CHANNEL_LAYERS):
                return False
        return True

    def __call__(self, x: torch.Tensor, method: str, params: dict, training: bool) -> torch.Tensor:
        if method == "head":
            return self._linear(x, "module.head", params)
        if method not in ("forward", "features"):
            raise ValueError(f"StackedModels calls forward, features or head, not {method!r}")
        x = (x - self.b["module.mean"]) / self.b["module.std"]  # [K, 1, C, ...] buffers broadcast
        K, layout = x.shape[0], "kb"
        for i, layer in enumerate(self.base.body):
            name = f"module.body.{i}"
            if isinstance(layer, nn.Linear):
                x = self._linear(x, name, params)
                continue
            if isinstance(layer, nn.Flatten):
                x = x.flatten(2) if layout == "kb" else x.reshape(x.shape[0], K, -1).transpose(0, 1)
                layout = "kb"
                continue
            if layout == "kb" and not isinstance(layer, (nn.ReLU, nn.Identity)):
                x, layout = x.transpose(0, 1).flatten(1, 2), "merged"
            if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
                w, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
                conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
                x = conv(x, w.flatten(0, 1), None if bias is None else bias.flatten(), layer.stride, layer.padding,
                         layer.dilation, groups=K)
            elif isinstance(layer, nn.GroupNorm):
                w, bias = params.get(f"{name}.weight"), params.get(f"{name}.bias")
                x = F.group_norm(x, K * layer.num_groups, None if w is None else w.flatten(),
                                 None if bias is None else bias.flatten(), layer.eps)
            elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
                x = self._batch_norm(x, layer, name, params, training)
            else:  # parameter-free, per channel and sample: ReLU, pooling
                x = layer(x)
        if layout == "merged":
            x = x.reshape(x.shape[0], K, -1).transpose(0, 1)
        return x if method == "features" else self._linear(x, "module.head", params)

    def _batch_norm(self, x: torch.Tensor, layer, name: str, params: dict, training: bool) -> torch.Tensor:
        """nn.BatchNorm's forward (_BatchNorm.forward) on the merged layout: batch statistics
        and a running-statistics update in training, the running statistics in eval."""
        w, bias = params.get(f"{name}.weight"), params.get(f"{name}.bias")
        momentum = 0.0
        if training:
            tracked = self.b[f"{name}.num_batches_tracked"]
            tracked.add_(1)
            momentum = 1.0 / float(tracked[0]) if layer.momentum is None else layer.momentum
        # contiguous [K, C] buffers: flatten() is a view, so batch_norm updates them in place
        return F.batch_norm(x, self.b[f"{name}.running_mean"].flatten(), self.b[f"{name}.running_var"].flatten(),
                            None if w is None else w.flatten(), None if bias is None else bias.flatten(),
                            training, momentum, layer.eps)

    def linear_weights(self) -> list[str]:
        names = [f"module.body.{i}.weight" for i, layer in enumerate(self.base.body) if isinstance(layer, nn.Linear)]
        return names + ["module.head.weight"]

    @staticmethod
    def _linear(x: torch.Tensor, name: str, params: dict) -> torch.Tensor:
        w_t, bias = params[f"{name}.weight"], params.get(f"{name}.bias")  # w_t: [K, in, out]
        if bias is None:
            return torch.bmm(x, w_t)
        return torch.baddbmm(bias.unsqueeze(1), x, w_t)


def stacked_functional(model: nn.Module) -> Callable[[dict, torch.Tensor], torch.Tensor]:
    """`model`'s training-mode forward for K parameter sets at once, with `_StackedLayers`'
    kernels: f(params, x) with params {name: [K, *shape]} (the model's parameter names and
    layouts, e.g. views of K flat vectors; gradients flow through) and x [K, B, ...] ->
    [K, B, out]. Its buffers (the input normalisation) are shared by the K sets. For the
    unrolled inner loop of dataset distillation (distill/dataset_distillation.py); a model with
    BatchNorm is refused (its running statistics would be updated in place)."""
    if not _StackedLayers.supports(model, True):
        raise ValueError(f"stacked_functional supports MLP/ConvNet Backbones, not {type(model).__name__}")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError("stacked_functional refuses BatchNorm (running statistics updated in place); "
                         "use convnet norm 'instance' or 'none'")
    buffers = {f"module.{name}": b.unsqueeze(0) for name, b in model.named_buffers()}
    layers = _StackedLayers(model, {}, buffers, training=True)
    linear = set(layers.linear_weights())

    def forward(params: dict, x: torch.Tensor) -> torch.Tensor:
        p = {}
        for name, v in params.items():
            key = f"module.{name}"
            p[key] = v.transpose(1, 2) if key in linear else v  # _StackedLayers reads linear weights [K, in, out]
        return layers(x, "forward", p, True)

    return forward


class StackedModels:
    """K models of one architecture as stacked parameters; `self(x)` with x of shape
    [K, B, ...] returns [K, B, ...] outputs (model k on x[k]); `shared=True` feeds one
    [B, ...] input to every model (evaluation on a common split).

    backend: "vmap" (vmap(functional_call), any vmap-able model), "layers"
    (_StackedLayers, the project's MLP/ConvNet backbones, much less overhead a call) or
    "auto" (layers where supported, else vmap). Both compute each model's own function;
    tests/test_batched.py checks both against sequential training."""

    def __init__(self, models: Sequence[nn.Module], training: bool = True, backend: str = "auto"):
        self.models = list(models)
        if not self.models:
            raise ValueError("StackedModels needs at least one model")
        shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in self.models]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("StackedModels needs K models of one architecture (state_dict keys and shapes differ)")
        if backend not in ("auto", "vmap", "layers"):
            raise ValueError(f"unknown StackedModels backend {backend!r}; allowed: auto, layers, vmap")
        layers_ok = _StackedLayers.supports(self.models[0], training)
        if backend == "layers" and not layers_ok:
            raise ValueError(f"backend 'layers' does not support {type(self.models[0]).__name__} "
                             f"(training={training}); use backend 'vmap'")
        self.backend = "layers" if backend == "layers" or (backend == "auto" and layers_ok) else "vmap"
        for model in self.models:
            check_batchable(model, training, self.backend)
        params, buffers = stack_module_state(self.models)
        self.params = {f"module.{k}": v for k, v in params.items()}
        self.buffers = {f"module.{k}": v for k, v in buffers.items()}
        self._base = _Method(copy.deepcopy(self.models[0]).to("meta"))
        self._calls: dict = {}
        self._layers = _StackedLayers(self._base.module, self.params, self.buffers, training)
        self._transposed = set(self._layers.linear_weights()) if self.backend == "layers" else set()
        for name in self._transposed:
            self.params[name] = self.params[name].detach().transpose(1, 2).contiguous().requires_grad_()

    def __len__(self) -> int:
        return len(self.models)

    def bind(self, params: dict, buffers: dict) -> None:
        """Compute with these stacked tensors (same names, shapes and layouts as `params` /
        `buffers`): a module that holds them as its own parameters and buffers, which a
        framework moves, checkpoints and restores (train.seed_batched), binds them before a call."""
        self.params, self.buffers = params, buffers
        self._layers.p, self._layers.b = params, buffers

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def __call__(self, x: torch.Tensor, method: str = "forward", shared: bool = False,
                 detach: bool = False, eval_mode: bool = False) -> torch.Tensor:
        """`eval_mode`: as the models in eval mode (BatchNorm on its running statistics,
        no update) whatever `training` they were stacked with; the vmap backend holds no
        BatchNorm or dropout in training, so there the mode changes nothing."""
        params = {k: v.detach() for k, v in self.params.items()} if detach else self.params
        if self.backend == "layers":
            if shared:
                x = x.expand(len(self), *x.shape)
            return self._layers(x, method, params, self._layers.training and not eval_mode)
        key = (method, shared)
        if key not in self._calls:
            base = self._base

            def one(params, buffers, xi):
                return functional_call(base, (params, buffers), (xi,), {"method": method})

            self._calls[key] = vmap(one, in_dims=(0, 0, None if shared else 0))
        return self._calls[key](params, self.buffers, x)

    def in_model_layout(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` (a stacked parameter or its gradient, [K, ...]) in the models' own layout."""
        return tensor.transpose(1, 2) if name in self._transposed else tensor

    @torch.no_grad()
    def write_back(self) -> list[nn.Module]:
        """Copy each stacked slice into its own model (checkpoints, metrics, MLflow per seed)."""
        stacked = {name: self.in_model_layout(name, v) for name, v in {**self.params, **self.buffers}.items()}
        for k, model in enumerate(self.models):
            model.load_state_dict({name[len("module."):]: v[k] for name, v in stacked.items()})
        return self.models

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Accuracy of each model on the common split (x, y): shape [K]."""
        correct = torch.zeros(len(self), device=y.device)
        for i in range(0, len(y), batch_size):
            out = self(x[i:i + batch_size], shared=True, eval_mode=True)
            correct += (out.argmax(-1) == y[i:i + batch_size]).sum(-1)
        return correct / len(y)


class StackedSGD(torch.optim.Optimizer):
    """torch.optim.SGD's update (its single-tensor path: weight decay added to the gradient,
    momentum buffer started as the first gradient, dampening 0, no Nesterov) on stacked
    parameters [K, ...] with a step size per model: slice k moves by
    `param_groups[0]["lr"] * model_lr[k]` times its buffer. The group lr starts at 1.0, so a
    per-epoch schedule of train.optim (MultiStepLR, cosine to 0: both multiplicative) on it
    scales every model's own step size as it scales one model's. tests/test_batched.py
    checks it against K torch.optim.SGD instances."""

    def __init__(self, params, model_lr: Sequence[float], momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, {"lr": 1.0, "momentum": momentum, "weight_decay": weight_decay})
        self.model_lr = torch.as_tensor([float(v) for v in model_lr], dtype=torch.float64)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad if not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])
                if group["momentum"]:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = self.state[p]["momentum_buffer"] = torch.clone(d).detach()
                    else:
                        buf.mul_(group["momentum"]).add_(d)
                    d = buf
                lr = (group["lr"] * self.model_lr).to(p.dtype).to(p.device)
                p.sub_(d * lr.view(-1, *[1] * (p.dim() - 1)))


def stacked_optimizer(stacked: "StackedModels", train_cfg: dict, model_lr: Sequence[float] | None = None):
    """train.optim's optimiser over the stacked parameters; with `model_lr` (one step size
    per model, SGD only) the StackedSGD of those step sizes."""
    if model_lr is None:
        return build_optimizer(stacked.parameters(), train_cfg)
    if train_cfg["optimizer"] != "sgd":
        raise ValueError(f"a step size per model needs train.optimizer sgd, not {train_cfg['optimizer']!r}")
    if len(model_lr) != len(stacked):
        raise ValueError(f"{len(model_lr)} step sizes for {len(stacked)} models")
    return StackedSGD(stacked.parameters(), model_lr, train_cfg.get("momentum", 0.0), train_cfg.get("weight_decay", 0.0))


def per_model_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each model over its own batch: logits [K, B, C], y [K, B] -> [K]."""
    return F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)


def ce_loss(stacked: StackedModels, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return per_model_ce(stacked(xb), yb)


def kd_loss(teachers: StackedModels, alpha: float, tau: float) -> Callable:
    """Vanilla KD (Hinton et al. 2015; distill/kd.py's fused_loss with a constant ratio) of
    student k against teacher k: mean_i [a * tau^2 KL_i + (1 - a) CE_i] per model."""
    from lifelearn.distill.kd import per_sample_ce, per_sample_kd

    def loss(stacked, xb, yb):
        with torch.no_grad():
            t = teachers(xb)
        s = stacked(xb)
        k, b = yb.shape
        kd = per_sample_kd(s.flatten(0, 1), t.flatten(0, 1), tau).view(k, b)
        ce = per_sample_ce(s.flatten(0, 1), yb.flatten()).view(k, b)
        return (alpha * kd + (1 - alpha) * ce).mean(1)

    return loss


def pgd_attack_batched(stacked: StackedModels, x: torch.Tensor, y: torch.Tensor, eps: float, step_size: float,
                       steps: int, start: str, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """evaluate.robustness.pgd_attack (Madry et al. 2018) for K models at once: x [K, B, ...].
    The gradient of the summed losses w.r.t. x_adv[k] is model k's own input gradient, so
    each slice follows its sequential attack; random starts come from generator k. The
    models are attacked in eval mode, as linf_pgd attacks one model."""
    from lifelearn.evaluate.robustness import random_start

    x = x.detach()
    lower, upper = (x - eps).clamp_min(0.0), (x + eps).clamp_max(1.0)
    x_adv = torch.stack([random_start(x[k], eps, start, generators[k]) for k in range(len(x))])
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            loss = per_model_ce(stacked(x_adv, detach=True, eval_mode=True), y).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.max(torch.min(x_adv.detach() + step_size * grad.sign(), upper), lower)
    return x_adv.detach()


def pgd_loss(attack: dict, generators: Sequence[torch.Generator | None]) -> Callable:
    """PGD-AT (train/adversarial.py): cross-entropy of model k on its own PGD examples."""
    from lifelearn.evaluate.robustness import attack_settings

    eps, step, steps, start = attack_settings(attack)

    def loss(stacked, xb, yb):
        return per_model_ce(stacked(pgd_attack_batched(stacked, xb, yb, eps, step, steps, start, generators)), yb)

    return loss


def template_order(seeds: Sequence[int]) -> Callable[[int, int, int], torch.Tensor]:
    """The continual template's data order: one running generator per seed, one
    permutation per epoch (continual/template.py, ContinualLearner.generator)."""
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return lambda k, epoch, n: torch.randperm(n, generator=generators[k])


def fit_batched(stacked: StackedModels, x, y, train_cfg: dict, order: Callable[[int, int, int], torch.Tensor],
                loss: Callable = ce_loss, augment: Callable | None = None, model_lr: Sequence[float] | None = None,
                on_epoch: Callable | None = None) -> list[list[dict]]:
    """Train the K stacked models for train_cfg's epochs with one optimiser over the stacked
    parameters (train.optim's builder; the schedule steps once per epoch) and the summed
    per-model losses. x, y: one shared training set [N, ...] / [N] or one per model
    [K, N, ...] / [K, N] (e.g. per-seed subsets of one size). `order(k, epoch, n)` is seed
    k's permutation of the epoch; `augment(k, xb_k)` (optional) augments seed k's batch.
    `model_lr`: one step size per model (SGD, `StackedSGD`) instead of train_cfg's lr.
    `on_epoch(epoch, last_losses, optimizer)` (optional) runs after each epoch's schedule
    step with the last batch's per-model losses [K].
    Returns per model its history: [{"epoch", "train_loss"}] per epoch (batch-weighted mean).
    Call `stacked.write_back()` for the trained models."""
    check_train_config(train_cfg)
    K = len(stacked)
    per_model = y.dim() == 2
    n = y.shape[-1]
    if per_model and y.shape[0] != K:
        raise ValueError(f"per-model training data has {y.shape[0]} sets for {K} models")
    if train_cfg.get("augment", "none") != "none" and augment is None:
        raise ValueError(f"train.augment is {train_cfg['augment']!r}: pass fit_batched an augment(k, xb) that "
                         "draws seed k's augmentation")
    if train_cfg.get("train_samples") is not None and not per_model:
        raise ValueError("train.train_samples draws a subset per seed: pass per-model data [K, N, ...]")
    optimizer = stacked_optimizer(stacked, train_cfg, model_lr)
    scheduler = build_scheduler(optimizer, train_cfg)
    bs = train_cfg["batch_size"]
    rows = torch.arange(K)[:, None]
    history: list[list[dict]] = [[] for _ in range(K)]
    for epoch in range(train_cfg["epochs"]):
        orders = torch.stack([order(k, epoch, n) for k in range(K)])
        sums = torch.zeros(K, device=y.device)
        for i in range(0, n, bs):
            idx = orders[:, i:i + bs].to(y.device)
            xb, yb = (x[rows, idx], y[rows, idx]) if per_model else (x[idx], y[idx])
            if augment is not None:
                xb = torch.stack([augment(k, xb[k]) for k in range(K)])
            optimizer.zero_grad(set_to_none=True)
            losses = loss(stacked, xb, yb)
            losses.sum().backward()
            optimizer.step()
            sums += losses.detach() * yb.shape[1]
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, losses.detach(), optimizer)
        for k, value in enumerate((sums / n).tolist()):
            history[k].append({"epoch": epoch, "train_loss": value})
    return history


def fit_single(model: nn.Module, x, y, train_cfg: dict, order: Callable[[int, int], torch.Tensor],
               loss: Callable | None = None, augment: Callable | None = None) -> list[dict]:
    """The sequential reference of `fit_batched` for one model (the continual template's
    plain loop): `order(epoch, n)`, `loss(model, xb, yb) -> scalar` (default CE)."""
    loss = loss or (lambda m, xb, yb: F.cross_entropy(m(xb), yb))
    optimizer = build_optimizer(model.parameters(), train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg)
    bs, n, history = train_cfg["batch_size"], len(y), []
    model.train()
    for epoch in range(train_cfg["epochs"]):
        perm, total = order(epoch, n), torch.zeros((), device=y.device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs].to(y.device)
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb)
            optimizer.zero_grad(set_to_none=True)
            value = loss(model, xb, yb)
            value.backward()
            optimizer.step()
            total += value.detach() * len(idx)
        if scheduler is not None:
            scheduler.step()
        history.append({"epoch": epoch, "train_loss": float(total / n)})
    return history
