"""Glue: check the regenerated data/ against the md5 data.dvc records; cache it if equal."""
from lifelearn.data.version import cache_if_match, check_data_version
from lifelearn.io import output_to, write_json

with output_to(snakemake.log[0]):
    report = check_data_version("data", "data.dvc")
    report["dvc_cache"] = cache_if_match(report, "data.dvc")
    write_json(snakemake.output[0], report)
