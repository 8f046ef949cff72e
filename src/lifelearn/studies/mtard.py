"""Study `mtard` (Zhao et al. 2022; PAPERS.md section 2): students of one architecture
trained by natural training, PGD-AT, TRADES, ARD and RSLAD (one robust teacher) and MTARD
(a clean and a robust teacher; with and without its entropy-based balance), one job per
method entry running all seeds; student seed k uses the teachers' seed k. Every student
is evaluated on the test set by clean accuracy, PGD-k accuracy and the weighted robust
accuracy (`evaluate.robustness`) and by AutoAttack's (`evaluate.autoattack`, with
`mtard.autoattack`).

METHODS maps `mtard.methods.<name>.method` to a `Method`: its builder
(model, spec, teachers) -> LightningModule and the teacher roles it loads
(`mtard.teachers.clean` / `.robust`); the rules read the roles from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lifelearn.jobs import COMMON_CODE, LONG_CHAIN_PRIORITY, MODEL_EVALUATION, JobSpec, Layout

STUDY = STAGE = "mtard"
CODE = ("studies/mtard.py", "studies/teachers.py", "distill/kd.py", "distill/ard.py", "distill/mtard.py",
        "distill/trades.py", "distill/rslad.py", "train", "models", *MODEL_EVALUATION, "evaluate/autoattack.py", "data",
        *COMMON_CODE)


@dataclass(frozen=True)
class Method:
    build: Callable
    teachers: tuple[str, ...] = ()


def _natural(model, spec, teachers):
    from lifelearn.train.module import ClassifierModule

    return ClassifierModule(model, spec["train"])


def _pgd_at(model, spec, teachers):
    from lifelearn.train.adversarial import PGDATModule

    return PGDATModule(model, spec["train"], spec["attack"])


def _ard(model, spec, teachers):
    from lifelearn.distill.ard import ARDModule

    m = spec["method"]
    return ARDModule(model, teachers["robust"], spec["train"], spec["attack"], m["alpha"], m["tau"])


def _trades(model, spec, teachers):
    from lifelearn.distill.trades import TRADESModule

    return TRADESModule(model, spec["train"], spec["attack"], spec["method"]["beta"])


def _rslad(model, spec, teachers):
    from lifelearn.distill.rslad import RSLADModule

    return RSLADModule(model, teachers["robust"], spec["train"], spec["attack"], spec["method"])


def _mtard(model, spec, teachers):
    from lifelearn.distill.mtard import MTARDModule

    return MTARDModule(model, teachers["clean"], teachers["robust"], spec["train"], spec["attack"], spec["method"])


METHODS = {"natural": Method(_natural), "pgd_at": Method(_pgd_at), "trades": Method(_trades),
           "ard": Method(_ard, ("robust",)), "rslad": Method(_rslad, ("robust",)),
           "mtard": Method(_mtard, ("clean", "robust"))}


def method_spec(section: dict, name: str) -> dict:
    """What one student job depends on: the study's shared settings + that method's entry."""
    return {**{k: v for k, v in section.items() if k != "methods"}, "method": section["methods"][name]}


def jobs(config: dict, layout: Layout) -> list[JobSpec]:
    """mtard_<name> per method entry, after its tuning jobs when it has a `tune` block
    (lifelearn.tuning: candidates scored on val, then the selection)."""
    from lifelearn import tuning
    from lifelearn.studies import check_names

    section = config[STUDY]
    out = []
    check_tuning(config, section)
    for name, entry in section["methods"].items():
        check_names([entry["method"]], METHODS, f"mtard.methods.{name}.method")
        roles = METHODS[entry["method"]].teachers

        def make_job(spec, seeds, out_name, step, rule, roles=roles, name=name):
            key = f"mtard.methods.{name}.tune.seeds" if step == "tune" else "mtard.seeds"
            teachers = {role: layout.teacher_checkpoints(config, section["teachers"][role], seeds, key) for role in roles}
            return JobSpec(STUDY, step, name, rule, spec=spec, seeds=seeds,
                           outputs=layout.trained_model_outputs(STUDY, out_name, seeds), code=(*CODE, *tuning.CODE),
                           datasets=(section["dataset"],), inputs=teachers, trainer=True, priority=LONG_CHAIN_PRIORITY)

        out += tuning.plan(f"mtard_{name}", name, method_spec(section, name), ("method",), section["seeds"],
                           f"mtard.methods.{name}", make_job, f"{layout.results}/{STUDY}/tuning",
                           tuning.candidates_per_job(config))
    return out


def check_tuning(config: dict, section: dict) -> None:
    """The two methods of every claim that are both tuned spend the same budget."""
    from lifelearn import tuning

    tunes = {m: e["tune"] for m, e in section["methods"].items() if e.get("tune")}
    tuning.check_budgets(config.get("claims", []), tunes, {m: section["train"]["epochs"] for m in tunes}, STUDY)


def run(job, paths) -> list:
    """Train student `job.name` once per seed against its teachers' checkpoints of that
    seed: a tuning candidate (step `tune`) scored on val, or the final runs with the values
    its selection chose, on test."""
    from lifelearn import tuning
    from lifelearn.models.checkpoint import load_model
    from lifelearn.studies.teachers import robustness_evaluator
    from lifelearn.train.runner import RunLabel, run_seed, seed_outputs

    spec, selection = tuning.selected_spec(job.spec, ("method",), paths)
    method = METHODS[spec["method"]["method"]]
    label = RunLabel(STUDY, STAGE, tuning.run_name(job), spec["method"]["method"], spec | tuning.tuned_params(selection))
    records = []
    for i, (seed, out) in enumerate(zip(job.seeds, seed_outputs(paths))):
        teachers = {role: load_model(paths.input(role)[i]) for role in method.teachers}
        build = lambda model, ds, teachers=teachers: method.build(model, spec, teachers)  # noqa: E731
        evaluate = robustness_evaluator(spec["eval_attack"], seed, spec.get("autoattack"))
        records.append(run_seed(label, seed, paths.input("data")[0].parent, spec["student"], spec["train"], build,
                                out, job, evaluate=evaluate, split=tuning.split(job)))
    return records
