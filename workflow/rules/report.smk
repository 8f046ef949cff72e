# The report: tables, seaborn figures and the verdict on every paper claim,
# computed from the files this run wrote. Included last: it reads REPORT_INPUTS,
# which every stage's rule file extends. `snakemake --report` shows each figure with its
# README caption, from the caption file the report job writes beside the README.
import os

FIGURE_CAPTIONS = f"{REPORT_DIR}/figure-captions.rst"


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
            category="Figures",
        ),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    params:
        config=config,
    script:
        "../scripts/report.py"
