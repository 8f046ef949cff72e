# Datasets: embedded ones are generated offline; downloaded ones are fetched from
# their official URLs and verified by checksum (pooch) before parsing.


rule prepare_data:
    input:
        code("data", "io.py"),
    output:
        [f"data/{{dataset}}/{f}" for f in DATASET_FILES],
    log:
        f"{LOGS}/prepare_data/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/prepare_data/{{dataset}}.tsv"
    wildcard_constraints:
        dataset="[a-z0-9_]+",
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
