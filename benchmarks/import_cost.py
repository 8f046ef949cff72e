"""Import cost of each glue entry point: the seconds a job's process spends importing what
its code path imports (module level and the late imports of the functions it runs), and
which heavy packages that pulls, measured with `python -X importtime` in a fresh
interpreter per entry and repeat (issue 16, part 2).

    python benchmarks/import_cost.py [--repeat 3] [--src after=src --src before=/tmp/base/src]

Each entry is the import statements (and the few calls that import late, such as
lifelearn.stats.seed_summary, which loads the t quantile's package) of one kind of job,
read from its code path: the glue script, lifelearn.studies.run_snakemake_job/run_job, the
study's run function and lifelearn.tracking's MLflow calls. A lifelearn module a source tree
lacks is skipped (lifelearn.phases before it existed). `--src` names source trees to
measure side by side in one run (e.g. one exported with `git archive <commit> src`); the
seconds are the smallest over the repeats (the least disturbed by other load) of the sum
of the top-level imports' cumulative times; a heavy package's seconds are its cumulative
time where it was first imported. The figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pytorch_lightning", "lightning_fabric", "torch._dynamo", "torch._inductor", "mlflow", "pandas",
         "sklearn", "scipy.stats", "scipy.special", "matplotlib", "seaborn", "art", "kornia", "torchmetrics")
GLUE = ["lifelearn.studies", "lifelearn.io", "lifelearn.jobs", "lifelearn.phases", "lifelearn.tracking",
        "lifelearn.progress", "lifelearn.data"]
MLFLOW_RUN = ["mlflow", "mlflow.entities", "mlflow.utils.mlflow_tags", "mlflow.exceptions"]
SEED_SUMMARY = "lifelearn.stats.seed_summary([{'a': 1.0}, {'a': 2.0}])"  # every job's parent aggregates
ENTRIES = {
    # workflow/scripts/run_study.py -> studies.continual.run_train / train_seed
    "continual": {"imports": GLUE + ["lifelearn.studies.continual", "torch", "numpy", "pandas", "lifelearn.tuning",
                                     "lifelearn.continual.evaluation", "lifelearn.continual.scenarios",
                                     "lifelearn.continual.starts", "lifelearn.continual.strategies",
                                     "lifelearn.continual.template", *MLFLOW_RUN, "mlflow.data.meta_dataset",
                                     "mlflow.data.sources", "mlflow.system_metrics.system_metrics_monitor",
                                     "lifelearn.stats"],
                  "calls": [SEED_SUMMARY]},
    # run_study.py -> studies.continual.run_evaluate / evaluate_run
    "continual_evaluation": {"imports": GLUE + ["lifelearn.studies.continual", "numpy", "pandas",
                                                "lifelearn.evaluate.continual_metrics", "lifelearn.stats",
                                                *MLFLOW_RUN],
                             "calls": [SEED_SUMMARY]},
    # workflow/scripts/report.py -> report.writer.write_report (its sections, figures and claims)
    "report": {"imports": ["lifelearn.io", "lifelearn.phases", "lifelearn.report.writer", "lifelearn.tracking",
                           "lifelearn.report.claims", "lifelearn.report.figures", "lifelearn.report.sections.continual",
                           "lifelearn.report.sections.mtard", "lifelearn.report.sections.tgeo_kd",
                           "lifelearn.report.sections.teachers", "lifelearn.report.sections.dataset_distillation",
                           "lifelearn.evaluate.continual_metrics", *MLFLOW_RUN],
               "calls": [SEED_SUMMARY, "lifelearn.stats.min_detectable_effect(1.0, 5)"]},
    # run_study.py -> studies.teachers.run -> train.runner.run_seed (a Lightning study)
    "teachers": {"imports": GLUE + ["lifelearn.studies.teachers", "lifelearn.train.runner", "lifelearn.train.module",
                                    "lifelearn.evaluate.robustness", *MLFLOW_RUN,
                                    "mlflow.system_metrics.system_metrics_monitor", "lifelearn.stats"],
                 "calls": [SEED_SUMMARY]},
}


def entry_code(entry: dict) -> str:
    """The program a fresh interpreter runs for one entry."""
    lines = []  # import statements, not importlib.import_module: -X importtime times only the former
    for name in entry["imports"]:
        if name.startswith("lifelearn."):  # one the tree lacks is skipped
            lines += [f"try:\n    import {name}\nexcept ModuleNotFoundError as err:",
                      f"    if err.name != {name!r}:\n        raise"]
        else:
            lines.append(f"import {name}")
    lines += ["import lifelearn.stats", *entry["calls"]]
    return "\n".join(lines)


def parse_importtime(stderr: str) -> tuple[float, dict[str, float]]:
    """(seconds of all top-level imports, {heavy package: cumulative seconds where first imported})
    from `python -X importtime` output ('import time: self [us] | cumulative | name')."""
    total, heavy = 0, {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        level = (len(name) - len(name.lstrip(" ")) - 1) // 2
        name = name.strip()
        if level == 0:
            total += int(cumulative)
        if name in HEAVY:
            heavy.setdefault(name, int(cumulative) / 1e6)  # first (outermost) import of it
    return total / 1e6, heavy


def measure(src: Path, entry: dict) -> tuple[float, float, dict[str, float]]:
    """(import seconds, the process's CPU seconds (user + system: less moved by other load
    than wall time), heavy packages) of one fresh interpreter running `entry`."""
    env = os.environ | {"PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", entry_code(entry)], env=env, cwd=src.parent,
                         capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    total, heavy = parse_importtime(out.stderr)
    return total, cpu, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--src", action="append", default=[], help="label=path of a src/ tree (default: this one)")
    parser.add_argument("--entry", action="append", choices=sorted(ENTRIES), help="only these entries")
    args = parser.parse_args()
    trees = dict(s.split("=", 1) for s in args.src) or {"this tree": str(ROOT / "src")}
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"| entry | tree | import s (min of {args.repeat}) | CPU s (min) | heavy packages pulled (s where first imported) |")
    print("|---|---|---|---|---|")
    for name in args.entry or ENTRIES:
        runs = {label: [] for label in trees}
        for _ in range(args.repeat):  # the trees alternate: both see the same load
            for label, src in trees.items():
                runs[label].append(measure(Path(src).resolve(), ENTRIES[name]))
        for label, measured in runs.items():
            total, _, heavy = min(measured, key=lambda r: r[0])
            pulled = ", ".join(f"{k} {v:.2f}" for k, v in sorted(heavy.items(), key=lambda kv: -kv[1]))
            print(f"| {name} | {label} | {total:.2f} | {min(r[1] for r in measured):.2f} | {pulled} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(textwrap.fill("Import seconds are the sum of the top-level imports' cumulative times under -X importtime "
                        "(which itself slows imports a little); read them as this machine's at this load.", 100))


if __name__ == "__main__":
    main()
