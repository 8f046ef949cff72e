# The report: tables, seaborn figures and the verdict on every paper claim,
# computed from the files this run wrote. Included last: it reads REPORT_INPUTS,
# which every stage's rule file extends.


rule report:
    output:
        readme=REPORT_README,
        claims=f"{REPORT_DIR}/claims.json",
        figures=report(
            directory(f"{REPORT_DIR}/figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    input:
        metrics=REPORT_INPUTS["metrics"],
        history=REPORT_INPUTS["history"],
        extra=REPORT_INPUTS["extra"],
        data_version=rules.data_version.output[0],
        code=code("report"),
    params:
        config={k: v for k, v in config.items() if k != "_provenance"},
    script:
        "../scripts/report.py"
