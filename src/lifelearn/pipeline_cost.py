"""The cost of a pipeline run per rule and per study, from Snakemake's own `benchmark:`
files (logs/<profile>/benchmarks/<rule>.tsv, and <rule>/<wildcards>.tsv for a rule with
wildcards: one row per job attempt, the last one counts): jobs, wall seconds (sum and
largest), CPU seconds (user + system, summed) and the largest max RSS.

The `pipeline_cost` rule writes the table of the run (pipeline_cost.csv beside the report,
and pipeline_cost.html for `snakemake --report`); `benchmarks/pipeline_cost.py` prints it.
The figures depend on the machine and on how loaded it was: read them as that run's.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

PIPELINE = "pipeline"  # the study of the rules no study plans (data, report, cost)
JOB_COLUMNS = ["rule", "wall_s", "cpu_s", "max_rss_mb"]
TABLE_COLUMNS = ["jobs", "wall_s", "max_wall_s", "cpu_s", "max_rss_mb"]


def rule_studies(config: dict) -> dict[str, str]:
    """{rule name: study} of every job the config plans."""
    from lifelearn.jobs import Layout
    from lifelearn.studies import study

    layout = Layout(config["profile"])
    return {job.rule: name for name in config["studies"] for job in study(name).jobs(config, layout)}


def read_benchmarks(directory: str | Path, rules=None) -> pd.DataFrame:
    """One row per job (the last attempt of each benchmark file): rule, wall s, cpu s, max
    RSS MB; only the rules in `rules` when given (a removed rule's old file is left out)."""
    directory, rows = Path(directory), []
    for path in sorted(directory.rglob("*.tsv")):
        rule = path.relative_to(directory).parts[0].removesuffix(".tsv")
        if rules is not None and rule not in rules:
            continue
        bench = pd.read_csv(path, sep="\t")
        if bench.empty:
            continue
        last = bench.iloc[-1]
        rows.append({"rule": rule, "wall_s": float(last["s"]), "cpu_s": float(last["cpu_time"]),
                     "max_rss_mb": float(last["max_rss"])})
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def cost_table(jobs: pd.DataFrame, studies: dict[str, str], by: str = "study") -> pd.DataFrame:
    """Jobs, summed and largest wall time, summed CPU time and largest max RSS per rule or
    study (rules `studies` does not name are `pipeline`), most wall time first; per rule
    with the rule's study as the first column."""
    jobs = jobs.assign(study=[studies.get(rule, PIPELINE) for rule in jobs["rule"]])
    table = jobs.groupby(by).agg(jobs=("rule", "size"), wall_s=("wall_s", "sum"), max_wall_s=("wall_s", "max"),
                                 cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"))
    if by == "rule":
        table.insert(0, "study", jobs.groupby("rule")["study"].first())
    return table.sort_values(["wall_s", by], ascending=[False, True]).round(1)


def summary(jobs: pd.DataFrame) -> str:
    if jobs.empty:
        return "no benchmark files yet (a job run before its rule had `benchmark:` has none)"
    return (f"{len(jobs)} jobs, {jobs['wall_s'].sum():.0f} job-seconds of wall time, "
            f"{jobs['cpu_s'].sum():.0f} CPU seconds")


def markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table of `table` (its index as the first column)."""
    header = [table.index.name or "", *map(str, table.columns)]
    rows = [[str(i), *("" if pd.isna(v) else str(v) for v in row)] for i, *row in table.itertuples()]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def html_page(jobs: pd.DataFrame, studies: dict[str, str], profile: str, source: str) -> str:
    """The cost page of `snakemake --report`: the totals, then a table per study and per rule."""
    tables = [f"<h3>Per {by}</h3>\n" + cost_table(jobs, studies, by).reset_index().to_html(index=False, na_rep="", border=0)
              for by in ("study", "rule")]
    return "\n".join([
        "<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>Pipeline cost</title>',
        "<style>body{font-family:sans-serif} table{border-collapse:collapse} "
        "td,th{padding:2px 8px;text-align:right} tr:nth-child(even){background:#f3f3f3}</style></head><body>",
        f"<h2>Pipeline cost: profile <code>{html.escape(profile)}</code></h2>",
        f"<p>{html.escape(summary(jobs))} (Snakemake's benchmark files under <code>{html.escape(source)}</code>, "
        "the last attempt of each job; seconds, MB).</p>",
        *tables, "</body></html>", ""])


def write_cost(benchmark_dir: str | Path, studies: dict[str, str], csv_path: str | Path,
               html_path: str | Path, profile: str) -> pd.DataFrame:
    """Write the per-rule table (CSV) and the cost page (HTML) of the jobs whose rules
    `studies` names; returns the per-rule table."""
    from lifelearn.io import write_text

    jobs = read_benchmarks(benchmark_dir, rules=set(studies))
    table = cost_table(jobs, studies, "rule")
    write_text(csv_path, table.to_csv())
    write_text(html_path, html_page(jobs, studies, profile, str(benchmark_dir)))
    return table
