"""One module per study (teachers, mtard, tgeo_kd, dataset_distillation, continual), each
with the same three names, so the rules, the schema check, the report and the glue read
every study the same way:

- `METHODS`: the study's registry, name -> what the method needs (builder, inputs, label);
  the one list of its method names.
- `jobs(config, layout) -> list[JobSpec]`: the study's Snakemake jobs, planned from the
  resolved config (light imports: the Snakefile calls it while parsing).
- `run(job, paths) -> list[RunRecord]`: the one entry point of every job of the study
  (`job.step` says which kind; `tune` for a tuning candidate, lifelearn.tuning), called
  by workflow/scripts/run_study.py through `run_job`,
  which nests the job's MLflow runs under a parent per configuration with the seeds'
  aggregates (a study does nothing for that but return its records).

Method code lives in distill/, continual/ and train/; a study composes it.
"""
from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from lifelearn.phases import timed


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


def parents_state(job, paths) -> Path:
    """Where a running job keeps the ids of its MLflow parent runs (tracking.ParentRuns):
    beside its outputs, two levels above the first (outside any seed's own directory, e.g.
    a synthetic set's, read whole), keyed by the job's plan, outputs and tracking store."""
    from lifelearn.io import config_hash

    first = next(iter(paths.outputs.values()))[0]
    key = config_hash(str(first), job.study, job.step, job.name, job.spec, job.seeds, job.ctx.tracking_uri)
    return first.parent.parent / f".mlflow-parents-{key}.json"


@timed("data")
def verify_inputs(paths) -> None:
    """Check every dataset a job reads (the directory of each input meta.json: data/<name>/, a
    synthetic set) against its recorded md5s (lifelearn.data.verify_dataset) before the job
    starts anything: a job reading several (an evaluation of synthetic sets, one per IPC and
    seed) fails on a damaged one before writing the outputs or MLflow runs of the others.
    load_dataset checks again (milliseconds at embedded scale): the guard of every other reader."""
    from lifelearn.data import verify_dataset
    from lifelearn.data.arrays import META

    for root in sorted({p.parent for files in paths.inputs.values() for p in files if p.name == META}):
        verify_dataset(root)


def run_job(job, paths) -> list:
    """`run(job, paths)` of the job's study, its datasets checked first (verify_inputs), with
    its seed runs nested under one MLflow parent run per configuration, each parent getting
    the mean, std and 95% interval over seeds of its records' metrics (as does the parent of the seed runs a step adds metrics to, such
    as the continual evaluation's). A tuning sweep's `select` step is the same for every
    study (lifelearn.tuning.run_select); a `sweep` job runs its tuning candidates one after
    another (lifelearn.tuning.sweep_candidates)."""
    from lifelearn import tuning

    verify_inputs(paths)
    if job.step == "select":
        return tuning.run_select(job, paths)
    if job.step == tuning.SWEEP:  # its candidates one after another, each as a job of its own
        return [r for candidate in tuning.sweep_candidates(job, paths) for r in run_configuration(*candidate)]
    return run_configuration(job, paths)


def run_configuration(job, paths) -> list:
    """One configuration's `run(job, paths)`: its seed runs under one MLflow parent run,
    which gets the seeds' aggregates."""
    from lifelearn.tracking import log_seed_aggregates, parent_runs

    with parent_runs(job.ctx, parents_state(job, paths), job.name) as ctx:
        records = study(job.study).run(replace(job, ctx=ctx), paths)
        log_seed_aggregates(ctx.tracking_uri, records)
    return records


def system_metrics_interval(config: dict) -> float | None:
    """Seconds between system-metrics samples of training runs (config key `tracking`); None: off."""
    tracking = config.get("tracking", {})
    return float(tracking.get("system_metrics_interval", 10)) if tracking.get("system_metrics", False) else None


def run_snakemake_job(smk) -> list:
    """The body of workflow/scripts/run_study.py: glibc's malloc thresholds raised
    (lifelearn.allocator), the job's output into its log file, its MLflow context (with the
    cosmetic settings: not in any job's params), then run_job, its wall time split into
    phases beside its benchmark file (lifelearn.phases): start-up is the time until here."""
    from lifelearn.io import output_to
    from lifelearn.jobs import Job, Paths
    from lifelearn.phases import job_phases, phases_path
    from lifelearn.tracking import RunContext

    from lifelearn import progress
    from lifelearn.allocator import keep_freed_memory

    keep_freed_memory()  # large temporary tensors reuse the heap's pages (lifelearn.allocator)
    progress.configure(bar=smk.config.get("progress_bar", False))  # a log file gets lines either way
    with job_phases(phases_path(smk.config["profile"], smk.rule), smk.rule), \
            output_to(smk.log[0] if smk.log else None):
        params = smk.params.job
        ctx = RunContext.for_job(smk.config["profile"], params["data_version"], rule=smk.rule,
                                 system_metrics_interval=system_metrics_interval(smk.config))
        job = Job.from_params(params, ctx, smk.threads, smk.config.get("progress_bar", False))
        return run_job(job, Paths.from_snakemake(smk))
