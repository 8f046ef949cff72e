"""Glue: one method's synthetic sets for every IPC and seed (dataset distillation)."""
from pathlib import Path

from lifelearn.distill.dataset_distillation_stages import distill_method
from lifelearn.tracking import RunContext

ctx = RunContext.from_provenance(snakemake.config["_provenance"])
p = snakemake.params
cfg = {**p.shared, "experts": {"train": {"lr": p.shared["expert_lr"]}},
       "methods": {} if p.method_cfg is None else {p.method: p.method_cfg}}
keys = [(c["ipc"], seed) for c in p.shared["ipc"] for seed in p.seeds]
synthetic = dict(zip(keys, dict.fromkeys(Path(f).parent for f in snakemake.output.synthetic)))
loss = dict(zip(keys, snakemake.output.loss))
distill_method(p.method, cfg, p.seeds, Path(snakemake.input.data[0]).parent, list(snakemake.input.experts),
               synthetic, loss, ctx, threads=snakemake.threads)
