# Teacher pretraining: one job per teacher (all its seeds in one process).
# params carry exactly the teacher's config section, so changing one teacher's
# hyper-parameter reruns that teacher's job and what depends on it. Data inputs are
# ancient() (DVC does not keep mtimes), so the data version recorded in data.dvc is a
# param instead: `dvc add data` after a data change reruns training.


for _name, _teacher in config["teachers"].items():

    rule:
        name:
            f"pretrain_{_name}"
        input:
            data=dataset_files(_teacher["dataset"]),
            code=code("train", "models", *MODEL_EVALUATION, "data", "tracking.py", "io.py"),
        output:
            checkpoints=teacher_checkpoints(_name, _teacher["seeds"]),
            metrics=seed_files("teachers", _name, _teacher["seeds"], "metrics.json"),
            history=seed_files("teachers", _name, _teacher["seeds"], "history.csv"),
        params:
            name=_name,
            teacher=_teacher,
            trainer=without_cosmetics(config["trainer"]),
            data_version=config["_provenance"]["data_version"],
        threads: config["threads"]
        priority: LONG_CHAIN_PRIORITY
        resources:
            **TRAINING_RESOURCES,
        script:
            "../scripts/pretrain.py"


for _name, _teacher in config["teachers"].items():
    REPORT_INPUTS["metrics"] += seed_files("teachers", _name, _teacher["seeds"], "metrics.json")
    REPORT_INPUTS["history"] += seed_files("teachers", _name, _teacher["seeds"], "history.csv")
