"""Study `toy`: the worked example of README "Adding a study" (and of its test). Two
numpy classifiers on a dataset's train split, scored on its test split: `majority`
(the most frequent training class) and `nearest_mean` (the nearest class mean). Seed k
trains on a bootstrap sample of the training split drawn with seed k.
"""
from __future__ import annotations

from lifelearn.jobs import COMMON_CODE, JobSpec, Layout

STUDY = STAGE = "toy"
CODE = ("studies/toy.py", "data", *COMMON_CODE)


def _majority(x, y, x_test):
    import numpy as np

    return np.full(len(x_test), np.bincount(y).argmax())


def _nearest_mean(x, y, x_test):
    import numpy as np

    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    return classes[((x_test[:, None] - means[None]) ** 2).sum(-1).argmin(1)]


METHODS = {"majority": _majority, "nearest_mean": _nearest_mean}


def jobs(config: dict, layout: Layout) -> list[JobSpec]:
    from lifelearn.studies import check_names

    section = config[STUDY]
    check_names(section["methods"], METHODS, "toy.methods")
    return [JobSpec(STUDY, STAGE, name, f"toy_{name}", spec={"dataset": section["dataset"]}, seeds=section["seeds"],
                    outputs={"metrics": layout.seed_files(STUDY, name, section["seeds"], "metrics.json")},
                    code=CODE, datasets=(section["dataset"],), training=False)
            for name in section["methods"]]


def run(job, paths) -> list:
    import numpy as np

    from lifelearn.data import load_dataset
    from lifelearn.jobs import RunRecord
    from lifelearn.tracking import tracked_run

    ds = load_dataset(paths.input("data")[0].parent)
    x, x_test = ds.x_train.reshape(len(ds.x_train), -1), ds.x_test.reshape(len(ds.x_test), -1)
    records = []
    for seed, path in zip(job.seeds, paths.output("metrics")):
        idx = np.random.default_rng(seed).integers(0, len(x), len(x))
        with tracked_run(job.ctx, STUDY, f"{job.name}/seed{seed}", {"stage": STAGE, "seed": seed}, job.spec) as run:
            acc = float((METHODS[job.name](x[idx], ds.y_train[idx], x_test) == ds.y_test).mean())
            record = RunRecord(STUDY, STAGE, job.name, job.name, seed, ds.name, "numpy", run.run_id,
                               job.ctx.git_commit, {"test_acc": acc})
            record.write(path)
            run.log_metrics(record.metrics)
        records.append(record)
    return records
