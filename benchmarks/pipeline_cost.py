"""Cost of the latest pipeline run, per rule and per study, from Snakemake's own
`benchmark:` files (logs/<profile>/benchmarks/<rule>.tsv: one row per job attempt, the
last one counts): jobs, wall seconds (sum and max), CPU seconds (user + system, summed),
the largest max RSS, and the jobs' wall time split into start-up (interpreter + imports
until the job function starts), data, training, evaluation, MLflow logging, writing and
the rest, from the <rule>.phases.json each study and report job writes beside its
benchmark file (lifelearn.phases).

    python benchmarks/pipeline_cost.py [--profile default] [--by rule|stage|study]

Which study a rule belongs to comes from the studies' own plans
(lifelearn.studies.<study>.jobs), its stage is <study>/<step>; prepare_data, data_version, report and pipeline_cost
are `pipeline`. The code is lifelearn.pipeline_cost, which the `pipeline_cost` rule also
runs (the table beside the report and in `snakemake --report`). The figures depend on the
machine and on how loaded it was: read them as that run's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lifelearn.pipeline_cost import cost_table, markdown, read_benchmarks, rule_studies, summary  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from lifelearn.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--by", choices=("rule", "stage", "study"), default="study")
    args = parser.parse_args()
    config = load_config(ROOT / "config", args.profile)
    jobs = read_benchmarks(ROOT / "logs" / args.profile / "benchmarks")
    if jobs.empty:
        raise SystemExit(f"no benchmark files under logs/{args.profile}/benchmarks: run the pipeline first")
    print(markdown(cost_table(jobs, rule_studies(config, stage=args.by == "stage"), args.by)))
    print(f"\n{summary(jobs)}")


if __name__ == "__main__":
    main()
