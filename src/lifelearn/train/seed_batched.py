"""The K seeds of one cross-entropy configuration trained as ONE LightningModule holding the
stacked ensemble (issue 16, part 3): train.batched's `StackedModels` (stacked parameters,
the "layers" or vmap backend) inside Lightning's loop, so the job keeps Lightning's
per-epoch checkpoint and resume (one checkpoint of all K seeds), device placement and
precision settings, while each step runs the K models' batches as one batched call.

Why it equals K runs of `ClassifierModule` (train/module.py) through train.runner.train_and_test:
- initialisation: model k is built after `pl.seed_everything(seed_k)`, as train_and_test does;
- data: seed k's batches are those of its own `TensorBatches` (train/data.py: the permutation
  and augmentation of `epoch_generator(seed_k, epoch)`, the seed's own `train_samples`
  subset), stacked to [K, B, ...]; validation and test splits are common to all seeds;
- loss and update: the summed per-model mean cross-entropies give model k its own gradient,
  and train.optim's SGD / Adam / AdamW over the stacked tensors equal K independent ones
  (train.batched's docstring, `check_train_config`); the schedule steps once per epoch;
- history: per seed the rows ClassifierModule records (train_loss / train_acc from the
  batch-weighted sums of its own batches, val_loss / val_acc on the common val split).
They agree within float tolerance, not bit for bit (the batched kernels sum in another order):
tests/test_seed_batched.py checks parameters, running statistics and histories to
atol 1e-5 + rtol 1e-4 after a run. Not exact, so refused (`check_batchable`, `check_train_config`):
dropout, BatchNorm on the vmap backend, non-elementwise updates; methods other than plain
cross-entropy (distillation, adversarial training) keep the sequential path.

Departure from the sequential path: each seed's epoch rows reach its MLflow run when the fit
ends (train.runner.run_seeds_batched), not every few seconds during it (train.fit.EpochRows,
whose trainer has one logger, not K).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from lifelearn.train.batched import StackedModels, check_train_config, per_model_ce
from lifelearn.train.data import InMemoryDataModule, TensorBatches
from lifelearn.train.optim import lightning_optimizers


def _key(name: str) -> str:
    """A stacked tensor's name as a module attribute (no dots)."""
    return name.replace(".", "__")


