"""Glue: train one MTARD-study student method over its seeds."""
from pathlib import Path

from lifelearn.distill.robust_students import train_students
from lifelearn.tracking import RunContext
from lifelearn.train.runner import SeedOutputs

ctx = RunContext.from_provenance(snakemake.config["_provenance"])
outputs = [SeedOutputs(Path(c), Path(m), Path(h)) for c, m, h in
           zip(snakemake.output.checkpoints, snakemake.output.metrics, snakemake.output.history)]
teachers = {role: [Path(p) for p in snakemake.input[role]] for role in snakemake.params.roles}
trainer_cfg = {**snakemake.params.trainer, "progress_bar": snakemake.config["trainer"].get("progress_bar", True)}
train_students(snakemake.params.name, snakemake.params.spec, Path(snakemake.input.data[0]).parent, teachers,
               outputs, ctx, trainer_cfg, threads=snakemake.threads)
