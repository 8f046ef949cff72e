"""Glue: the run's cost per rule (CSV) and its page for `snakemake --report` (HTML), per study, stage and rule."""
from lifelearn.io import output_to
from lifelearn.pipeline_cost import write_cost

with output_to(snakemake.log[0]):
    write_cost(snakemake.params.benchmarks, snakemake.params.studies, snakemake.output.table,
               snakemake.output.page, snakemake.params.profile, snakemake.params.stages)
