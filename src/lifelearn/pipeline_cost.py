"""The cost of a pipeline run per rule and per study, from Snakemake's own `benchmark:`
files (logs/<profile>/benchmarks/<rule>.tsv, and <rule>/<wildcards>.tsv for a rule with
wildcards: one row per job attempt, the last one counts): jobs, wall seconds (sum and
largest), CPU seconds (user + system, summed) and the largest max RSS, and each job's
wall time split into phases (lifelearn.phases: start-up until the job function starts,
data loading, training, evaluation, MLflow logging, writing outputs, the rest) from the
<rule>.phases.json the job wrote beside its benchmark file; a job without one (not a
study or report job, or run before the split existed) has no split.

The `pipeline_cost` rule writes the table of the run (pipeline_cost.csv beside the report,
and pipeline_cost.html for `snakemake --report`); `benchmarks/pipeline_cost.py` prints it.
The figures depend on the machine and on how loaded it was: read them as that run's.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from lifelearn.phases import PHASE_SUFFIX, PHASES

PIPELINE = "pipeline"  # the study of the rules no study plans (data, report, cost)
PHASE_COLUMNS = ["startup_s", *(f"{name}_s" for name in PHASES)]
WARM_USAGE = ("cpu_s", "max_rss_mb")  # what a warm job's phases file adds to its benchmark (lifelearn.warm)
JOB_COLUMNS = ["rule", "job", "wall_s", "cpu_s", "max_rss_mb", *PHASE_COLUMNS]
TABLE_COLUMNS = ["jobs", "wall_s", "max_wall_s", "cpu_s", "max_rss_mb", *PHASE_COLUMNS]


def rule_studies(config: dict, stage: bool = False) -> dict[str, str]:
    """{rule name: study} of every job the config plans; with `stage`, {rule: <study>/<step>}
    (its stage: e.g. continual/train, continual/evaluate, mtard/sweep)."""
    from lifelearn.jobs import Layout
    from lifelearn.studies import study

    layout = Layout(config["profile"])
    return {job.rule: f"{name}/{job.step}" if stage else name
            for name in config["studies"] for job in study(name).jobs(config, layout)}


def read_phases(directory: str | Path) -> pd.DataFrame:
    """One row per <job>.phases.json under `directory` (lifelearn.phases.job_phases): the job
    (its path less the suffix, as its benchmark file's), start-up and each phase's seconds."""
    import json

    directory, rows = Path(directory), []
    for path in sorted(directory.rglob(f"*{PHASE_SUFFIX}")):
        record = json.loads(path.read_text(encoding="utf-8"))
        split = record.get("phases", {})
        rows.append({"job": path.relative_to(directory).as_posix().removesuffix(PHASE_SUFFIX),
                     "startup_s": float(record["startup_s"]),
                     **{f"{name}_s": float(split.get(name, 0.0)) for name in PHASES},
                     **{f"warm_{k}": record[k] if record.get("warm") else 0.0 for k in WARM_USAGE}})
    return pd.DataFrame(rows, columns=["job", *PHASE_COLUMNS, *(f"warm_{k}" for k in WARM_USAGE)])


def read_benchmarks(directory: str | Path, rules=None) -> pd.DataFrame:
    """One row per job (the last attempt of each benchmark file): rule, job (the file's path
    less .tsv), wall s, cpu s, max RSS MB and the job's phase split (read_phases; NaN where
    it wrote none); only the rules in `rules` when given (a removed rule's old file is left out)."""
    directory, rows = Path(directory), []
    for path in sorted(directory.rglob("*.tsv")):
        rule = path.relative_to(directory).parts[0].removesuffix(".tsv")
        if rules is not None and rule not in rules:
            continue
        bench = pd.read_csv(path, sep="\t")
        if bench.empty:
            continue
        last = bench.iloc[-1]
        rows.append({"rule": rule, "job": path.relative_to(directory).as_posix().removesuffix(".tsv"),
                     "wall_s": float(last["s"]), "cpu_s": float(last["cpu_time"]),
                     "max_rss_mb": float(last["max_rss"])})
    jobs = pd.DataFrame(rows, columns=[c for c in JOB_COLUMNS if c not in PHASE_COLUMNS])
    jobs = jobs.merge(read_phases(directory), on="job", how="left")
    # a warm job's work ran in a child of lifelearn.warm's server, outside the process tree
    # Snakemake's benchmark measures (the glue): its own CPU time and RSS come from its phases file
    jobs["cpu_s"] += jobs["warm_cpu_s"].fillna(0.0)
    jobs["max_rss_mb"] = jobs[["max_rss_mb", "warm_max_rss_mb"]].max(axis=1)
    return jobs[JOB_COLUMNS]


def cost_table(jobs: pd.DataFrame, studies: dict[str, str], by: str = "study") -> pd.DataFrame:
    """Jobs, summed and largest wall time, summed CPU time, largest max RSS and the summed
    phase split (start-up, data, ..., other; empty where no job of the group wrote one) per
    rule, study or stage (`studies` maps rule -> study, or -> <study>/<step> for stages;
    rules it does not name are `pipeline`), most wall time first; per rule with the rule's
    study as the first column."""
    if by not in ("rule", "study", "stage"):
        raise ValueError(f"by: {by!r}; allowed: rule, stage, study")
    key = "study" if by == "rule" else by
    jobs = jobs.assign(**{key: [studies.get(rule, PIPELINE) for rule in jobs["rule"]]})
    phases = {c: (c, lambda v: v.sum(min_count=1)) for c in PHASE_COLUMNS}
    table = jobs.groupby(by).agg(jobs=("rule", "size"), wall_s=("wall_s", "sum"), max_wall_s=("wall_s", "max"),
                                 cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"), **phases)
    if by == "rule":
        table.insert(0, "study", jobs.groupby("rule")["study"].first())
    return table.sort_values(["wall_s", by], ascending=[False, True]).round(1)


def summary(jobs: pd.DataFrame) -> str:
    if jobs.empty:
        return "no benchmark files yet (a job run before its rule had `benchmark:` has none)"
    text = (f"{len(jobs)} jobs, {jobs['wall_s'].sum():.0f} job-seconds of wall time, "
            f"{jobs['cpu_s'].sum():.0f} CPU seconds")
    split = jobs.dropna(subset=["startup_s"])
    if split.empty:
        return text
    parts = ", ".join(f"{c.removesuffix('_s').replace('startup', 'start-up')} {split[c].sum():.0f} s"
                      for c in PHASE_COLUMNS)
    return text + f"; the {len(split)} jobs with a phase split spent {parts}"


def markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table of `table` (its index as the first column)."""
    header = [table.index.name or "", *map(str, table.columns)]
    rows = [[str(i), *("" if pd.isna(v) else str(v) for v in row)] for i, *row in table.itertuples()]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def html_page(jobs: pd.DataFrame, studies: dict[str, str], profile: str, source: str,
              stages: dict[str, str] | None = None) -> str:
    """The cost page of `snakemake --report`: the totals, then a table per study, per stage
    (with `stages`, rule -> <study>/<step>) and per rule, each with the phase split."""
    groups = [("study", studies), *([("stage", stages)] if stages else []), ("rule", studies)]
    tables = [f"<h3>Per {by}</h3>\n" + cost_table(jobs, names, by).reset_index().to_html(index=False, na_rep="", border=0)
              for by, names in groups]
    return "\n".join([
        "<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>Pipeline cost</title>',
        "<style>body{font-family:sans-serif} table{border-collapse:collapse} "
        "td,th{padding:2px 8px;text-align:right} tr:nth-child(even){background:#f3f3f3}</style></head><body>",
        f"<h2>Pipeline cost: profile <code>{html.escape(profile)}</code></h2>",
        f"<p>{html.escape(summary(jobs))} (Snakemake's benchmark files under <code>{html.escape(source)}</code>, "
        "the last attempt of each job; seconds, MB). The phase columns split a job's wall time "
        "(lifelearn.phases): start-up is the interpreter and imports until the job function starts; "
        "the import of a package inside a phase counts for that phase; other is the rest; "
        "the benchmark's wall time also holds Snakemake's launch and the interpreter's exit.</p>",
        *tables, "</body></html>", ""])


def write_cost(benchmark_dir: str | Path, studies: dict[str, str], csv_path: str | Path,
               html_path: str | Path, profile: str, stages: dict[str, str] | None = None) -> pd.DataFrame:
    """Write the per-rule table (CSV) and the cost page (HTML; per stage too with `stages`)
    of the jobs whose rules `studies` names; returns the per-rule table."""
    from lifelearn.io import write_text

    jobs = read_benchmarks(benchmark_dir, rules=set(studies))
    table = cost_table(jobs, studies, "rule")
    write_text(csv_path, table.to_csv())
    write_text(html_path, html_page(jobs, studies, profile, str(benchmark_dir), stages))
    return table
