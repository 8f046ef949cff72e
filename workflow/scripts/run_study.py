"""Glue of every study job: its log, then `lifelearn.studies.<study>.run(job, paths)`."""
from lifelearn.studies import run_snakemake_job

run_snakemake_job(snakemake)
