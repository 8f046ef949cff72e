# Dataset distillation by trajectory matching (PAPERS.md section 4).
#   dd_experts_<set>:   N experts of one expert set (plain / smooth), a trajectory file each
#   dd_distill_<m>:     method m's synthetic sets for every IPC and seed (`random`: real subset)
#   dd_evaluate_<m>:    K fresh networks per synthetic set, trained on it alone
# params carry exactly what each job reads: changing a distillation switch reruns that
# method's distillation, its evaluation and the report; changing an expert set's option
# reruns those experts and every method matching them.
DD = config["dataset_distillation"]
DD_ROOT = f"{RESULTS}/dataset_distillation"
DD_CKPT = f"{CHECKPOINTS}/dataset_distillation"
DD_SEEDS = config["seeds"]
DD_IPCS = [c["ipc"] for c in DD["ipc"]]
DD_METHODS = ["random", *DD["methods"]]
DD_CODE = code("distill/dataset_distillation.py", "distill/dataset_distillation_stages.py", "models",
               "data", "tracking.py", "io.py")


def dd_expert_files(expert_set):
    return [f"{DD_CKPT}/experts/{expert_set}/expert{i}.pt" for i in range(DD["experts"]["num"])]


def dd_synthetic_dir(method, ipc, seed):
    return f"{SYNTHETIC_ROOT}/{method}_ipc{ipc}/seed{seed}"


def dd_synthetic_files(method):
    return [f"{dd_synthetic_dir(method, ipc, seed)}/{f}" for ipc in DD_IPCS for seed in DD_SEEDS
            for f in DATASET_FILES]


def dd_seed_files(method, filename):
    return [f"{DD_ROOT}/{method}_ipc{ipc}/seed{seed}/{filename}" for ipc in DD_IPCS for seed in DD_SEEDS]


def dd_shared(method):
    """What a distillation reads besides its method section; the random subset needs only
    the IPC values and the step size it is trained with (the experts' learning rate)."""
    shared = {"dataset": DD["dataset"], "model": DD["model"], "expert_lr": DD["experts"]["train"]["lr"]}
    if method == "random":
        return shared | {"ipc": [{"ipc": ipc} for ipc in DD_IPCS]}
    return shared | {"ipc": DD["ipc"], "distill": DD["distill"]}


for _set, _options in DD["experts"]["sets"].items():

    rule:
        name:
            f"dd_experts_{_set}"
        input:
            data=dataset_files(DD["dataset"]),
            code=DD_CODE,
        output:
            experts=dd_expert_files(_set),
            summary=f"{DD_ROOT}/experts/{_set}/summary.json",
        params:
            expert_set=_set,
            options=_options,
            experts={k: v for k, v in DD["experts"].items() if k != "sets"},
            model=DD["model"],
            dataset=DD["dataset"],
            data_version=config["_provenance"]["data_version"],
        threads: config["threads"]
        priority: LONG_CHAIN_PRIORITY
        resources:
            **TRAINING_RESOURCES,
        script:
            "../scripts/dd_experts.py"


for _method in DD_METHODS:
    _cfg = DD["methods"].get(_method)

    rule:
        name:
            f"dd_distill_{_method}"
        input:
            data=dataset_files(DD["dataset"]),
            experts=[] if _cfg is None else dd_expert_files(_cfg["experts"]),
            code=DD_CODE,
        output:
            synthetic=dd_synthetic_files(_method),
            loss=dd_seed_files(_method, "loss.csv"),
        params:
            method=_method,
            method_cfg=_cfg,
            shared=dd_shared(_method),
            seeds=DD_SEEDS,
            data_version=config["_provenance"]["data_version"],
        threads: config["threads"]
        priority: LONG_CHAIN_PRIORITY
        resources:
            **TRAINING_RESOURCES,
        script:
            "../scripts/dd_distill.py"

    rule:
        name:
            f"dd_evaluate_{_method}"
        input:
            synthetic=dd_synthetic_files(_method),
            code=DD_CODE + code("train", *MODEL_EVALUATION),
        output:
            metrics=dd_seed_files(_method, "metrics.json"),
            history=dd_seed_files(_method, "history.csv"),
        params:
            method=_method,
            evaluation=DD["evaluation"],
            model=DD["model"],
            ipcs=DD_IPCS,
            seeds=DD_SEEDS,
            trainer=without_cosmetics(config["trainer"]),
        threads: config["threads"]
        resources:
            **TRAINING_RESOURCES,
        script:
            "../scripts/dd_evaluate.py"


for _method in DD_METHODS:
    REPORT_INPUTS["metrics"] += dd_seed_files(_method, "metrics.json")
    REPORT_INPUTS["history"] += dd_seed_files(_method, "history.csv")
    REPORT_INPUTS["extra"] += dd_seed_files(_method, "loss.csv") + dd_synthetic_files(_method)
REPORT_INPUTS["extra"] += [f"{DD_ROOT}/experts/{s}/summary.json" for s in DD["experts"]["sets"]]
