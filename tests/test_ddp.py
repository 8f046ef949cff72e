"""Data-parallel training from config: DDP on 2 CPU processes (gloo) equals one
process with the same global batch."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.models import build_model
from lifelearn.train.data import InMemoryDataModule, TensorBatches
from lifelearn.train.fit import fit
from lifelearn.train.module import ClassifierModule

TRAIN = {"epochs": 2, "batch_size": 100, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": "none"}


def test_ranks_split_each_global_batch_without_overlap():
    x = torch.arange(10.0)[:, None]
    y = torch.arange(10)
    full = [yb for _, yb in TensorBatches(x, y, 4, shuffle=True, seed=3)]
    shards = [[yb for _, yb in TensorBatches(x, y, 4, shuffle=True, seed=3, rank=r, world_size=2)] for r in (0, 1)]
    for batch, a, b in zip(full, *shards):
        assert sorted(torch.cat([a, b]).tolist()) == sorted(batch.tolist())
        assert torch.equal(a, batch[0::2]) and torch.equal(b, batch[1::2])


def train(ds, workdir, trainer_cfg):
    pl.seed_everything(0, workers=True)
    model = build_model({"arch": "mlp", "hidden": [32]}, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    module = ClassifierModule(model, TRAIN)
    datamodule = InMemoryDataModule(ds, TRAIN["batch_size"], seed=0)
    fit(module, datamodule, TRAIN["epochs"], workdir, False, trainer_cfg)
    return module


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    prepare_dataset("mnist1d", data_root=tmp_path / "data")
    ds = load_dataset(tmp_path / "data" / "mnist1d")
    assert len(ds.y_train) % TRAIN["batch_size"] == 0  # equal shards in every batch
    torch.set_num_threads(1)
    single = train(ds, tmp_path / "single", {"accelerator": "cpu", "progress_bar": False})
    ddp = train(ds, tmp_path / "ddp", {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn",
                                        "progress_bar": False})
    # Tolerance: float32 sums in a different order (all-reduce), 144 SGD steps.
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp.model.state_dict()[name], value, atol=1e-4, rtol=1e-4)
    assert len(ddp.history) == TRAIN["epochs"]
    for a, b in zip(single.history, ddp.history):
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=2e-3)  # metrics reduced over both ranks
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=2e-3)
