"""Glue: prepare one registry dataset into data/<name>/ (config `data`: mirror, checksums, val_size)."""
from pathlib import Path

from lifelearn.data import prepare_dataset
from lifelearn.io import output_to

with output_to(snakemake.log[0]):
    out_dir = Path(snakemake.output[0]).parent
    mirror = (snakemake.config.get("data") or {}).get("mirror")
    prepare_dataset(snakemake.wildcards.dataset, data_root=out_dir.parent, mirror=mirror, **snakemake.params.data)
