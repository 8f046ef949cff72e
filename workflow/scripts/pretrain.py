"""Glue: pretrain one teacher over its seeds."""
from pathlib import Path

from lifelearn.tracking import RunContext
from lifelearn.train.pretrain import pretrain_teacher
from lifelearn.train.runner import SeedOutputs

ctx = RunContext.from_provenance(snakemake.config["_provenance"])
outputs = [SeedOutputs(Path(c), Path(m), Path(h)) for c, m, h in
           zip(snakemake.output.checkpoints, snakemake.output.metrics, snakemake.output.history)]
trainer_cfg = {**snakemake.params.trainer, "progress_bar": snakemake.config["trainer"].get("progress_bar", True)}
pretrain_teacher(snakemake.params.name, snakemake.params.teacher, Path(snakemake.input.data[0]).parent,
                 outputs, ctx, trainer_cfg, threads=snakemake.threads)
