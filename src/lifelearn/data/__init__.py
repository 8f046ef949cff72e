"""Datasets: registry, download, parsing and the on-disk array format.

    prepare_dataset(name, data_root="data", cache_dir=".cache/downloads", source=None) -> Path
    load_dataset(path_or_dir) -> Dataset   (checks the files first: verify_dataset)

Set LIFELEARN_DATA_MIRROR to fetch the official files from
``<mirror>/<name>/<file name>`` (checksums unchanged), see `download`.
"""
from .arrays import Dataset, DatasetIntegrityError, load_dataset, verify_dataset
from .download import ChecksumError, DownloadSource
from .formats import safe_extract
from .prepare import prepare_dataset
from .registry import DATASETS, DatasetSpec, dataset_names, get_spec

__all__ = [
    "ChecksumError", "DATASETS", "Dataset", "DatasetIntegrityError", "DatasetSpec", "DownloadSource",
    "dataset_names", "get_spec", "load_dataset", "prepare_dataset", "safe_extract", "verify_dataset",
]
