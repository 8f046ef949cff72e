# lifelearn: download -> pretrain teachers -> (distil -> continual) -> evaluate -> report.
# `snakemake --cores all` runs the default profile; `--config profile=smoke|paper`.
from snakemake.utils import min_version, validate

from lifelearn.config import resolve_profile
from lifelearn.tracking import default_tracking_uri, ensure_store, git_commit

min_version("9.0")


configfile: "config/config.yaml"


_resolved = resolve_profile(config)
config.clear()
config.update(_resolved)
validate(config, "config/schema.yaml")


include: "workflow/rules/common.smk"


# Not part of any rule's params: provenance must not trigger reruns.
config["_provenance"] = {
    "tracking_uri": default_tracking_uri(workflow.basedir),
    "profile": config["profile"],
    "git_commit": git_commit(workflow.basedir),
    "data_version": committed_data_version("data.dvc"),
}


onstart:
    # Create the MLflow store once, before jobs write to it in parallel.
    ensure_store(config["_provenance"]["tracking_uri"])


include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/mtard.smk"
include: "workflow/rules/continual.smk"
include: "workflow/rules/tgeo_kd.smk"
include: "workflow/rules/dataset_distillation.smk"
include: "workflow/rules/report.smk"  # last: consumes REPORT_INPUTS


rule all:
    # The results themselves, not only the report: the default report is committed,
    # so a fresh clone must still see its results as missing and run everything.
    input:
        REPORT_README,
        rules.data_version.output,
        REPORT_INPUTS["metrics"],
    default_target: True
