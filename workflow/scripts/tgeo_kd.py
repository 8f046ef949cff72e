"""Glue: train one tgeo_kd method over its seeds."""
from pathlib import Path

from lifelearn.distill.tgeo_study import run_method
from lifelearn.tracking import RunContext
from lifelearn.train.runner import SeedOutputs

ctx = RunContext.from_provenance(snakemake.config["_provenance"])
outputs = [SeedOutputs(Path(c), Path(m), Path(h)) for c, m, h in
           zip(snakemake.output.checkpoints, snakemake.output.metrics, snakemake.output.history)]
trainer_cfg = {**snakemake.params.trainer, "progress_bar": snakemake.config["trainer"].get("progress_bar", True)}
run_method(snakemake.params.method, snakemake.params.section, Path(snakemake.input.data[0]).parent,
           snakemake.input.teachers, outputs, ctx, trainer_cfg, threads=snakemake.threads)
