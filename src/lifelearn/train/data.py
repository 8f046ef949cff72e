"""In-memory tensor data: the whole split lives as one tensor on the training device,
batches are drawn by index, augmentation is batched tensor code (DESIGN: no
per-sample Python in the hot loop).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn import functional as F


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator fixed by (seed, epoch): shuffles and augmentations of an epoch
    are the same whether the run was interrupted and resumed or not."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """CIFAR augmentation on a batch (N, C, H, W): zero-pad by `pad`, crop back at a
    random offset per sample, flip horizontally with probability 1/2."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, chans, rows, cols]
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, out.flip(-1), out)


AUGMENTATIONS: dict[str, Callable | None] = {"none": None, "crop_flip": random_crop_flip}


class TensorBatches:
    """Iterable of (x, y) batches over in-memory tensors.

    Training order is a permutation drawn from `epoch_generator(seed, epoch_fn())`;
    evaluation (shuffle=False) walks the tensors in order. Under data parallelism
    (`world_size` > 1) `batch_size` is the GLOBAL batch: every rank draws the same
    permutation and takes every `world_size`-th sample of each batch from `rank` on, so
    the ranks' averaged gradients equal the single-process gradient of that batch.
    """

    def __init__(self, x, y, batch_size, shuffle=False, seed=0, epoch_fn=lambda: 0, augment=None, drop_last=False,
                 rank=0, world_size=1):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.seed, self.epoch_fn = shuffle, seed, epoch_fn
        self.augment, self.drop_last = augment, drop_last
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        gen = epoch_generator(self.seed, self.epoch_fn())
        n = len(self.y)
        order = torch.randperm(n, generator=gen).to(self.y.device) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            idx = order[sl] if order is not None else torch.arange(sl.start, sl.stop, device=self.y.device)
            xb, yb = self.x[idx], self.y[idx]
            if self.augment is not None:
                xb = self.augment(xb, gen)  # on the whole global batch: same draws on every rank
            if self.world_size > 1:
                xb, yb = xb[self.rank :: self.world_size], yb[self.rank :: self.world_size]
            yield xb, yb


class InMemoryDataModule(pl.LightningDataModule):
    """Train / val / test splits of a registry dataset as tensors on the root device."""

    def __init__(self, dataset, batch_size: int, eval_batch_size: int = 1024, seed: int = 0, augment: str | None = None):
        super().__init__()
        self.dataset = dataset
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        name = augment if augment is not None else dataset.augment
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augment {name!r}; allowed: {', '.join(AUGMENTATIONS)}")
        self.augment = AUGMENTATIONS[name]
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def setup(self, stage: str | None = None) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        for split in ("train", "val", "test"):
            x, y = getattr(self.dataset, f"x_{split}"), getattr(self.dataset, f"y_{split}")
            if x is None:  # not loaded (a tuning job's test split)
                continue
            self.tensors[split] = (torch.as_tensor(np.asarray(x)).to(device), torch.as_tensor(np.asarray(y)).to(device))

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _ranks(self) -> dict:
        if self.trainer is None:
            return {}
        return {"rank": self.trainer.global_rank, "world_size": self.trainer.world_size}

    def train_dataloader(self) -> TensorBatches:
        x, y = self.tensors["train"]
        return TensorBatches(x, y, self.batch_size, shuffle=True, seed=self.seed, epoch_fn=self._epoch,
                             augment=self.augment, **self._ranks())

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.tensors["val"], self.eval_batch_size, **self._ranks())

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.tensors["test"], self.eval_batch_size, **self._ranks())
