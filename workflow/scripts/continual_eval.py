"""Glue: the continual metrics of one run's seeds, their MLflow logging and summary."""
from pathlib import Path

from lifelearn.evaluate.continual_stage import evaluate_run

expert = snakemake.input.get("expert", [])
evaluate_run([Path(p).parent for p in snakemake.input.metrics],
             [Path(p).parent for p in expert] if expert else None,
             Path(snakemake.output.summary), snakemake.config["_provenance"]["tracking_uri"],
             tuple(snakemake.params.windows))
