"""Sample-wise fusion-ratio KD: the re-weighting baselines of TGeo-KD (Hu et al.,
ICLR 2024; PAPERS.md section 3). Every method shares one loss form (`kd.fused_loss`):

    loss = mean_i [alpha_i * tau^2 * KL(T_i^tau || S_i^tau) + (1 - alpha_i) * CE(S_i, y_i)]

and differs only in how alpha_i is chosen:

- ANL-KD: alpha decays linearly from 1 at the first epoch to `alpha_final` at the last
  (`anl_alpha`), the same for every sample of an epoch.
- ADA-KD: alpha_i = max(0, pT_i[y_i] - (1 - pT_i[y_i]) / (C - 1)) (`ada_alpha`), the
  teacher's margin of confidence in the true class over a uniform share of the rest.
- WLS-KD: alpha_i = 1 - exp(-CE_S,i / CE_T,i) (`wls_alpha`): the KD term gets more weight
  where the student is worse than the teacher on the label.

pT, CE_S and CE_T use the plain (tau = 1) softmax, as the original papers define them;
only the KL term uses the temperature. alpha_i is a weight, never differentiated
(computed under no_grad from detached outputs).
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from lifelearn.distill.kd import DistillationModule, fused_loss, per_sample_ce, per_sample_kd


def anl_alpha(epoch: int, epochs: int, alpha_final: float) -> float:
    """ANL-KD: 1 at epoch 0, `alpha_final` at epoch `epochs - 1`, linear in between
    (1 for a one-epoch run)."""
    progress = epoch / (epochs - 1) if epochs > 1 else 0.0
    return 1.0 + (alpha_final - 1.0) * min(max(progress, 0.0), 1.0)


def ada_alpha(teacher_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ADA-KD: max(0, pT[y] - (1 - pT[y]) / (C - 1)) per sample, shape (N,)."""
    num_classes = teacher_logits.shape[1]
    p_true = F.softmax(teacher_logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (p_true - (1 - p_true) / (num_classes - 1)).clamp_min(0.0)


def wls_alpha(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
              eps: float = 1e-12) -> torch.Tensor:
    """WLS-KD: 1 - exp(-CE_S / CE_T) per sample, shape (N,) (CE_T floored at `eps`)."""
    ce_s = per_sample_ce(student_logits, targets)
    ce_t = per_sample_ce(teacher_logits, targets).clamp_min(eps)
    return 1.0 - torch.exp(-ce_s / ce_t)


ALPHA_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def alpha_summary(alphas: torch.Tensor) -> dict[str, float]:
    """Distribution of the fusion ratios of an epoch: mean, std (ddof=0), quantiles."""
    a = alphas.detach().double().flatten()
    qs = torch.quantile(a, torch.tensor(ALPHA_QUANTILES, dtype=a.dtype, device=a.device)).tolist()
    out = {"alpha_mean": a.mean().item(), "alpha_std": a.std(unbiased=False).item()}
    out.update({f"alpha_q{round(100 * q):02d}": v for q, v in zip(ALPHA_QUANTILES, qs)})
    return out


class SampleWiseKDModule(DistillationModule):
    """A student on `fused_loss` with alpha from `sample_alpha(logits, teacher_logits, y)`.

    Records every training alpha of an epoch; `extra_epoch_metrics` reports their
    distribution (history.csv and MLflow). `rule` names the method: ce, kd, anl, ada, wls.
    """

    RULES = ("ce", "kd", "anl", "ada", "wls")

    def __init__(self, model, teacher, train_cfg: dict, rule: str, tau: float = 4.0,
                 alpha: float = 0.9, alpha_final: float = 0.0):
        super().__init__(model, teacher, train_cfg)
        if rule not in self.RULES:
            raise ValueError(f"unknown fusion-ratio rule {rule!r}; allowed: {', '.join(self.RULES)}")
        self.rule, self.tau, self.alpha, self.alpha_final = rule, tau, alpha, alpha_final
        self._alphas: list[torch.Tensor] = []

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self._trainer is not None else 0

    @torch.no_grad()
    def sample_alpha(self, logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """alpha_i of each sample (N,), from the current epoch for ANL-KD."""
        n = len(y)
        if self.rule == "ce":
            return logits.new_zeros(n)
        if self.rule == "kd":
            return logits.new_full((n,), self.alpha)
        if self.rule == "anl":
            return logits.new_full((n,), anl_alpha(self._epoch(), self.train_cfg["epochs"], self.alpha_final))
        if self.rule == "ada":
            return ada_alpha(teacher_logits, y)
        return wls_alpha(logits.detach(), teacher_logits, y)

    def training_loss(self, x, y):
        logits = self(x)
        if self.rule == "ce":
            alpha = logits.new_zeros(len(y))
            loss = per_sample_ce(logits, y).mean()
        else:
            t = self.teacher_logits(x)
            alpha = self.sample_alpha(logits, t, y)
            loss = fused_loss(alpha, per_sample_kd(logits, t, self.tau), per_sample_ce(logits, y))
        self._alphas.append(alpha.detach())
        return loss, logits

    def extra_epoch_metrics(self) -> dict[str, float]:
        if not self._alphas:
            return {}
        out = alpha_summary(torch.cat(self._alphas))
        self._alphas = []
        return out

    @torch.no_grad()
    def alpha_on(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """alpha_i the method would give samples (x, y) now (model in eval mode)."""
        was_training = self.model.training
        self.model.eval()
        out = torch.cat([self.sample_alpha(self.model(x[i:i + batch_size]), self.teacher(x[i:i + batch_size]),
                                           y[i:i + batch_size]) for i in range(0, len(y), batch_size)])
        self.model.train(was_training)
        return out


def teacher_correctness_alpha(module, x: torch.Tensor, y: torch.Tensor, prefix: str = "test") -> dict[str, float]:
    """Mean alpha on samples the teacher classifies correctly vs wrongly (held-out data):
    does the student trust the teacher less where it is wrong?"""
    alpha = module.alpha_on(x, y)
    with torch.no_grad():
        correct = torch.cat([module.teacher(x[i:i + 1024]).argmax(1) for i in range(0, len(y), 1024)]) == y
    wrong = ~correct
    mean = lambda a: a.mean().item() if a.numel() else math.nan  # noqa: E731
    return {f"alpha_{prefix}_teacher_correct": mean(alpha[correct]),
            f"alpha_{prefix}_teacher_wrong": mean(alpha[wrong]),
            f"teacher_{prefix}_wrong": int(wrong.sum().item()),
            f"teacher_{prefix}_acc": correct.float().mean().item()}
