"""One module per study (teachers, mtard, tgeo_kd, dataset_distillation, continual), each
with the same three names, so the rules, the schema check, the report and the glue read
every study the same way:

- `METHODS`: the study's registry, name -> what the method needs (builder, inputs, label);
  the one list of its method names.
- `jobs(config, layout) -> list[JobSpec]`: the study's Snakemake jobs, planned from the
  resolved config (light imports: the Snakefile calls it while parsing).
- `run(job, paths) -> list[RunRecord]`: the one entry point of every job of the study
  (`job.step` says which kind), called by workflow/scripts/run_study.py.

Method code lives in distill/, continual/ and train/; a study composes it.
"""
from __future__ import annotations

import importlib
from types import ModuleType


def study(name: str) -> ModuleType:
    """The module of study `name` (config/studies/<name>.yaml)."""
    try:
        return importlib.import_module(f"lifelearn.studies.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"lifelearn.studies.{name}":
            raise
        raise ValueError(f"study {name!r} (config/studies/{name}.yaml) has no module "
                         f"src/lifelearn/studies/{name}.py") from None


def check_names(names, registry, key: str) -> None:
    """Every name in `names` is in `registry`; the error names the config key."""
    unknown = sorted(set(names) - set(registry))
    if unknown:
        raise ValueError(f"{key}: unknown {unknown}; allowed: {', '.join(sorted(registry))}")


def run_snakemake_job(smk) -> list:
    """The body of workflow/scripts/run_study.py: the job's output into its log file, its
    MLflow context, then its study's `run(job, paths)`."""
    from lifelearn.io import output_to
    from lifelearn.jobs import Job, Paths
    from lifelearn.tracking import RunContext

    with output_to(smk.log[0] if smk.log else None):
        params = smk.params.job
        ctx = RunContext.for_job(smk.config["profile"], params["data_version"])
        job = Job.from_params(params, ctx, smk.threads, smk.config.get("progress_bar", False))
        return study(job.study).run(job, Paths.from_snakemake(smk))
