"""The Lightning classifier every training stage builds on.

Subclasses (distillation, adversarial training, continual strategies) override
`training_loss(x, y) -> (loss, logits)`; the epoch bookkeeping, the optimiser and
the per-epoch history (kept inside checkpoints so a resumed run continues it) are
shared.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from lifelearn.train.optim import lightning_optimizers


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of `model`; records train/val loss and accuracy per epoch in
    `history` (train.fit.EpochRows sends each row to the loggers)."""

    def __init__(self, model: nn.Module, train_cfg: dict):
        super().__init__()
        self.model, self.train_cfg = model, dict(train_cfg)
        self.history: list[dict] = []
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(x)
        return F.cross_entropy(logits, y), logits

    # -- per-epoch sums, accumulated on the device, read once per epoch --------
    def _accumulate(self, split: str, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = torch.tensor(float(len(y)), device=logits.device)
        step = torch.stack([loss.detach() * n, (logits.detach().argmax(1) == y).sum().float(), n])
        self._sums[split] = self._sums.get(split, torch.zeros(3, device=logits.device)) + step

    def _epoch_metrics(self, split: str) -> dict[str, float]:
        sums = self._sums.pop(split)
        if self._trainer is not None and self.trainer.world_size > 1:  # ranks saw disjoint shards
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss_sum, correct, n = sums.tolist()
        return {f"{split}_loss": loss_sum / n, f"{split}_acc": correct / n}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, logits = self.training_loss(x, y)
        self._accumulate("train", loss, logits, y)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self._accumulate("val", F.cross_entropy(logits, y), logits, y)

    def on_validation_epoch_end(self) -> None:
        self._val_metrics = self._epoch_metrics("val") if "val" in self._sums else {}

    def on_train_epoch_end(self) -> None:
        # the val metrics of this epoch's validation only: an epoch without one (val_every > 1) has none
        row = {"epoch": self.current_epoch, **self._epoch_metrics("train"), **getattr(self, "_val_metrics", {})}
        self._val_metrics = {}
        if not math.isfinite(row["train_loss"]):  # checked once per epoch: no per-step sync
            raise FloatingPointError(
                f"training loss is {row['train_loss']} in epoch {self.current_epoch}: training diverged; "
                f"lower train.lr (now {self.train_cfg.get('lr')}, optimizer {self.train_cfg.get('optimizer')})")
        row.update(self.extra_epoch_metrics())
        self.history.append(row)

    def extra_epoch_metrics(self) -> dict[str, float]:
        """Method-specific epoch metrics (e.g. balance weights) for history and MLflow."""
        return {}

    def configure_optimizers(self):
        return lightning_optimizers(self.model.parameters(), self.train_cfg)  # never a teacher's

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("history", []))
