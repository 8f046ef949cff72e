"""Glue: check the regenerated data/ against the md5 data.dvc records."""
from lifelearn.data.version import check_data_version
from lifelearn.io import write_json

write_json(snakemake.output[0], check_data_version("data", "data.dvc"))
