# The report: tables, seaborn figures and the verdict on every paper claim,
# computed from the files this run wrote. Included last: it reads REPORT_INPUTS,
# which every stage's rule file extends. `snakemake --report` shows each figure with its
# README caption, from the caption file the report job writes beside the README, in one
# category per study (a figure's name starts with its study), and the run's cost.
# The report() flags and captions are for `snakemake --report` only: no job reruns for them.
import os

FIGURE_CAPTIONS = f"{REPORT_DIR}/figure-captions.rst"


def figure_study(wildcards):
    """The study of figure `<study>-<what>.png`: its category in `snakemake --report`."""
    return wildcards.figure.split("-", 1)[0]


rule report:
    input:
        metrics=REPORT_INPUTS["metrics"],
        history=REPORT_INPUTS["history"],
        extra=REPORT_INPUTS["extra"],
        data_version=rules.data_version.output[0],
        # the report code, and what the claims engine and the ledger read
        code=code(
            "report",
            "stats.py",
            "evaluate/continual_metrics.py",
            "config.py",
            "jobs.py",
            "studies",
            "tuning.py",
        ),
    output:
        readme=REPORT_README,
        claims=f"{REPORT_DIR}/claims.json",
        captions=FIGURE_CAPTIONS,
        figures=report(
            directory(f"{REPORT_DIR}/figures"),
            patterns=["{figure}.png"],
            caption=os.path.relpath(
                os.path.abspath(FIGURE_CAPTIONS), workflow.current_basedir
            ),
            category=figure_study,
        ),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    params:
        config=config,
    script:
        "../scripts/report.py"


rule pipeline_cost:
    """Wall time, CPU time, peak memory and the phase split of every job of the run, per
    study, stage and rule, from the benchmark and phase files of the jobs (lifelearn.pipeline_cost).
    """
    input:
        # after the report, the last job: every other job's benchmark file is there
        report=REPORT_README,
        code=code("pipeline_cost.py", "phases.py", "io.py"),
    output:
        table=report(
            f"{REPORT_DIR}/pipeline_cost.csv",
            caption="../report/pipeline_cost.rst",
            category="Pipeline cost",
        ),
        page=report(
            f"{REPORT_DIR}/pipeline_cost.html",
            caption="../report/pipeline_cost.rst",
            category="Pipeline cost",
        ),
    log:
        f"{LOGS}/pipeline_cost.log",
    benchmark:
        f"{BENCHMARKS}/pipeline_cost.tsv"
    localrule: True
    params:
        benchmarks=BENCHMARKS,
        profile=PROFILE,
        # every rule of the workflow and its study (a removed rule's old file is left out)
        studies={
            **{r.name: RULE_STUDIES.get(r.name, "pipeline") for r in workflow.rules},
            "pipeline_cost": "pipeline",
        },
        stages={
            **{r.name: RULE_STAGES.get(r.name, "pipeline") for r in workflow.rules},
            "pipeline_cost": "pipeline",
        },
    script:
        "../scripts/pipeline_cost.py"
