# MTARD study (PAPERS.md section 2): one job per student method, all seeds in one
# process. params = the study's shared settings + exactly that method's section, so
# changing one method's hyper-parameters reruns that method's job and the report only.
# Teachers come in as checkpoints (student seed k <- teacher seed k).

MTARD = config["mtard"]
# Which teachers each student method loads (mirrors distill.robust_students.TEACHER_ROLES).
MTARD_TEACHER_ROLES = {"natural": [], "pgd_at": [], "ard": ["robust"], "mtard": ["clean", "robust"]}


def mtard_spec(name):
    """The resolved settings one student job depends on."""
    shared = {k: v for k, v in MTARD.items() if k != "methods"}
    return {**shared, "method": MTARD["methods"][name]}


for _name, _method in MTARD["methods"].items():

    rule:
        name:
            f"mtard_{_name}"
        input:
            data=dataset_files(MTARD["dataset"]),
            code=code("distill/kd.py", "distill/ard.py", "distill/mtard.py", "distill/robust_students.py",
                      "train", "models", *MODEL_EVALUATION, "data", "tracking.py", "io.py"),
            **{role: teacher_checkpoints(MTARD["teachers"][role], MTARD["seeds"], "mtard.seeds")
               for role in MTARD_TEACHER_ROLES[_method["method"]]},
        output:
            checkpoints=[f"{CHECKPOINTS}/mtard/{_name}/seed{s}.pt" for s in MTARD["seeds"]],
            metrics=seed_files("mtard", _name, MTARD["seeds"], "metrics.json"),
            history=seed_files("mtard", _name, MTARD["seeds"], "history.csv"),
        params:
            name=_name,
            spec=mtard_spec(_name),
            roles=MTARD_TEACHER_ROLES[_method["method"]],
            trainer=without_cosmetics(config["trainer"]),
            data_version=config["_provenance"]["data_version"],
        threads: config["threads"]
        priority: LONG_CHAIN_PRIORITY
        resources:
            **TRAINING_RESOURCES,
        script:
            "../scripts/mtard.py"

    REPORT_INPUTS["metrics"] += seed_files("mtard", _name, MTARD["seeds"], "metrics.json")
    REPORT_INPUTS["history"] += seed_files("mtard", _name, MTARD["seeds"], "history.csv")
