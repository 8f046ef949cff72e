"""Study `tgeo_kd` (Hu et al. ICLR 2024; PAPERS.md sections 1 and 3): a student distils
a pretrained teacher with fusion-ratio rules sharing one loss,
alpha_i * tau^2 * KL + (1 - alpha_i) * CE. One job per method runs all seeds
(train/runner.py); student seed k distils from the teacher's seed k.

METHODS, by config name (`tgeo_kd.methods.<name>`; the order is the report's), each a
builder (model, teacher, dataset, train config, method config, seed) -> LightningModule
and a label: ce (cross-entropy only), kd (vanilla KD, fixed alpha and tau), anl / ada /
wls (the re-weighting baselines, distill/reweight.py) and tgeo (TGeo-KD, distill/tgeo.py).
After training each seed records, on the TEST split (held out: the teacher is almost
never wrong on its training data), the mean alpha over samples the teacher gets right and
over those it gets wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lifelearn.jobs import COMMON_CODE, MODEL_EVALUATION, JobSpec, Layout

STUDY = STAGE = "tgeo_kd"
CODE = ("studies/tgeo_kd.py", "distill/kd.py", "distill/reweight.py", "distill/tgeo.py",
        "train", "models", *MODEL_EVALUATION, "data", *COMMON_CODE)


@dataclass(frozen=True)
class Method:
    build: Callable
    label: str


def _rule(rule: str) -> Callable:
    def build(model, teacher, ds, train_cfg, cfg, seed):
        from lifelearn.distill.reweight import SampleWiseKDModule

        return SampleWiseKDModule(model, teacher, train_cfg, rule, **cfg)
    return build


def _tgeo(model, teacher, ds, train_cfg, cfg, seed):
    from lifelearn.distill.tgeo import TGeoKDModule

    return TGeoKDModule(model, teacher, train_cfg, num_classes=ds.num_classes, seed=seed, **cfg)


METHODS = {
    "ce": Method(_rule("ce"), "CE only"), "kd": Method(_rule("kd"), "vanilla KD"),
    "anl": Method(_rule("anl"), "ANL-KD"), "ada": Method(_rule("ada"), "ADA-KD"),
    "wls": Method(_rule("wls"), "WLS-KD"), "tgeo": Method(_tgeo, "TGeo-KD"),
}


def jobs(config: dict, layout: Layout) -> list[JobSpec]:
    """tgeo_kd_<method> per method entry, after its tuning jobs when it has a `tune` block
    (lifelearn.tuning: candidates scored on val, then the selection)."""
    from lifelearn import tuning
    from lifelearn.studies import check_names

    section = config[STUDY]
    check_names(section["methods"], METHODS, "tgeo_kd.methods")
    seeds = section.get("seeds", config["seeds"])
    shared = {k: section[k] for k in ("dataset", "teacher", "student", "train")}
    check_tuning(config, section)

    def make_job(name):
        def make(spec, job_seeds, out_name, step, rule):
            teachers = layout.teacher_checkpoints(config, section["teacher"], job_seeds,
                                                  f"tgeo_kd.methods.{name}.tune.seeds" if step == "tune" else "tgeo_kd.seeds")
            return JobSpec(STUDY, step, name, rule, spec=spec | {"seeds": job_seeds}, seeds=job_seeds,
                           outputs=layout.trained_model_outputs(STUDY, out_name, job_seeds), code=(*CODE, *tuning.CODE),
                           datasets=(section["dataset"],), inputs={"teachers": teachers}, trainer=True)
        return make

    return [job for method, cfg in section["methods"].items()
            for job in tuning.plan(f"tgeo_kd_{method}", method, shared | {"method_cfg": cfg}, ("method_cfg",), seeds,
                                   f"tgeo_kd.methods.{method}", make_job(method), f"{layout.results}/{STUDY}/tuning",
                                   tuning.candidates_per_job(config))]


def check_tuning(config: dict, section: dict) -> None:
    """The two methods of every claim that are both tuned spend the same budget."""
    from lifelearn import tuning

    tunes = {m: cfg["tune"] for m, cfg in section["methods"].items() if cfg and cfg.get("tune")}
    tuning.check_budgets(config.get("claims", []), tunes,
                         {m: section["train"]["epochs"] for m in tunes}, STUDY)


def held_out_alpha(module, datamodule, ds, split) -> dict:
    from lifelearn.distill.reweight import teacher_correctness_alpha

    x, y = datamodule.tensors[split]
    return teacher_correctness_alpha(module, x, y, prefix=split)


def run(job, paths) -> list:
    """Train method `job.name` once per seed, distilling the teacher's checkpoint of that
    seed: a tuning candidate (step `tune`) scored on val, or the final runs (step `train`)
    with the values its selection chose, on test."""
    from lifelearn import tuning
    from lifelearn.models.checkpoint import load_model
    from lifelearn.train.runner import RunLabel, run_seed, seed_outputs

    spec, selection = tuning.selected_spec(job.spec, ("method_cfg",), paths)
    build_method = METHODS[job.name].build
    label = RunLabel(STUDY, STAGE, tuning.run_name(job), job.name, spec | tuning.tuned_params(selection))
    records = []
    for seed, teacher_path, out in zip(job.seeds, paths.input("teachers"), seed_outputs(paths)):
        teacher = load_model(teacher_path)
        build = lambda model, ds: build_method(model, teacher, ds, spec["train"], spec["method_cfg"], seed)  # noqa: E731
        records.append(run_seed(label, seed, paths.input("data")[0].parent, spec["student"], spec["train"], build,
                                out, job, evaluate=held_out_alpha, split=tuning.split(job)))
    return records
