"""Glue: prepare one registry dataset into data/<name>/."""
from pathlib import Path

from lifelearn.data import prepare_dataset
from lifelearn.io import output_to

with output_to(snakemake.log[0]):
    out_dir = Path(snakemake.output[0]).parent
    prepare_dataset(snakemake.wildcards.dataset, data_root=out_dir.parent)
