# Datasets: embedded ones are generated offline; downloaded ones are fetched from
# their official URLs and verified by checksum (pooch) before parsing. Every load checks
# the files against the md5s meta.json records (lifelearn.data.verify_dataset); a damaged
# dataset, or embedded data that differs from data.dvc, is prepared again (check_data).
import sys

from lifelearn.data.prepare import dataset_options
from lifelearn.data.version import datasets_to_prepare_again, mark_checks

# <dataset>.txt: the check's verdict, an input of prepare_data (check_data below)
DATA_CHECKS = "logs/data_check"


rule prepare_data:
    input:
        code("data", "io.py"),
        check=f"{DATA_CHECKS}/{{dataset}}.txt",
    output:
        [f"data/{{dataset}}/{f}" for f in DATASET_FILES],
    log:
        f"{LOGS}/prepare_data/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/prepare_data/{{dataset}}.tsv"
    wildcard_constraints:
        dataset="[a-z0-9_]+",
    params:
        # what changes the bytes written (a mirror serves the same bytes: not a param)
        data=lambda wildcards: dataset_options(config, wildcards.dataset),
    script:
        "../scripts/prepare_data.py"


rule data_version:
    """Compare the regenerated data/ with the version data.dvc records (inputs not
    ancient: regenerated data is always re-checked)."""
    input:
        data=[f"data/{name}/{f}" for name in EMBEDDED_DATASETS for f in DATASET_FILES],
        dvc=[p for p in ["data.dvc"] if Path(p).exists()],
        code=code("data/version.py"),
    output:
        f"{RESULTS}/data_version.json",
    log:
        f"{LOGS}/data_version.log",
    benchmark:
        f"{BENCHMARKS}/data_version.tsv"
    script:
        "../scripts/data_version.py"


def check_data():
    """Check each dataset in data/ that a job reads (and every embedded one) while parsing
    (lifelearn.data.version.datasets_to_prepare_again: damaged, or embedded, differing from
    data.dvc and changed since the data check last saw it) and write the verdicts
    (mark_checks): a dataset to prepare again gets a check file newer than its files, so
    Snakemake plans its prepare_data job; training reads data as ancient(), so only the
    data check reruns below it. Only the main process checks (a cluster job's own
    `snakemake` reads the check files it left)."""
    if not workflow.is_main_process:
        return
    again = datasets_to_prepare_again(
        "data",
        USED_DATASETS,
        EMBEDDED_DATASETS,
        "data.dvc",
        rules.data_version.output[0],
    )
    for name, why in again.items():
        print(f"prepare_data will write data/{name}/ again: {why}", file=sys.stderr)
    mark_checks(DATA_CHECKS, sorted(DATASETS), again)
