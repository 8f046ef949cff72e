# Shared names and helpers of the rules: where outputs live, which source files
# each stage depends on (Snakemake's code trigger sees only the script).
import yaml
from pathlib import Path

PROFILE = config["profile"]
RESULTS = f"results/{PROFILE}"
CHECKPOINTS = f"checkpoints/{PROFILE}"
SYNTHETIC_ROOT = f"{CHECKPOINTS}/dataset_distillation/synthetic"  # <method>_ipc<n>/seed<k>/: dataset format
REPORT_DIR = config["report"]["dir"]
REPORT_README = f"{REPORT_DIR}/README.md"

EMBEDDED_DATASETS = ["digits", "mnist1d"]
DATASET_FILES = [f"{kind}_{split}.npy" for split in ("train", "val", "test") for kind in ("x", "y")] + ["meta.json"]


def dataset_files(name):
    """The files of one prepared dataset; DVC-managed, hence ancient() for consumers
    (DVC does not keep mtimes on pull/checkout)."""
    return [ancient(f"data/{name}/{f}") for f in DATASET_FILES]


# Jobs at the head of the longest chains (teachers -> MTARD -> continual from the student;
# experts -> distillation -> evaluation -> synthetic replay) start first: with 2 cores the
# many short jobs then fill the gaps instead of delaying the chains' end.
LONG_CHAIN_PRIORITY = 10

# what training jobs evaluate with; the continual metrics (evaluate/continual_*) are not in it
MODEL_EVALUATION = ["evaluate/__init__.py", "evaluate/classification.py", "evaluate/robustness.py"]


def code(*parts):
    """Source files of src/lifelearn/<part> (a package directory or a module)."""
    files = []
    for part in parts:
        path = Path("src/lifelearn") / part
        files += sorted(str(p) for p in path.rglob("*.py")) if path.is_dir() else [str(path)]
    return files


def committed_data_version(dvc_file):
    """md5 of data/ as recorded in data.dvc ('none' when it is absent)."""
    if not Path(dvc_file).exists():
        return "none"
    outs = yaml.safe_load(Path(dvc_file).read_text()).get("outs", [])
    return outs[0].get("md5", "none") if outs else "none"


def without_cosmetics(section, keys=("progress_bar",)):
    """A config section minus keys that do not change results (kept out of params)."""
    return {k: v for k, v in section.items() if k not in keys}


def seed_files(stage, name, seeds, filename, root=RESULTS):
    return [f"{root}/{stage}/{name}/seed{seed}/{filename}" for seed in seeds]


def teacher_checkpoints(name, seeds, key=None):
    """Checkpoints of a pretrained teacher (load with lifelearn.models.checkpoint.load_model);
    a later stage pairs its seed k with the teacher's seed k, so its seeds (config key
    `key`) must be among the teacher's."""
    if key is not None:
        trained = config["teachers"].get(name, {}).get("seeds", [])
        missing = sorted(set(seeds) - set(trained))
        if missing:
            raise ValueError(f"{key}: seeds {missing} have no checkpoint of teacher {name!r} "
                             f"(teachers.{name}.seeds: {trained})")
    return [f"{CHECKPOINTS}/teachers/{name}/seed{seed}.pt" for seed in seeds]


TRAINING_RESOURCES = dict(
    gpu=config["resources"]["gpu"],
    mem_mb=config["resources"]["mem_mb"],
    runtime=config["resources"]["runtime"],
)


# What each stage contributes to the report and to `rule all`: every stage's rule file
# extends these lists (metrics.json / history.csv per job and seed, plus any extra
# files its report section reads); report.smk is included last and consumes them.
REPORT_INPUTS = {"metrics": [], "history": [], "extra": []}
