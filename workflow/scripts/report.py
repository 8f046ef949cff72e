"""Glue: write the report and record it as an MLflow run of its own; the job's wall time
split into phases beside its benchmark file (lifelearn.phases; start-up: until the `with`)."""
from pathlib import Path

from lifelearn.io import output_to, read_json
from lifelearn.phases import job_phases, phases_path
from lifelearn.report.writer import write_report
from lifelearn.tracking import RunContext, tracked_run

with job_phases(phases_path(snakemake.config["profile"], snakemake.rule), snakemake.rule), \
        output_to(snakemake.log[0]):
    config = snakemake.params.config
    out_dir = Path(snakemake.output.readme).parent
    readme = write_report(config, snakemake.input.metrics, snakemake.input.history,
                          snakemake.input.data_version, out_dir, snakemake.output.captions)
    data_version = read_json(snakemake.input.data_version).get("committed_md5") or "none"
    ctx = RunContext.for_job(config["profile"], data_version, rule=snakemake.rule)
    with tracked_run(ctx, "report", f"report/{config['profile']}", {"stage": "report"},
                     {"claims": len(config["claims"])}) as run:
        run.log_artifact(readme)
        run.log_artifact(snakemake.output.claims)
        for figure in sorted(Path(snakemake.output.figures).glob("*.png")):
            run.log_artifact(figure, "figures")
