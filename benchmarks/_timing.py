"""Shared by the benchmarks: time a Lightning fit the way the pipeline trains."""
from __future__ import annotations

import time
from pathlib import Path

from lifelearn.train.data import InMemoryDataModule
from lifelearn.train.fit import make_trainer


def timed_fit(module, ds, batch_size: int, epochs: int, workdir: Path) -> tuple[float, int]:
    """Seconds and optimiser steps of `epochs` epochs of `module` on `ds` (no validation)."""
    datamodule = InMemoryDataModule(ds, batch_size)
    trainer = make_trainer(epochs, workdir, False, {"accelerator": "cpu", "progress_bar": False})
    trainer.limit_val_batches = 0
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return time.perf_counter() - start, trainer.global_step
