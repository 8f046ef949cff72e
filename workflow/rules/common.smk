# Shared names and the one rule shape of every study job: each study module
# (src/lifelearn/studies/<study>.py) plans its jobs from the config (`jobs(config, layout)`),
# and `study_rule` turns each plan into a rule with the same inputs, params, threads,
# resources, log and glue script; only the plan differs between studies.
from pathlib import Path

from lifelearn.data.arrays import DATASET_FILES
from lifelearn.data.registry import DATASETS
from lifelearn.jobs import Layout
from lifelearn.studies import study

PROFILE = config["profile"]
LAYOUT = Layout(PROFILE)
RESULTS = LAYOUT.results
REPORT_DIR = config["report"]["dir"]
REPORT_README = f"{REPORT_DIR}/README.md"
LOGS = f"logs/{PROFILE}"
BENCHMARKS = f"{LOGS}/benchmarks"  # Snakemake's per-job wall time, CPU time, max RSS (benchmarks/pipeline_cost.py)

EMBEDDED_DATASETS = sorted(
    name for name, spec in DATASETS.items() if spec.source is None
)
DATA_VERSION = committed_data_version("data.dvc")


def dataset_files(name):
    """The files of one prepared dataset; DVC-managed, hence ancient() for consumers
    (DVC does not keep mtimes on pull/checkout)."""
    return [ancient(f"data/{name}/{f}") for f in DATASET_FILES]


def code(*parts):
    """Source files of src/lifelearn/<part> (a package directory or a module)."""
    files = []
    for part in parts:
        path = Path("src/lifelearn") / part
        files += (
            sorted(str(p) for p in path.rglob("*.py")) if path.is_dir() else [str(path)]
        )
    return files


# What each study contributes to the report and to `rule all` (metrics.json / history.csv
# per job and seed, plus any extra files its report section reads); report.smk consumes them.
REPORT_INPUTS = {"metrics": [], "history": [], "extra": []}
RULE_STUDIES = {}  # rule name -> its study, for the cost table (report.smk)
RULE_STAGES = {}  # rule name -> <study>/<step>, the cost table's stages
USED_DATASETS = set()  # every dataset a planned job reads (data.smk checks them)
TRAINING_RESOURCES = {k: config["resources"][k] for k in ("gpu", "mem_mb", "runtime")}


def study_rule(job):
    """One Snakemake rule for one planned job (lifelearn.jobs.JobSpec)."""

    rule:
        name:
            job.rule
        input:
            **job.inputs,
            data=[f for name in job.datasets for f in dataset_files(name)],
            code=code(*job.code),
        output:
            **job.outputs,
        log:
            f"{LOGS}/{job.rule}.log",
        benchmark:
            f"{BENCHMARKS}/{job.rule}.tsv"
        priority: job.priority
        threads: config["threads"] if job.training else 1
        resources:
            **(TRAINING_RESOURCES if job.training else {}),
        params:
            job=job.params(config, DATA_VERSION),
        script:
            "../scripts/run_study.py"

    for key, files in job.report_inputs().items():
        REPORT_INPUTS[key] += files
    RULE_STUDIES[job.rule] = job.study
    RULE_STAGES[job.rule] = f"{job.study}/{job.step}"
    USED_DATASETS.update(job.datasets)


def study_rules(name):
    """The rules of study `name`, one per job its module plans."""
    for job in study(name).jobs(config, LAYOUT):
        study_rule(job)
