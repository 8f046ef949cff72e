"""Glue of the report job: lifelearn.report.writer.run_snakemake_report (the report, its
MLflow run, its phase split), in a warm child of the run's fork server when one listens
(lifelearn.warm), else here."""
from lifelearn.warm import run_job_warm_or_here

run_job_warm_or_here(snakemake, "lifelearn.report.writer:run_snakemake_report")
