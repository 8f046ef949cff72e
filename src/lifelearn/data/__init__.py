"""Datasets: registry, download, parsing and the on-disk array format.

    prepare_dataset(name, data_root="data", cache_dir=".cache/downloads", source=None) -> Path
    load_dataset(path_or_dir) -> Dataset   (checks the files first: verify_dataset)

Set LIFELEARN_DATA_MIRROR to fetch the official files from
``<mirror>/<name>/<file name>`` (checksums unchanged), see `download`.
"""
from __future__ import annotations

import importlib

# name -> its submodule, loaded on first use (PEP 562): a job that only reads a prepared
# dataset (lifelearn.data.arrays) does not import the download stack (pooch, requests)
_EXPORTS = {
    "Dataset": "arrays", "DatasetIntegrityError": "arrays", "load_dataset": "arrays", "verify_dataset": "arrays",
    "ChecksumError": "download", "DownloadSource": "download", "safe_extract": "formats",
    "prepare_dataset": "prepare", "DATASETS": "registry", "DatasetSpec": "registry", "dataset_names": "registry",
    "get_spec": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
