"""Glue of every study job: in a warm child of the run's fork server when one listens
(lifelearn.warm), else here; either way lifelearn.studies.run_snakemake_job: its log, then
`lifelearn.studies.<study>.run(job, paths)`."""
from lifelearn.warm import run_job_warm_or_here

run_job_warm_or_here(snakemake)