class StackedClassifierModule(pl.LightningModule):
    """ClassifierModule's cross-entropy training of K models at once. The stacked tensors are
    this module's own parameters and buffers (so Lightning moves, checkpoints and restores
    them) and are bound to the `StackedModels` before every call. `history[k]` is seed k's."""

    def __init__(self, models: Sequence[nn.Module], train_cfg: dict, backend: str = "auto"):
        super().__init__()
        check_train_config(train_cfg)
        self.train_cfg = dict(train_cfg)
        self.stacked = StackedModels(models, training=True, backend=backend)
        self.stacked_params = nn.ParameterDict({_key(k): nn.Parameter(v.detach().clone())
                                                for k, v in self.stacked.params.items()})
        self._buffer_names = list(self.stacked.buffers)
        for name in self._buffer_names:
            self.register_buffer(_key(name), self.stacked.buffers[name].clone())
        self.history: list[list[dict]] = [[] for _ in models]
        self._sums: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.stacked)

    def bound(self) -> StackedModels:
        self.stacked.bind({name: self.stacked_params[_key(name)] for name in self.stacked.params},
                          {name: getattr(self, _key(name)) for name in self._buffer_names})
        return self.stacked

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        return self.bound()(x, shared=shared, eval_mode=not self.training)

    def _accumulate(self, split: str, losses: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Per model [K, 3]: loss * n, correct, n (ClassifierModule._accumulate, per seed)."""
        n = torch.full((len(self),), float(y.shape[-1]), device=logits.device)
        correct = (logits.detach().argmax(-1) == y).sum(-1).float()
        step = torch.stack([losses.detach() * n, correct, n], dim=1)
        self._sums[split] = self._sums.get(split, torch.zeros_like(step)) + step

    def _epoch_metrics(self, split: str) -> list[dict[str, float]]:
        sums = self._sums.pop(split)
        if self._trainer is not None and self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        return [{f"{split}_loss": loss / n, f"{split}_acc": correct / n} for loss, correct, n in sums.tolist()]

    def training_step(self, batch, batch_idx):
        x, y = batch  # [K, B, ...], [K, B]
        logits = self(x)
        losses = per_model_ce(logits, y)
        self._accumulate("train", losses, logits, y)
        return losses.sum()

    def validation_step(self, batch, batch_idx):
        x, y = batch  # common split: [B, ...], [B]
        logits = self(x, shared=True)
        y = y.expand(len(self), -1)
        self._accumulate("val", per_model_ce(logits, y), logits, y)

    def on_validation_epoch_end(self) -> None:
        self._val_metrics = self._epoch_metrics("val") if "val" in self._sums else [{} for _ in self.history]

    def on_train_epoch_end(self) -> None:
        val = getattr(self, "_val_metrics", [{} for _ in self.history])
        for k, (train, rows) in enumerate(zip(self._epoch_metrics("train"), self.history)):
            if not math.isfinite(train["train_loss"]):
                raise FloatingPointError(
                    f"training loss of seed batch member {k} is {train['train_loss']} in epoch "
                    f"{self.current_epoch}: training diverged; lower train.lr (now {self.train_cfg.get('lr')})")
            rows.append({"epoch": self.current_epoch, **train, **val[k]})
        self._val_metrics = [{} for _ in self.history]

    def configure_optimizers(self):
        return lightning_optimizers(self.stacked_params.values(), self.train_cfg)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = [list(rows) for rows in checkpoint.get("history", self.history)]

    @torch.no_grad()
    def models(self) -> list[nn.Module]:
        """The K trained models, each with its own slice (checkpoint, metrics, MLflow per seed)."""
        models = self.bound().write_back()
        for model in models:
            model.to(self.device)
        return models


class SeedBatches:
    """Seed k's training batches (its own `TensorBatches`) stacked across the K seeds."""

    def __init__(self, loaders: Sequence[TensorBatches]):
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self):
        for batches in zip(*self.loaders):
            yield torch.stack([x for x, _ in batches]), torch.stack([y for _, y in batches])


class SeedBatchedDataModule(pl.LightningDataModule):
    """One InMemoryDataModule per seed (its own seed and, with `train_samples`, its own
    training subset; val and test are the same split for every seed): training batches
    stacked across seeds, evaluation batches of the common splits."""

    def __init__(self, datasets: Sequence, seeds: Sequence[int], batch_size: int, eval_batch_size: int = 1024,
                 augment: str | None = None):
        super().__init__()
        sizes = {len(ds.y_train) for ds in datasets}
        if len(sizes) != 1:
            raise ValueError(f"seed-batched training needs training splits of one size per seed, got {sorted(sizes)}")
        # val and test once (member 0); the other members hold their training split only
        datasets = [ds if k == 0 else replace(ds, x_val=None, y_val=None, x_test=None, y_test=None)
                    for k, ds in enumerate(datasets)]
        self.members = [InMemoryDataModule(ds, batch_size, eval_batch_size, seed=s, augment=augment)
                        for ds, s in zip(datasets, seeds)]

    @property
    def tensors(self) -> dict:
        return self.members[0].tensors

    def setup(self, stage: str | None = None) -> None:
        for member in self.members:
            member.trainer = self.trainer
            member.setup(stage)

    def train_dataloader(self) -> SeedBatches:
        return SeedBatches([member.train_dataloader() for member in self.members])

    def val_dataloader(self) -> TensorBatches:
        return self.members[0].val_dataloader()

    def test_dataloader(self) -> TensorBatches:
        return self.members[0].test_dataloader()
