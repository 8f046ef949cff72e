"""prepare_dataset: fetch or generate a registry dataset and write it in the array format."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .arrays import SPLITS, channel_stats, write_dataset
from .download import DownloadSource, fetch, mirrored, with_checksums
from .registry import DatasetSpec, get_spec
from .splits import SPLIT_SEED, Built


def prepare_dataset(name: str, data_root: str | os.PathLike = "data",
                    cache_dir: str | os.PathLike = ".cache/downloads",
                    source: DownloadSource | None = None, mirror: str | None = None,
                    checksums: dict[str, str] | None = None, val_size: int | None = None) -> Path:
    """Write ``<data_root>/<name>/`` (see `lifelearn.data.arrays`) and return its path.

    Downloaded datasets are fetched into ``<cache_dir>/<name>/`` from `source`, or
    from the spec's official source (moved to ``$LIFELEARN_DATA_MIRROR`` if set;
    meta.json still names the official URLs, as the checksums pin the same bytes).
    `mirror` (config ``data.mirror``) wins over the variable; `checksums` (config
    ``data.checksums.<name>``, ``{role: "md5:<hex>"}``) replaces the official hashes, and
    meta.json then names the URLs actually fetched (other bytes than the official ones);
    `val_size` (config ``data.val_size.<name>``) replaces the spec's held-out count.
    Output bytes depend only on the input data, so reruns are bit-identical.
    """
    spec = get_spec(name)
    if val_size is not None:
        if spec.source is None:
            raise ValueError(f"config key 'data.val_size.{name}': {name} is embedded; its splits are fixed")
        spec = dataclasses.replace(spec, val_size=int(val_size))
    if checksums and spec.source is None:
        raise ValueError(f"config key 'data.checksums.{name}': {name} is embedded and downloads nothing")
    if checksums and source is None:  # other bytes than the official ones: meta names the URLs fetched
        source = with_checksums(name, mirrored(name, spec.source, mirror), checksums)
    files, urls = _fetch(spec, cache_dir, source, mirror)
    built = spec.build(spec, files)
    _check(spec, built)
    arrays = {f"{k}_{s}": a for s in SPLITS for k, a in zip("xy", getattr(built, s))}
    mean, std = channel_stats(built.train[0])
    meta = {
        "name": name, "num_classes": spec.num_classes, "input_shape": list(built.train[0].shape[1:]),
        "mean": mean, "std": std, "augment": spec.augment,
        "source": built.source + (f"; files: {', '.join(urls)}" if urls else ""),
        "splits": {s: len(getattr(built, s)[1]) for s in SPLITS}, "split_seed": SPLIT_SEED,
    }
    return write_dataset(Path(data_root) / name, arrays, meta)


def _fetch(spec: DatasetSpec, cache_dir, source: DownloadSource | None,
           mirror: str | None = None) -> tuple[dict[str, Path], list[str]]:
    if spec.source is None:
        if source is not None:
            raise ValueError(f"dataset {spec.name!r} is embedded and takes no download source")
        return {}, []
    if source is None:  # a mirror serves the official bytes: record the official URLs
        return fetch(spec.name, mirrored(spec.name, spec.source, mirror), cache_dir), _urls(spec.source)
    return fetch(spec.name, source, cache_dir), _urls(source)


def _urls(source: DownloadSource) -> list[str]:
    return [url for url, _ in source.files.values()]


def _check(spec: DatasetSpec, built: Built) -> None:
    """Guard the format contract: dtypes, shapes, label range, non-empty splits."""
    shape = built.train[0].shape[1:]
    for split in SPLITS:
        x, y = getattr(built, split)
        problems = [
            x.dtype not in (np.uint8, np.float32) and f"x dtype {x.dtype}",
            y.dtype != np.int64 and f"y dtype {y.dtype}",
            (len(x) != len(y) or len(y) == 0) and f"{len(x)} inputs for {len(y)} labels",
            x.shape[1:] != shape and f"input shape {x.shape[1:]} != train {shape}",
            len(y) and not 0 <= y.min() <= y.max() < spec.num_classes and "labels out of range",
        ]
        if any(problems):
            raise ValueError(f"{spec.name} {split}: " + "; ".join(p for p in problems if p))


def dataset_options(config: dict, name: str) -> dict:
    """`prepare_dataset`'s keyword arguments for `name` from the config's `data` section
    (``checksums.<name>``, ``val_size.<name>``; absent: the registry's), as plain values."""
    data = config.get("data") or {}
    options = {"checksums": (data.get("checksums") or {}).get(name),
               "val_size": (data.get("val_size") or {}).get(name)}
    return {k: v for k, v in options.items() if v is not None}
