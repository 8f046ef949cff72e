"""Training: in-memory batches and augmentation, optimiser/schedule config, the
Lightning classifier + fit, determinism of the pretrain stage, and resume."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import yaml

from lifelearn import tracking
from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.io import read_json
from lifelearn.models import build_model
from lifelearn.models.checkpoint import load_model
from lifelearn.train.data import InMemoryDataModule, TensorBatches, random_crop_flip
from lifelearn.io import work_dir
from lifelearn.train.fit import fit, log_rows_lost_at_kill, send_rows
from lifelearn.train.module import ClassifierModule
from lifelearn.train.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler
from lifelearn.train.runner import train_and_test

from conftest import REPO, run_job, trained_model_paths

TRAINER = {"accelerator": "cpu", "progress_bar": False}
HISTORY_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return prepare_dataset("digits", data_root=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def digits(digits_dir):
    return load_dataset(digits_dir)


# --- TensorBatches -------------------------------------------------------------------

def _epoch_order(batches: TensorBatches) -> list[int]:
    return [int(v) for _, yb in batches for v in yb]


def test_shuffled_epoch_visits_every_index_once():
    n = 50
    y = torch.arange(n)
    x = torch.arange(n, dtype=torch.float32)[:, None] * 10
    batches = TensorBatches(x, y, 7, shuffle=True, seed=3)
    seen, sizes = [], []
    for xb, yb in batches:
        assert torch.equal(xb[:, 0], yb.float() * 10)  # x and y stay paired
        seen += yb.tolist()
        sizes.append(len(yb))
    assert sorted(seen) == list(range(n))
    assert seen != list(range(n))  # actually shuffled
    assert sizes == [7] * 7 + [1]


def test_shuffle_order_depends_on_seed_and_epoch_only():
    y = torch.arange(40)
    epoch = {"value": 0}
    a = TensorBatches(y.float(), y, 8, shuffle=True, seed=1, epoch_fn=lambda: epoch["value"])
    b = TensorBatches(y.float(), y, 8, shuffle=True, seed=1, epoch_fn=lambda: epoch["value"])
    first = _epoch_order(a)
    assert _epoch_order(a) == first  # re-iterating the same epoch repeats it
    assert _epoch_order(b) == first  # a separate object with the same (seed, epoch) too
    epoch["value"] = 1
    second = _epoch_order(a)
    assert second != first and sorted(second) == list(range(40))
    epoch["value"] = 0
    assert _epoch_order(a) == first  # going back to epoch 0 gives epoch 0's order
    other_seed = TensorBatches(y.float(), y, 8, shuffle=True, seed=2)
    assert _epoch_order(other_seed) != first


@pytest.mark.parametrize("n,bs,drop_last,expected", [
    (50, 7, False, 8), (50, 7, True, 7), (49, 7, False, 7), (49, 7, True, 7), (3, 7, False, 1), (3, 7, True, 0),
])
def test_len_and_batch_count(n, bs, drop_last, expected):
    y = torch.arange(n)
    batches = TensorBatches(y.float(), y, bs, shuffle=True, drop_last=drop_last)
    assert len(batches) == expected
    got = list(batches)
    assert len(got) == expected
    assert all(len(yb) == bs for _, yb in got[:-1])
    visited = [int(v) for _, yb in got for v in yb]
    assert len(visited) == len(set(visited)) == (expected * bs if drop_last else n)


def test_eval_mode_walks_in_order():
    y = torch.arange(23)
    batches = TensorBatches(y.float() + 0.5, y, 5)
    got = list(batches)
    assert [len(yb) for _, yb in got] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat([yb for _, yb in got]), y)
    assert torch.equal(torch.cat([xb for xb, _ in got]), y.float() + 0.5)


def test_augment_is_applied_to_training_batches():
    y = torch.arange(10)
    x = torch.zeros(10, 1, 2, 2)
    calls = []

    def augment(xb, gen):
        assert isinstance(gen, torch.Generator)
        calls.append(len(xb))
        return xb + 1

    batches = TensorBatches(x, y, 4, shuffle=True, augment=augment)
    out = torch.cat([xb for xb, _ in batches])
    assert calls == [4, 4, 2]
    assert torch.equal(out, torch.ones(10, 1, 2, 2))


# --- random_crop_flip --------------------------------------------------------------

def _crops(img: torch.Tensor, pad: int):
    """Every (dy, dx, flip) -> candidate output for one (C, H, W) image, built by hand."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=img.dtype)
    padded[:, pad:pad + h, pad:pad + w] = img
    out = {}
    for dy, dx in itertools.product(range(2 * pad + 1), repeat=2):
        crop = padded[:, dy:dy + h, dx:dx + w]
        out[(dy, dx, False)] = crop
        out[(dy, dx, True)] = torch.flip(crop, dims=[2])
    return out


