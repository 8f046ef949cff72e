# TGeo-KD study: one job per fusion-ratio method (ce, kd, anl, ada, wls, tgeo), all seeds
# in one process. params carry exactly that method's config plus what the methods share
# (dataset, teacher, student, train, seeds), so changing one method's hyper-parameter
# reruns that method's job and the report only.

_TGEO = config["tgeo_kd"]
_TGEO_SEEDS = _TGEO.get("seeds", config["seeds"])
_TGEO_SHARED = {k: _TGEO[k] for k in ("dataset", "teacher", "student", "train")} | {"seeds": _TGEO_SEEDS}

for _method, _method_cfg in _TGEO["methods"].items():

    rule:
        name:
            f"tgeo_kd_{_method}"
        input:
            data=dataset_files(_TGEO["dataset"]),
            teachers=teacher_checkpoints(_TGEO["teacher"], _TGEO_SEEDS, "tgeo_kd.seeds"),
            code=code("distill/kd.py", "distill/reweight.py", "distill/tgeo.py", "distill/tgeo_study.py",
                      "train", "models", *MODEL_EVALUATION, "data", "tracking.py", "io.py"),
        output:
            checkpoints=[f"{CHECKPOINTS}/tgeo_kd/{_method}/seed{s}.pt" for s in _TGEO_SEEDS],
            metrics=seed_files("tgeo_kd", _method, _TGEO_SEEDS, "metrics.json"),
            history=seed_files("tgeo_kd", _method, _TGEO_SEEDS, "history.csv"),
        params:
            method=_method,
            section=_TGEO_SHARED | {"method_cfg": _method_cfg},
            trainer=without_cosmetics(config["trainer"]),
            data_version=config["_provenance"]["data_version"],
        threads: config["threads"]
        resources:
            **TRAINING_RESOURCES,
        script:
            "../scripts/tgeo_kd.py"

    REPORT_INPUTS["metrics"] += seed_files("tgeo_kd", _method, _TGEO_SEEDS, "metrics.json")
    REPORT_INPUTS["history"] += seed_files("tgeo_kd", _method, _TGEO_SEEDS, "history.csv")
