"""Run a Lightning fit; with a work directory it resumes from its own last checkpoint after a kill."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lifelearn.phases import timed


def make_trainer(max_epochs: int, workdir: Path | None, logger, trainer_cfg: dict, val_every: int = 1) -> pl.Trainer:
    """A Trainer with the config's settings, validating every `val_every` epochs. With a
    `workdir` it checkpoints every epoch (`workdir/last.ckpt` links to the newest
    checkpoint; Lightning writes `last` only when a top-k checkpoint is saved, so
    save_top_k=0 would save it at the very end only); without one it keeps none."""
    checkpoints = [] if workdir is None else [
        ModelCheckpoint(dirpath=workdir, save_last="link", save_top_k=1, every_n_epochs=1)]
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=trainer_cfg.get("accelerator", "auto"),
        devices=trainer_cfg.get("devices", 1),
        strategy=trainer_cfg.get("strategy", "auto"),
        num_nodes=trainer_cfg.get("num_nodes", 1),
        precision=trainer_cfg.get("precision", "32-true"),
        deterministic=trainer_cfg.get("deterministic", True),
        logger=logger,
        callbacks=checkpoints,
        enable_checkpointing=bool(checkpoints),
        enable_progress_bar=trainer_cfg.get("progress_bar", True),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=val_every,
        default_root_dir=workdir,
    )


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
        log_epoch_lost_at_kill(logger, resume)
    trainer = make_trainer(max_epochs, workdir, logger, trainer_cfg, val_every)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    if len(module.history) < max_epochs and last is not None and last.exists():
        # spawned ranks (ddp_spawn) send back the weights, not Python attributes
        module.history = list(torch.load(last, map_location="cpu", weights_only=True)["history"])
    return trainer


def log_epoch_lost_at_kill(logger, last: Path) -> None:
    """Lightning saves epoch k's checkpoint before it sends epoch k's metrics to the logger;
    a job killed in between resumes at epoch k + 1, so that point would never reach MLflow.
    Send the checkpoint's last history row, at the step Lightning logs epoch ends with,
    when the run has one epoch fewer than the checkpoint (every row has val_acc)."""
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    history = checkpoint.get("history", [])
    logged = len(logger.experiment.get_metric_history(logger.run_id, "val_acc"))
    if history and logged == len(history) - 1:
        step = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"]
        logger.log_metrics({k: float(v) for k, v in history[-1].items()}, step=step)

