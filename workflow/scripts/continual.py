"""Glue: run one continual configuration over its seeds."""
from pathlib import Path

from lifelearn.continual.stage import run_continual
from lifelearn.tracking import RunContext

ctx = RunContext.from_provenance(snakemake.config["_provenance"])
init = snakemake.input.get("init", [])
run_continual(snakemake.params.name, snakemake.params.run, Path(snakemake.input.data[0]).parent,
              [Path(m).parent for m in snakemake.output.metrics], ctx,
              init_dir=Path(init[0]).parent if init else None, threads=snakemake.threads,
              synthetic_root=Path(snakemake.params.synthetic_root))
