"""MTARD: Multi-Teacher Adversarial Robustness Distillation (Zhao et al., ECCV 2022;
PAPERS.md section 2). A clean teacher (natural training) guides the student on clean
inputs, a robust teacher (PGD-AT) on the student's PGD examples; no cross-entropy term:

    L_adv = KL(softmax(T_adv(x_adv) / tau_adv) || softmax(S(x_adv)))
    L_nat = KL(softmax(T_nat(x) / tau_nat)   || softmax(S(x)))
    loss  = w_adv * L_adv + w_nat * L_nat

Only the teachers are softened (as in the paper's equations and reference code). The
reference code averages its KL over batch x classes (nn.KLDivLoss's elementwise
mean), i.e. the paper's KL divided by C; `kl_reduction: mean` reproduces that,
`batchmean` (default) is the KL per sample averaged over the batch. Neither the
balances nor Adam depend on that constant factor; SGD's effective step does.

Both balances update after every batch, from that batch's teacher outputs and losses:
- Entropy-Based Balance (EBB), `ebb_step`: with H_i = mean(p_i log p_i) of each
  teacher's softened output, tau_adv <- tau_adv - s_T * sign(H_adv / H_nat - 1) and
  tau_nat <- tau_nat - s_T * sign(H_nat / H_adv - 1), clamped to [1, 10], both from 1.
- Normalization Loss Balance (NLB), `nlb_step`: r_i = L_i(t) / L_i(0) (L_i(0): the
  first batch's loss), w_nat <- w_nat - s_W * (w_nat - r_nat / (r_adv + r_nat)),
  w_adv = 1 - w_nat, from 0.5 / 0.5.
The paper's step sizes are s_T = 0.001 and s_W = 0.025 per batch for ~117,300 batches
(300 CIFAR-10 epochs of 391 batches). PAPERS.md section 7: with far fewer batches the
temperatures never settle, so the steps are scaled explicitly by
`reference_steps / (our epochs x batches per epoch)` when `reference_steps` is set
(s_W capped at 1, where w_nat jumps straight to its target). With `follow_lr` the steps
also follow the learning rate (x lr / initial lr: the paper's x0.1 cuts with the lr).
Switching a balance off (`ebb.enabled` / `nlb.enabled: false`) keeps its quantity at
its initial value: the ablation.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lifelearn.evaluate.robustness import attack_settings, pgd_from_config
from lifelearn.train.module import ClassifierModule

KL_REDUCTIONS = ("batchmean", "mean")
SERIES = ("tau_adv", "tau_nat", "w_adv", "w_nat", "loss_adv", "loss_nat")


def teacher_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau, reduction: str = "batchmean"):
    """KL(softmax(t / tau) || softmax(s)); `batchmean`: summed over classes, averaged over
    the batch; `mean`: averaged over batch x classes (the reference code)."""
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"unknown kl_reduction {reduction!r}; allowed: {', '.join(KL_REDUCTIONS)}")
    kl = F.kl_div(F.log_softmax(student_logits, 1), F.softmax(teacher_logits / tau, 1), reduction="none")
    return kl.sum(1).mean() if reduction == "batchmean" else kl.mean()


def mtard_loss(s_adv, s_nat, t_adv, t_nat, tau_adv, tau_nat, w_adv, w_nat, reduction: str = "batchmean"):
    """(loss, L_adv, L_nat) of MTARD for one batch."""
    l_adv = teacher_kl(s_adv, t_adv, tau_adv, reduction)
    l_nat = teacher_kl(s_nat, t_nat, tau_nat, reduction)
    return w_adv * l_adv + w_nat * l_nat, l_adv, l_nat


def neg_entropy(logits: torch.Tensor, tau) -> torch.Tensor:
    """H = mean over batch and classes of p log p, p = softmax(logits / tau) (<= 0)."""
    log_p = F.log_softmax(logits / tau, 1)
    return (log_p.exp() * log_p).mean()


def ebb_step(tau_adv, tau_nat, h_adv, h_nat, step: float, low: float = 1.0, high: float = 10.0):
    """One Entropy-Based Balance update; returns (tau_adv, tau_nat)."""
    new_adv = torch.clamp(tau_adv - step * torch.sign(h_adv / h_nat - 1), low, high)
    new_nat = torch.clamp(tau_nat - step * torch.sign(h_nat / h_adv - 1), low, high)
    return new_adv, new_nat


def nlb_step(w_nat, l_adv, l_nat, l_adv0, l_nat0, step: float):
    """One Normalization Loss Balance update; returns (w_adv, w_nat)."""
    r_adv, r_nat = l_adv / l_adv0, l_nat / l_nat0
    new_nat = w_nat - step * (w_nat - r_nat / (r_adv + r_nat))
    return 1 - new_nat, new_nat


def balance_step_scale(reference_steps: int | None, total_steps: int) -> float:
    """reference_steps / total_steps (1 when no reference is set)."""
    return 1.0 if not reference_steps else float(reference_steps) / max(int(total_steps), 1)


class MTARDModule(ClassifierModule):
    """Student of a frozen clean teacher and a frozen robust teacher (MTARD).

    `cfg`: ebb {enabled, step, init, min, max}, nlb {enabled, step, init_nat},
    reference_steps (int or null), follow_lr, kl_reduction, log_every (batches between
    MLflow points of the per-batch series). The balances' state lives in buffers, so a
    resumed run continues it.
    """

    def __init__(self, model, clean_teacher: nn.Module, robust_teacher: nn.Module, train_cfg: dict,
                 attack: dict, cfg: dict):
        super().__init__(model, train_cfg)
        attack_settings(attack)
        if cfg.get("kl_reduction", "batchmean") not in KL_REDUCTIONS:
            raise ValueError(f"unknown kl_reduction {cfg['kl_reduction']!r}")
        self.clean_teacher = clean_teacher.eval().requires_grad_(False)
        self.robust_teacher = robust_teacher.eval().requires_grad_(False)
        self.attack, self.cfg = dict(attack), cfg
        self.ebb, self.nlb = cfg["ebb"], cfg["nlb"]
        init_tau, init_nat = float(self.ebb["init"]), float(self.nlb["init_nat"])
        self.register_buffer("tau_adv", torch.tensor(init_tau))
        self.register_buffer("tau_nat", torch.tensor(init_tau))
        self.register_buffer("w_nat", torch.tensor(init_nat))
        self.register_buffer("w_adv", torch.tensor(1 - init_nat))
        self.register_buffer("loss0", torch.zeros(2))  # (L_adv(0), L_nat(0)); zeros = not yet seen
        self.step_scale = 1.0
        self._series: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        super().train(mode)
        self.clean_teacher.eval()
        self.robust_teacher.eval()
        return self

    def on_fit_start(self) -> None:
        self.step_scale = balance_step_scale(self.cfg.get("reference_steps"), self.trainer.estimated_stepping_batches)

    def balance_steps(self) -> tuple[float, float]:
        """Per-batch step sizes (s_T, s_W) now: paper steps x step scale (x lr / lr0)."""
        factor = self.step_scale
        if self.cfg.get("follow_lr", False) and self._trainer is not None:
            factor *= self.optimizers().param_groups[0]["lr"] / self.train_cfg["lr"]
        return float(self.ebb["step"]) * factor, min(1.0, float(self.nlb["step"]) * factor)

    def training_loss(self, x, y):
        x_adv = pgd_from_config(self.model, x, y, self.attack)
        with torch.no_grad():
            t_adv, t_nat = self.robust_teacher(x_adv), self.clean_teacher(x)
        s_adv, s_nat = self(x_adv), self(x)
        loss, l_adv, l_nat = mtard_loss(s_adv, s_nat, t_adv, t_nat, self.tau_adv.clone(), self.tau_nat.clone(),
                                        self.w_adv.clone(), self.w_nat.clone(), self.cfg.get("kl_reduction", "batchmean"))
        self._record({"tau_adv": self.tau_adv, "tau_nat": self.tau_nat, "w_adv": self.w_adv, "w_nat": self.w_nat,
                      "loss_adv": l_adv.detach(), "loss_nat": l_nat.detach()})
        self.update_balances(t_adv, t_nat, l_adv.detach(), l_nat.detach())
        return loss, s_adv

    @torch.no_grad()
    def update_balances(self, t_adv, t_nat, l_adv, l_nat) -> None:
        """EBB and NLB after one batch (each only when enabled)."""
        s_tau, s_w = self.balance_steps() if self._trainer is not None else (self.ebb["step"], self.nlb["step"])
        if self.ebb["enabled"]:
            h_adv, h_nat = neg_entropy(t_adv, self.tau_adv), neg_entropy(t_nat, self.tau_nat)
            tau_adv, tau_nat = ebb_step(self.tau_adv, self.tau_nat, h_adv, h_nat, s_tau, self.ebb["min"], self.ebb["max"])
            self.tau_adv.copy_(tau_adv)
            self.tau_nat.copy_(tau_nat)
        if self.loss0[0] == 0:
            self.loss0.copy_(torch.stack([l_adv, l_nat]))
        if self.nlb["enabled"]:
            w_adv, w_nat = nlb_step(self.w_nat, l_adv, l_nat, self.loss0[0], self.loss0[1], s_w)
            self.w_adv.copy_(w_adv)
            self.w_nat.copy_(w_nat)

    def _record(self, values: dict[str, torch.Tensor]) -> None:
        """Epoch sums of the series; every `log_every` batches one MLflow point each."""
        stacked = torch.stack([values[k].detach().float() for k in SERIES])
        self._series["sum"] = self._series.get("sum", torch.zeros_like(stacked)) + stacked
        self._series["n"] = self._series.get("n", torch.zeros((), device=stacked.device)) + 1
        every = int(self.cfg.get("log_every", 0) or 0)
        if every and self._trainer is not None and self.logger is not None and self.global_step % every == 0:
            self.logger.log_metrics({f"batch_{k}": v for k, v in zip(SERIES, stacked.tolist())}, step=self.global_step)

    def extra_epoch_metrics(self) -> dict[str, float]:
        """Epoch means of the temperatures, weights and the two losses (history + MLflow)."""
        if "sum" not in self._series:
            return {}
        means = (self._series.pop("sum") / self._series.pop("n")).tolist()
        return dict(zip(SERIES, means))
