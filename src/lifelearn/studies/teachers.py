"""Study `teachers`: pretraining, one job per teacher running all its seeds
(train/runner.py); later studies load a teacher by name, seed k for their seed k.

METHODS maps `teachers.<name>.method` to a builder (model, dataset, teacher config) ->
LightningModule: `natural` (cross-entropy), `pgd_at` (PGD adversarial training with the
teacher's `attack`) or `trades` (TRADES with that attack and `beta`, default 6: the
reference's CIFAR-10 value; MTARD's reference robust teacher is a TRADES model). An
optional `eval_attack` adds test-set clean / PGD / weighted robust accuracy to the metrics,
and `autoattack` (with an `eval_attack`) AutoAttack's. With `seed_batched: true` a natural
teacher's seeds train as one batched model (train/seed_batched.py).
"""
from __future__ import annotations

from lifelearn.jobs import COMMON_CODE, LONG_CHAIN_PRIORITY, MODEL_EVALUATION, JobSpec, Layout

STUDY, STAGE = "teachers", "pretrain"
CODE = ("studies/teachers.py", "distill/trades.py", "train", "models", *MODEL_EVALUATION, "evaluate/autoattack.py",
        "data", *COMMON_CODE)


def _natural(model, ds, teacher):
    from lifelearn.train.module import ClassifierModule

    return ClassifierModule(model, teacher["train"])


def _pgd_at(model, ds, teacher):
    from lifelearn.train.adversarial import PGDATModule

    return PGDATModule(model, teacher["train"], teacher["attack"])


def _trades(model, ds, teacher):
    from lifelearn.distill.trades import TRADESModule

    return TRADESModule(model, teacher["train"], teacher["attack"], teacher.get("beta", 6.0))


METHODS = {"natural": _natural, "pgd_at": _pgd_at, "trades": _trades}


def jobs(config: dict, layout: Layout) -> list[JobSpec]:
    from lifelearn.studies import check_names

    teachers = config.get(STUDY) or {}
    for name, teacher in teachers.items():
        check_names([teacher["method"]], METHODS, f"teachers.{name}.method")
    return [JobSpec(STUDY, STAGE, name, f"pretrain_{name}", spec=teacher, seeds=teacher["seeds"],
                    outputs=layout.trained_model_outputs(STUDY, name, teacher["seeds"]), code=CODE,
                    datasets=(teacher["dataset"],), trainer=True, priority=LONG_CHAIN_PRIORITY)
            for name, teacher in teachers.items()]


def robustness_evaluator(attack: dict, seed: int, autoattack: dict | None = None):
    """run_seed's `evaluate` hook: clean / PGD / weighted robust accuracy on the evaluated
    split (test; val for a tuning candidate) and, with an `autoattack` section, AutoAttack's
    robust accuracy on its first `samples` points (evaluate.autoattack): on test, and on val
    only with `autoattack.tuning: true` (a candidate's selection then can use it)."""
    def evaluate(module, datamodule, ds, split):
        from lifelearn.evaluate.robustness import robustness_metrics

        x, y = datamodule.tensors[split]
        out = robustness_metrics(module.model, x, y, attack, seed=seed, prefix=split)
        if autoattack and (split == "test" or autoattack.get("tuning", False)):
            from lifelearn.evaluate.autoattack import autoattack_metrics

            out.update(autoattack_metrics(module.model, x, y, autoattack, seed=seed, prefix=split))
        return out
    return evaluate


def run(job, paths) -> list:
    """Train the teacher `job.name` once per seed; with `seed_batched` (natural training only,
    the schema says so) all its seeds as one batched model (train.runner.run_seeds_batched)."""
    from lifelearn.train.runner import RunLabel, run_seed, run_seeds_batched, seed_outputs

    teacher = job.spec
    label = RunLabel(STUDY, STAGE, job.name, teacher["method"], teacher)
    data_dir, outs = paths.input("data")[0].parent, seed_outputs(paths)
    evaluators = [robustness_evaluator(teacher["eval_attack"], seed, teacher.get("autoattack"))
                  if "eval_attack" in teacher else None for seed in job.seeds]
    if teacher.get("seed_batched", False):
        return run_seeds_batched(label, job.seeds, data_dir, teacher["model"], teacher["train"], outs, job, evaluators)
    build = lambda model, ds: METHODS[teacher["method"]](model, ds, teacher)  # noqa: E731
    return [run_seed(label, seed, data_dir, teacher["model"], teacher["train"], build, out, job, evaluate=evaluate)
            for seed, out, evaluate in zip(job.seeds, outs, evaluators)]
