"""Run a Lightning fit; with a work directory it resumes from its own last checkpoint after a kill."""
from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from lifelearn.phases import timed


def make_trainer(max_epochs: int, workdir: Path | None, logger, trainer_cfg: dict, val_every: int = 1) -> pl.Trainer:
    """A Trainer with the config's settings, validating every `val_every` epochs. With a
    `workdir` it checkpoints every epoch (`workdir/last.ckpt` links to the newest
    checkpoint; Lightning writes `last` only when a top-k checkpoint is saved, so
    save_top_k=0 would save it at the very end only); without one it keeps none."""
    checkpoints = [] if workdir is None else [
        ModelCheckpoint(dirpath=workdir, save_last="link", save_top_k=1, every_n_epochs=1)]
    rows = [EpochRows()] if logger else []
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=trainer_cfg.get("accelerator", "auto"),
        devices=trainer_cfg.get("devices", 1),
        strategy=trainer_cfg.get("strategy", "auto"),
        num_nodes=trainer_cfg.get("num_nodes", 1),
        precision=trainer_cfg.get("precision", "32-true"),
        deterministic=trainer_cfg.get("deterministic", True),
        logger=logger,
        callbacks=[*rows, *checkpoints],
        enable_checkpointing=bool(checkpoints),
        enable_progress_bar=trainer_cfg.get("progress_bar", True),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=val_every,
        default_root_dir=workdir,
    )


# Seconds between MLflow writes of a fit's epoch rows (EpochRows): an epoch longer than
# this is sent when it ends, shorter ones together.
FLUSH_EVERY_S = 5.0


class EpochRows(Callback):
    """Sends each new row of the module's `history` (one per epoch) to the trainer's loggers
    at the step Lightning's own epoch-end logging uses (`_batches_that_stepped - 1`,
    pytorch_lightning loops/fit_loop.py on_advance_end), with its keys and `epoch`. A row is
    taken at the next epoch's start, after ModelCheckpoint saved its epoch (Lightning's
    order: a kill in between is what `log_rows_lost_at_kill` mends), and the rows taken are
    written together once FLUSH_EVERY_S passed since the last write, at the fit's end and
    when it fails: one MLflow write costs ~15 ms and Lightning's `log_dict` ~2 ms per key
    on this CPU, together a third of a TGeo-KD student's 60-epoch fit
    (benchmarks/epoch_logging.py). Rows a resumed fit restored from its checkpoint are not
    sent again; in a multi-process run only rank 0 writes."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.taken, self.pending, self.flushed_at = len(pl_module.history), [], time.monotonic()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._take(trainer, pl_module)
        if time.monotonic() - self.flushed_at >= FLUSH_EVERY_S:
            self._flush(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._take(trainer, pl_module)
        self._flush(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._flush(trainer)  # the curve up to the failed epoch

    def _take(self, trainer, pl_module) -> None:
        step = trainer.fit_loop.epoch_loop._batches_that_stepped - 1
        self.pending += [(row, step) for row in pl_module.history[self.taken:]]
        self.taken = len(pl_module.history)

    def _flush(self, trainer) -> None:
        if self.pending and trainer.is_global_zero:
            for logger in trainer.loggers:
                send_rows(logger, self.pending)
        self.pending, self.flushed_at = [], time.monotonic()


def send_rows(logger, rows: list[tuple[dict, int]]) -> None:
    """(row, step) pairs to a Lightning logger: into an MLflow run in as few writes as
    MLflow allows (tracking.log_points), to any other logger row by row."""
    from pytorch_lightning.loggers import MLFlowLogger

    if isinstance(logger, MLFlowLogger):
        from lifelearn.tracking import log_points

        points = [(key, float(value), step) for row, step in rows for key, value in row.items()]
        log_points(logger.experiment, logger.run_id, points)
    else:
        for row, step in rows:
            logger.log_metrics({k: float(v) for k, v in row.items()}, step=step)
    logger.save()


@timed("training")
def fit(module: pl.LightningModule, datamodule: pl.LightningDataModule, max_epochs: int, workdir: Path | None,
        logger, trainer_cfg: dict, val_every: int = 1) -> pl.Trainer:
    """Fit; with a `workdir`, checkpoint every epoch and resume from `workdir/last.ckpt`
    when an earlier attempt left one (workdir None: no checkpoint, no resume)."""
    last = None if workdir is None else workdir / "last.ckpt"
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    resume = last if last is not None and last.exists() else None
    if resume and logger:
        log_rows_lost_at_kill(logger, resume)
    trainer = make_trainer(max_epochs, workdir, logger, trainer_cfg, val_every)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    if len(module.history) < max_epochs and last is not None and last.exists():
        # spawned ranks (ddp_spawn) send back the weights, not Python attributes
        module.history = list(torch.load(last, map_location="cpu", weights_only=True)["history"])
    return trainer


def log_rows_lost_at_kill(logger, last: Path) -> None:
    """Rows of the checkpoint's history that never reached MLflow (a kill after their epoch's
    checkpoint, before EpochRows wrote them): send them, each at the step Lightning logs its
    epoch end with, when the run has fewer `epoch` points than the checkpoint has rows.
    Every epoch steps the same number of batches (a fixed training split, no accumulation),
    so epoch e's step is (e + 1) * batches per epoch - 1."""
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    history = checkpoint.get("history", [])
    logged = len(logger.experiment.get_metric_history(logger.run_id, "epoch"))
    if history and logged < len(history):
        per_epoch = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] // len(history)
        send_rows(logger, [(row, (e + 1) * per_epoch - 1) for e, row in enumerate(history) if e >= logged])
