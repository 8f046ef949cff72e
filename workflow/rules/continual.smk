# Continual fine-tuning: one job per configuration in config["continual"]["runs"] (all its
# seeds in one process). params carry exactly that run's resolved config (its setting +
# its strategies), so changing one strategy's hyper-parameter reruns that run's job and
# the report only.
from lifelearn.continual.configs import init_checkpoint_dir, resolved_runs

CONTINUAL_FILES = ["metrics.json", "history.csv", "stream.csv", "accuracy_matrix.json"]

for _name, _run in resolved_runs(config).items():
    _init_dir = init_checkpoint_dir(_run, CHECKPOINTS)

    rule:
        name:
            f"continual_{_name}"
        input:
            data=dataset_files(_run["dataset"]),
            init=[f"{_init_dir}/seed{s}.pt" for s in _run["seeds"]] if _init_dir else [],
            code=code("continual", "models", "data/arrays.py", "tracking.py", "io.py", "config.py"),
        output:
            **{f.split(".")[0]: seed_files("continual", _name, _run["seeds"], f) for f in CONTINUAL_FILES},
        params:
            name=_name,
            run=_run,
            data_version=config["_provenance"]["data_version"],
        threads: config["threads"]
        resources:
            **TRAINING_RESOURCES,
        script:
            "../scripts/continual.py"

    REPORT_INPUTS["metrics"] += seed_files("continual", _name, _run["seeds"], "metrics.json")
    REPORT_INPUTS["history"] += seed_files("continual", _name, _run["seeds"], "history.csv")
    REPORT_INPUTS["extra"] += seed_files("continual", _name, _run["seeds"], "stream.csv")
    REPORT_INPUTS["extra"] += seed_files("continual", _name, _run["seeds"], "accuracy_matrix.json")
