# Continual fine-tuning: one job per configuration in config["continual"]["runs"] (all its
# seeds in one process). params carry exactly that run's resolved config (its setting +
# its strategies), so changing one strategy's hyper-parameter reruns that run's job, its
# evaluation and the report only.
# continual_eval_<run>: the metrics of PAPERS.md section 6 over the run's accuracy matrix
# and raw stream (evaluation.json per seed, summary.json over seeds), using the
# single-task-expert run of the same setting where the config has one.
from lifelearn.continual.configs import (check_synthetic_sets, expert_run, init_checkpoint_dir,
                                         resolved_runs, synthetic_sets)

CONTINUAL_FILES = ["metrics.json", "history.csv", "stream.csv", "accuracy_matrix.json"]
CONTINUAL_RUNS = resolved_runs(config)


def continual_files(name, filename):
    return seed_files("continual", name, CONTINUAL_RUNS[name]["seeds"], filename)


for _name, _run in CONTINUAL_RUNS.items():
    _init_dir = init_checkpoint_dir(_run, CHECKPOINTS)
    check_synthetic_sets(config, _name, _run)

    rule:
        name:
            f"continual_{_name}"
        input:
            data=dataset_files(_run["dataset"]),
            init=[f"{_init_dir}/seed{s}.pt" for s in _run["seeds"]] if _init_dir else [],
            synthetic=[f"{SYNTHETIC_ROOT}/{n}/seed{s}/{f}" for n in synthetic_sets(_run) for s in _run["seeds"]
                       for f in DATASET_FILES],
            code=code("continual", "models", "data/arrays.py", "tracking.py", "io.py", "config.py"),
        output:
            **{f.split(".")[0]: continual_files(_name, f) for f in CONTINUAL_FILES},
        params:
            name=_name,
            run=_run,
            synthetic_root=SYNTHETIC_ROOT,
            data_version=config["_provenance"]["data_version"],
        threads: config["threads"]
        resources:
            **TRAINING_RESOURCES,
        script:
            "../scripts/continual.py"

    _expert = expert_run(CONTINUAL_RUNS, _name)

    rule:
        name:
            f"continual_eval_{_name}"
        input:
            matrix=continual_files(_name, "accuracy_matrix.json"),
            stream=continual_files(_name, "stream.csv"),
            metrics=continual_files(_name, "metrics.json"),
            expert=[f"{RESULTS}/continual/{_expert}/seed{s}/stream.csv" for s in _run["seeds"]] if _expert else [],
            code=code("evaluate/continual_metrics.py", "evaluate/continual_stage.py", "stats.py", "io.py"),
        output:
            evaluation=continual_files(_name, "evaluation.json"),
            summary=f"{RESULTS}/continual/{_name}/summary.json",
        params:
            windows=config["evaluation"]["windows"],
        script:
            "../scripts/continual_eval.py"

    REPORT_INPUTS["metrics"] += continual_files(_name, "evaluation.json")
    REPORT_INPUTS["history"] += continual_files(_name, "history.csv")
    REPORT_INPUTS["extra"] += continual_files(_name, "stream.csv")
    REPORT_INPUTS["extra"] += continual_files(_name, "accuracy_matrix.json")
    REPORT_INPUTS["extra"] += [f"{RESULTS}/continual/{_name}/summary.json"]
