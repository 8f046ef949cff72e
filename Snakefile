# lifelearn: download -> pretrain teachers -> (distil -> continual) -> evaluate -> report.
# `snakemake --cores all` runs the default profile; `--config profile=smoke|paper`.
# Config: config/config.yaml (global keys) + config/studies/<study>.yaml (one per study);
# each study has its rules in workflow/rules/<study>.smk and its code in
# src/lifelearn/studies/<study>.py.
import sys
import time

from snakemake.utils import min_version

from lifelearn import warm

from lifelearn.config import (
    resolve_profile,
    study_config_files,
    study_names,
    validate_config,
)
from lifelearn.data.version import recorded_md5
from lifelearn.rerun import DOWNSTREAM_SKIPPED, prepared_since
from lifelearn.tracking import default_tracking_uri, ensure_store

min_version("9.0")

# The front page of `snakemake --report` (figures per study, the pipeline's cost).


report: "workflow/report/workflow.rst"


configfile: "config/config.yaml"


for _study_file in study_config_files("config"):

    configfile: _study_file


_resolved = resolve_profile(config, study_names("config"))
config.clear()
config.update(_resolved)
validate_config(config, "config")


def committed_data_version(dvc_file):
    """md5 of data/ as recorded in data.dvc ('none' when it is absent)."""
    return recorded_md5(dvc_file) or "none"


include: "workflow/rules/common.smk"


_STARTED = time.time()


_WARM = []  # the fork server of this run's study jobs (lifelearn.warm), when started


onstart:
    # Create the MLflow store once, before jobs write to it in parallel.
    ensure_store(default_tracking_uri("."))
    if config.get("warm_jobs", True):
        _WARM[:] = warm.start()


onsuccess:
    warm.stop(*(_WARM or [None, None]))
    # Snakemake issue #4166: after a data rerun, the next invocation plans the rest.
    if _prepared := prepared_since(LOGS, _STARTED):
        print(
            DOWNSTREAM_SKIPPED.format(names=", ".join(_prepared)), file=sys.stderr
        )


onerror:
    warm.stop(*(_WARM or [None, None]))


include: "workflow/rules/data.smk"


for _study in config["studies"]:

    include: f"workflow/rules/{_study}.smk"


include: "workflow/rules/report.smk"  # last: consumes REPORT_INPUTS


check_data()  # after every study's rules: checks the datasets their jobs read


rule prepared_data:
    """The data stage alone: every dataset a job reads, and the data version. `make run`
    runs it before the pipeline, so that a data rerun cannot hide the jobs below it whose
    code or params changed (Snakemake issue #4166)."""
    input:
        [f"data/{name}/{f}" for name in sorted(USED_DATASETS) for f in DATASET_FILES],
        rules.data_version.output,


rule all:
    default_target: True
    # The results themselves, not only the report: the default report is committed,
    # so a fresh clone must still see its results as missing and run everything.
    input:
        REPORT_README,
        rules.pipeline_cost.output,
        rules.data_version.output,
        REPORT_INPUTS["metrics"],