def _match(out_img, candidates):
    return [key for key, cand in candidates.items() if torch.equal(out_img, cand)]


def test_crop_flip_outputs_are_padded_crops():
    n, c, h, w, pad = 6, 2, 3, 5, 2
    x = torch.arange(1, n * c * h * w + 1, dtype=torch.float32).view(n, c, h, w)  # distinct, non-zero
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(n):
        matches = _match(out[i], _crops(x[i], pad))
        assert len(matches) == 1, (i, matches)  # distinct values: offset and flip are unique


def test_crop_flip_covers_all_offsets_and_flips():
    """Over many samples every offset in [0, 2*pad] and both flip states occur, ~half flipped."""
    n, pad = 600, 1
    img = torch.arange(1, 1 + 2 * 3, dtype=torch.float32).view(1, 2, 3)
    x = img.expand(n, 1, 2, 3).clone()
    out = random_crop_flip(x, torch.Generator().manual_seed(5), pad=pad)
    candidates = _crops(img, pad)
    keys = []
    for i in range(n):
        m = _match(out[i], candidates)
        assert len(m) == 1
        keys.append(m[0])
    assert set(keys) == set(candidates)  # all 9 offsets x 2 flips
    flipped = sum(k[2] for k in keys) / n
    assert 0.4 < flipped < 0.6


def test_crop_flip_pad_zero_is_flip_only():
    x = torch.rand(20, 3, 4, 4)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    for i in range(20):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))


def test_crop_flip_deterministic_per_seed():
    x = torch.rand(16, 3, 8, 8)
    a = random_crop_flip(x, torch.Generator().manual_seed(11))
    b = random_crop_flip(x, torch.Generator().manual_seed(11))
    c = random_crop_flip(x, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_datamodule_rejects_unknown_augment():
    ds = SimpleNamespace(augment="none")
    with pytest.raises(ValueError) as err:
        InMemoryDataModule(ds, batch_size=8, augment="mixup")
    assert "mixup" in str(err.value)
    assert "none" in str(err.value) and "crop_flip" in str(err.value)
    with pytest.raises(ValueError, match="crop_flip"):
        InMemoryDataModule(SimpleNamespace(augment="cutout"), batch_size=8)
    assert InMemoryDataModule(SimpleNamespace(augment="crop_flip"), batch_size=8).augment is random_crop_flip
    assert InMemoryDataModule(SimpleNamespace(augment="crop_flip"), batch_size=8, augment="none").augment is None


# --- optimiser and schedule ----------------------------------------------------------

def _params():
    return [torch.nn.Parameter(torch.ones(3))]


def test_sgd_settings():
    opt = build_optimizer(_params(), {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4})
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 5e-4)
    plain = build_optimizer(_params(), {"optimizer": "sgd", "lr": 0.05})
    assert (plain.param_groups[0]["momentum"], plain.param_groups[0]["weight_decay"]) == (0.0, 0.0)


def test_sgd_step_matches_hand_update():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = build_optimizer([p], {"optimizer": "sgd", "lr": 0.5, "weight_decay": 0.1})
    p.grad = torch.tensor([0.2, 0.4])
    opt.step()
    # p - lr * (grad + wd * p)
    assert torch.allclose(p.detach(), torch.tensor([1.0 - 0.5 * (0.2 + 0.1), -2.0 - 0.5 * (0.4 - 0.2)]))


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_family(name, cls):
    opt = build_optimizer(_params(), {"optimizer": name, "lr": 0.003, "weight_decay": 0.01})
    assert type(opt) is cls
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]) == (0.003, 0.01)


