"""Glue: evaluate one method's synthetic sets with fresh networks (dataset distillation)."""
from pathlib import Path

from lifelearn.distill.dataset_distillation_stages import evaluate_method
from lifelearn.tracking import RunContext

ctx = RunContext.from_provenance(snakemake.config["_provenance"])
p = snakemake.params
cfg = {"evaluation": p.evaluation, "model": p.model, "ipc": [{"ipc": i} for i in p.ipcs]}
keys = [(ipc, seed) for ipc in p.ipcs for seed in p.seeds]
synthetic = dict(zip(keys, dict.fromkeys(Path(f).parent for f in snakemake.input.synthetic)))
outputs = dict(zip(keys, zip(snakemake.output.metrics, snakemake.output.history)))
trainer_cfg = {**p.trainer, "progress_bar": False}
evaluate_method(p.method, cfg, p.seeds, synthetic, outputs, ctx, trainer_cfg, threads=snakemake.threads)
