"""Glue: train the experts of one expert set (dataset distillation)."""
from pathlib import Path

from lifelearn.distill.dataset_distillation_stages import train_experts
from lifelearn.tracking import RunContext

ctx = RunContext.from_provenance(snakemake.config["_provenance"])
p = snakemake.params
cfg = {"model": p.model, "experts": {**p.experts, "sets": {p.expert_set: p.options}}}
train_experts(p.expert_set, cfg, Path(snakemake.input.data[0]).parent, list(snakemake.output.experts),
              snakemake.output.summary, ctx, threads=snakemake.threads)