@pytest.mark.slow
def test_builder_is_light():
    """train.optim imports no Lightning (continual jobs avoid its start-up)."""
    import subprocess
    import sys

    code = ("import sys, lifelearn.train.optim, lifelearn.continual.template; "
            "sys.exit('pytorch_lightning' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_shared_train_schema_offers_the_builders_options_and_every_study_uses_it():
    shared = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["$defs"]["train_options"]["properties"]
    assert sorted(shared["optimizer"]["enum"]) == sorted(OPTIMIZERS)
    assert sorted(shared["schedule"]["enum"]) == sorted(SCHEDULES)
    text = "".join(p.read_text() for p in (REPO / "config" / "schemas").glob("*.yaml"))
    assert "optimizer: {enum" not in text and "schedule: {enum" not in text  # no second list of names
    assert text.count('$ref: "../schema.yaml#/$defs/train"') >= 4


def test_unknown_optimizer():
    with pytest.raises(ValueError) as err:
        build_optimizer(_params(), {"optimizer": "rmsprop", "lr": 0.1})
    assert "rmsprop" in str(err.value)
    assert all(name in str(err.value) for name in ("sgd", "adam", "adamw"))


def _lrs(sched, opt, epochs):
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_multistep_schedule():
    opt = build_optimizer(_params(), {"optimizer": "sgd", "lr": 1.0})
    sched = build_scheduler(opt, {"schedule": "multistep", "milestones": [2, 4], "gamma": 0.5, "epochs": 6})
    assert _lrs(sched, opt, 6) == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    opt = build_optimizer(_params(), {"optimizer": "sgd", "lr": 1.0})
    sched = build_scheduler(opt, {"schedule": "multistep", "milestones": [1]})  # default gamma 0.1
    assert _lrs(sched, opt, 3) == pytest.approx([1.0, 0.1, 0.1])


def test_cosine_schedule():
    opt = build_optimizer(_params(), {"optimizer": "sgd", "lr": 0.2})
    sched = build_scheduler(opt, {"schedule": "cosine", "epochs": 4})
    expected = [0.2 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    assert _lrs(sched, opt, 4) == pytest.approx(expected)


def test_no_schedule_and_unknown_schedule():
    opt = build_optimizer(_params(), {"optimizer": "sgd", "lr": 0.2})
    assert build_scheduler(opt, {}) is None
    assert build_scheduler(opt, {"schedule": "none"}) is None
    with pytest.raises(ValueError) as err:
        build_scheduler(opt, {"schedule": "step", "epochs": 3})
    assert "step" in str(err.value)
    assert all(name in str(err.value) for name in ("none", "cosine", "multistep"))


# --- ClassifierModule + fit ----------------------------------------------------------

def _module(ds, seed, spec, train_cfg):
    pl.seed_everything(seed, workers=True)
    model = build_model(spec, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    return ClassifierModule(model, train_cfg)


def test_fit_digits_history(digits, tmp_path):
    cfg = {"epochs": 2, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "schedule": "cosine"}
    module = _module(digits, 0, {"arch": "mlp", "hidden": [16]}, cfg)
    dm = InMemoryDataModule(digits, cfg["batch_size"], seed=0)
    trainer = fit(module, dm, 2, tmp_path / "work", False, TRAINER)
    assert trainer.current_epoch == 2
    assert (tmp_path / "work" / "last.ckpt").is_file()
    hist = module.history
    assert len(hist) == 2
    assert [row["epoch"] for row in hist] == [0, 1]
    for row in hist:
        assert set(row) == HISTORY_KEYS
        assert 0.0 <= row["train_acc"] <= 1.0 and 0.0 <= row["val_acc"] <= 1.0
        assert row["train_loss"] > 0 and row["val_loss"] > 0
    # last row's validation numbers are those of the final weights, recomputed here
    x_val = torch.as_tensor(digits.x_val)
    y_val = torch.as_tensor(digits.y_val)
    with torch.no_grad():
        logits = module.model.eval()(x_val)
    correct = int((logits.argmax(1) == y_val).sum())
    assert hist[-1]["val_acc"] == pytest.approx(correct / len(y_val), abs=1e-12)
    assert hist[-1]["val_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y_val).item(), rel=1e-5)
    # 2 epochs of Adam learn something on digits (10 classes: chance is 0.1)
    assert hist[-1]["val_acc"] > 0.3


def test_train_and_test_without_workdir_keeps_no_checkpoint_and_gives_the_same_numbers(digits, tmp_path, monkeypatch):
    """The DD evaluation's path (no workdir, val every 2 epochs) trains exactly as the
    checkpointed one; validation frequency changes only which epochs carry val metrics."""
    cfg = {"epochs": 3, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
    spec = {"arch": "mlp", "hidden": [16]}

    def build(model, ds):
        return ClassifierModule(model, cfg)

    monkeypatch.chdir(tmp_path)
    plain, module = train_and_test(digits, spec, cfg, build, 3, TRAINER, val_every=2)
    saved, every_epoch = train_and_test(digits, spec, cfg, build, 3, TRAINER, workdir=tmp_path / "work")
    assert list(tmp_path.iterdir()) == [tmp_path / "work"]  # nothing written without a workdir
    assert (tmp_path / "work" / "last.ckpt").exists()
    own = {"train_seconds", "val_acc"}  # a timing, and the val accuracy of another epoch
    assert {k: v for k, v in plain.items() if k not in own} == {k: v for k, v in saved.items() if k not in own}
    assert plain["epochs"] == len(module.history) == 3
    assert plain["val_acc"] == module.history[1]["val_acc"]  # epoch 2 has no validation: epoch 1's stays
    # the history carries val metrics on the epochs that validated only (not epoch 1's again)
    assert ["val_acc" in row for row in module.history] == [False, True, False]
    val = ("val_acc", "val_loss")
    assert [module.history[1][k] for k in val] == [every_epoch.history[1][k] for k in val]


# --- determinism of the pretrain stage ----------------------------------------------

TEACHER = {
    "dataset": "digits",
    "model": {"arch": "convnet", "channels": [4]},
    "train": {"epochs": 2, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "schedule": "cosine"},
    "seeds": [0],
}


def test_pretrain_is_deterministic(digits_dir, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.ensure_store(uri)
    ctx = tracking.RunContext(tracking_uri=uri, profile="test")
    records, outs = [], []
    for run in ("a", "b"):
        out = trained_model_paths(tmp_path / run, [0])
        records += [r.to_dict() for r in run_job("teachers", "pretrain", "digits_convnet", {**TEACHER, "method": "natural"},
                                                 [0], ctx, {"data": [digits_dir / "meta.json"]}, out, TRAINER)]
        outs.append(SimpleNamespace(checkpoint=out["checkpoints"][0], metrics=out["metrics"][0], history=out["history"][0]))
    a, b = records
    assert a["run_id"] != b["run_id"]
    ma, mb = dict(a["metrics"]), dict(b["metrics"])
    assert ma.pop("train_seconds") >= 0 and mb.pop("train_seconds") >= 0
    assert ma == mb
    assert ma["epochs"] == 2
    assert {k: v for k, v in a.items() if k not in ("metrics", "run_id")} == \
           {k: v for k, v in b.items() if k not in ("metrics", "run_id")}
    assert read_json(outs[0].metrics)["metrics"] == a["metrics"]
    assert outs[0].history.read_bytes() == outs[1].history.read_bytes()
    hist = pd.read_csv(outs[0].history)
    assert list(hist["epoch"]) == [0, 1] and HISTORY_KEYS <= set(hist.columns)
    wa, wb = load_model(outs[0].checkpoint).state_dict(), load_model(outs[1].checkpoint).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # both seeds are MLflow runs of the "teachers" experiment, finished, with the same numbers
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for record in records:
        run = client.get_run(record["run_id"])
        assert run.info.status == "FINISHED"
        assert run.info.run_name == "digits_convnet/seed0"
        assert run.data.tags["stage"] == "pretrain" and run.data.tags["seed"] == "0"
        assert run.data.params["model.arch"] == "convnet" and run.data.params["train.epochs"] == "2"
        assert run.data.metrics["test_acc"] == pytest.approx(record["metrics"]["test_acc"])
    assert client.get_experiment(client.get_run(a["run_id"]).info.experiment_id).name == "teachers"
    # the resumable scratch state is removed once the seed is done
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".work-")]


# --- resume after an interruption -----------------------------------------------------

RESUME_SPEC = {"arch": "convnet", "channels": [4, 8]}
RESUME_CFG = {"epochs": 3, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
              "weight_decay": 5e-4, "schedule": "multistep", "milestones": [1, 2], "gamma": 0.5}


class EpochCountingModule(ClassifierModule):
    """Records which epochs this object actually trained (not saved in checkpoints)."""

    def __init__(self, model, train_cfg):
        super().__init__(model, train_cfg)
        self.epochs_trained: list[int] = []

    def on_train_epoch_start(self) -> None:
        self.epochs_trained.append(self.current_epoch)


def _fit_epochs(ds, workdir: Path, max_epochs: int, logger=False) -> EpochCountingModule:
    pl.seed_everything(7, workers=True)
    model = build_model(RESUME_SPEC, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    module = EpochCountingModule(model, RESUME_CFG)
    dm = InMemoryDataModule(ds, RESUME_CFG["batch_size"], seed=7, augment="crop_flip")
    fit(module, dm, max_epochs, workdir, logger, TRAINER)
    return module


@pytest.mark.parametrize("reached", [0, 1, 2])
def test_rows_lost_between_checkpoint_and_logger_reach_mlflow_on_resume(digits, tmp_path, reached):
    """A kill after epoch 1's checkpoint when only the first `reached` rows had reached
    MLflow: the resume sends the others, each at Lightning's epoch-end step, once; a
    complete run gets nothing."""
    from pytorch_lightning.loggers import MLFlowLogger

    module = _fit_epochs(digits, tmp_path / "work", 2)
    last = tmp_path / "work" / "last.ckpt"
    per_epoch = math.ceil(len(digits.y_train) / RESUME_CFG["batch_size"])
    steps = [per_epoch - 1, 2 * per_epoch - 1]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tracking.tracked_run(tracking.RunContext(uri, "test"), "resume", "r", {}, {})
    with run as tracked:
        logger = MLFlowLogger(experiment_name="resume", run_id=tracked.run_id, tracking_uri=uri)
        send_rows(logger, list(zip(module.history, steps))[:reached])
        log_rows_lost_at_kill(logger, last)
        log_rows_lost_at_kill(logger, last)  # now complete: nothing more
        for key in ("epoch", "val_acc", "train_loss"):
            points = sorted((p.step, p.value) for p in logger.experiment.get_metric_history(tracked.run_id, key))
            assert points == [(step, pytest.approx(row[key], rel=1e-12)) for row, step in zip(module.history, steps)]


def test_each_epoch_row_reaches_mlflow_once_at_lightnings_epoch_step(digits, tmp_path):
    """Every history key (and `epoch`) is one MLflow point per epoch, at the step Lightning's
    own epoch-end logging uses (batches stepped so far - 1), with the history's value."""
    from pytorch_lightning.loggers import MLFlowLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracking.tracked_run(tracking.RunContext(uri, "test"), "rows", "r", {}, {}) as tracked:
        logger = MLFlowLogger(experiment_name="rows", run_id=tracked.run_id, tracking_uri=uri)
        module = _fit_epochs(digits, tmp_path / "work", 3, logger)
        client = logger.experiment
    per_epoch = math.ceil(len(digits.y_train) / RESUME_CFG["batch_size"])
    assert len(module.history) == 3
    for key in module.history[0]:
        points = sorted((p.step, p.value) for p in client.get_metric_history(tracked.run_id, key))
        assert points == [(per_epoch * (e + 1) - 1, pytest.approx(float(row[key]), rel=1e-12))
                          for e, row in enumerate(module.history)], key


def test_resume_matches_uninterrupted_run(digits, tmp_path):
    full = _fit_epochs(digits, tmp_path / "full", 3)

    partial = _fit_epochs(digits, tmp_path / "resumed", 1)
    assert len(partial.history) == 1
    assert (tmp_path / "resumed" / "last.ckpt").is_file()
    resumed = _fit_epochs(digits, tmp_path / "resumed", 3)

    assert [r["epoch"] for r in full.history] == [0, 1, 2]
    assert full.epochs_trained == [0, 1, 2] and partial.epochs_trained == [0]
    assert resumed.epochs_trained == [1, 2]  # it really resumed: epoch 0 came from last.ckpt
    assert resumed.history == full.history
    assert partial.history[0] == full.history[0]
    sd_full, sd_res = full.model.state_dict(), resumed.model.state_dict()
    assert sd_full.keys() == sd_res.keys()
    for k in sd_full:
        assert torch.equal(sd_full[k], sd_res[k]), k
    # the run was not trivially the same: weights moved away from their initial values
    init = _module(digits, 7, RESUME_SPEC, RESUME_CFG).model.state_dict()
    assert not torch.equal(init["head.weight"], sd_full["head.weight"])


# --- work_dir --------------------------------------------------------------------------

def test_work_dir_keyed_by_config(tmp_path):
    final = tmp_path / "ckpt" / "teacher" / "seed0.pt"
    teacher = {"model": {"arch": "mlp", "hidden": [16]}, "train": {"lr": 0.1, "epochs": 2}}
    same = {"train": {"epochs": 2, "lr": 0.1}, "model": {"hidden": [16], "arch": "mlp"}}  # other key order
    changed = {"model": {"arch": "mlp", "hidden": [16]}, "train": {"lr": 0.01, "epochs": 2}}
    a = work_dir(final, teacher, 0, TRAINER)
    assert a == work_dir(final, same, 0, dict(TRAINER))
    assert a.parent == final.parent
    assert a.name.startswith(".work-seed0-")
    assert a != work_dir(final, changed, 0, TRAINER)
    assert a != work_dir(final, teacher, 1, TRAINER)
    assert a != work_dir(final, teacher, 0, {**TRAINER, "precision": "bf16-mixed"})
    assert a != work_dir(final.with_name("seed1.pt"), teacher, 0, TRAINER)
    assert np.unique([work_dir(final, teacher, s, TRAINER).name for s in range(20)]).size == 20


class DivergesAtEpoch2(ClassifierModule):
    def on_train_epoch_end(self) -> None:
        if self.current_epoch == 2:
            raise FloatingPointError("diverged")
        super().on_train_epoch_end()


@pytest.mark.parametrize("flush_every_s, writes", [(0.0, 3), (1e9, 1)])
def test_epoch_rows_are_written_per_epoch_or_together_and_a_failed_fit_keeps_its_curve(
        digits, tmp_path, monkeypatch, flush_every_s, writes):
    """Rows reach MLflow one write per epoch when epochs outlast FLUSH_EVERY_S, in one write
    when the fit is shorter; a fit that fails in epoch 2 still leaves epochs 0 and 1."""
    from pytorch_lightning.loggers import MLFlowLogger

    import lifelearn.train.fit as fit_module

    monkeypatch.setattr(fit_module, "FLUSH_EVERY_S", flush_every_s)
    calls = []
    real = tracking.log_points
    monkeypatch.setattr(tracking, "log_points", lambda *a: (calls.append(1), real(*a)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name, cls, epochs in (("ok", ClassifierModule, 3), ("fails", DivergesAtEpoch2, 4)):
        calls.clear()
        with tracking.tracked_run(tracking.RunContext(uri, "test"), "rows", name, {}, {}) as tracked:
            logger = MLFlowLogger(experiment_name="rows", run_id=tracked.run_id, tracking_uri=uri)
            module = cls(build_model(RESUME_SPEC, digits.input_shape, digits.num_classes, digits.mean, digits.std),
                         RESUME_CFG)
            try:
                fit(module, InMemoryDataModule(digits, RESUME_CFG["batch_size"], seed=7), epochs, None, logger, TRAINER)
            except FloatingPointError:
                assert name == "fails"
            points = logger.experiment.get_metric_history(tracked.run_id, "epoch")
        assert sorted(p.value for p in points) == [0.0, 1.0, 2.0][:len(module.history)]
        assert len(calls) == (writes if name == "ok" else min(writes, 2))
