"""Cost of the latest pipeline run, per rule and per study, from Snakemake's own
`benchmark:` files (logs/<profile>/benchmarks/<rule>.tsv: one row per job attempt, the
last one counts): jobs, wall seconds (sum and max), CPU seconds (user + system, summed)
and the largest max RSS.

    python benchmarks/pipeline_cost.py [--profile default] [--by rule|study]

Which study a rule belongs to comes from the studies' own plans
(lifelearn.studies.<study>.jobs); prepare_data, data_version and report are `pipeline`.
The figures depend on the machine and on how loaded it was: read them as that run's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def rule_studies(config: dict) -> dict[str, str]:
    """{rule name: study} of every job the config plans."""
    from lifelearn.jobs import Layout
    from lifelearn.studies import study

    layout = Layout(config["profile"])
    return {job.rule: name for name in config["studies"] for job in study(name).jobs(config, layout)}


def read_benchmarks(directory: Path) -> pd.DataFrame:
    """One row per job (the last attempt of each benchmark file): rule, wall s, cpu s, max RSS MB."""
    rows = []
    for path in sorted(Path(directory).rglob("*.tsv")):
        last = pd.read_csv(path, sep="\t").iloc[-1]
        rule = path.relative_to(directory).parts[0].removesuffix(".tsv")
        rows.append({"rule": rule, "wall_s": float(last["s"]), "cpu_s": float(last["cpu_time"]),
                     "max_rss_mb": float(last["max_rss"])})
    return pd.DataFrame(rows, columns=["rule", "wall_s", "cpu_s", "max_rss_mb"])


def cost_table(jobs: pd.DataFrame, studies: dict[str, str], by: str = "study") -> pd.DataFrame:
    """Jobs, summed and largest wall time, summed CPU time and largest max RSS per rule or study."""
    jobs = jobs.assign(study=jobs["rule"].map(studies).fillna("pipeline"))
    table = jobs.groupby(by).agg(jobs=("rule", "size"), wall_s=("wall_s", "sum"), max_wall_s=("wall_s", "max"),
                                 cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"))
    return table.sort_values("wall_s", ascending=False).round(1)


def main() -> None:
    from lifelearn.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--by", choices=("rule", "study"), default="study")
    args = parser.parse_args()
    config = load_config(ROOT / "config", args.profile)
    jobs = read_benchmarks(ROOT / "logs" / args.profile / "benchmarks")
    if jobs.empty:
        raise SystemExit(f"no benchmark files under logs/{args.profile}/benchmarks: run the pipeline first")
    table = cost_table(jobs, rule_studies(config), args.by)
    print(table.to_markdown())
    print(f"\n{len(jobs)} jobs, {jobs['wall_s'].sum():.0f} job-seconds, {jobs['cpu_s'].sum():.0f} CPU seconds")


if __name__ == "__main__":
    main()
