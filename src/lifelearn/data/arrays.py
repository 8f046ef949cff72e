"""The on-disk dataset format and its atomic writer / loader.

A prepared dataset is a directory ``<data_root>/<name>/`` holding
``x_{split}.npy`` and ``y_{split}.npy`` for split in train, val, test, and
``meta.json``. x is (N, C, L) or (N, C, H, W), uint8 in 0..255 or float32 in
[0, 1]; y is int64. meta.json has name, num_classes, input_shape (without N),
mean and std per channel of the [0, 1]-scaled train split, augment, source,
splits ({split: size}), split_seed and md5 ({file name: md5} of the six .npy files, as
written). The directory appears in one rename.

Integrity: `load_dataset` first checks every .npy file against the md5 meta.json records
(`verify_dataset`), all six whatever splits it loads, and refuses a damaged dataset with
a `DatasetIntegrityError` naming the file, the expected and the actual md5 and the fix. A
dataset written before md5s were recorded loads with a warning. meta.json itself is
covered by data.dvc's md5 (lifelearn.data.version), not by a record of its own.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lifelearn.io import load_npy, md5_file, save_npy, write_json
from lifelearn.phases import timed

SPLITS = ("train", "val", "test")
# The files of one dataset directory, in a fixed order (rules list them as inputs and outputs).
DATASET_FILES = tuple(f"{k}_{s}.npy" for s in SPLITS for k in ("x", "y")) + ("meta.json",)
META = "meta.json"
ARRAY_FILES = DATASET_FILES[:-1]
MD5 = "md5"  # meta.json's key: {file name: md5} of ARRAY_FILES, written by write_dataset


class DatasetIntegrityError(ValueError):
    """A prepared dataset's file is missing, unreadable or differs from its recorded md5."""

    def __init__(self, path: Path, problem: str, expected: str | None = None, actual: str | None = None):
        root = path.parent
        super().__init__(
            f"{path}: {problem}. The dataset {root} is damaged (truncated, altered or partly copied) and was "
            f"not used. Fix: write it again with `snakemake --cores 1 --force {root / META}` (a plain "
            f"`snakemake` run plans prepare_data again for a damaged dataset in data/), or restore the "
            f"committed data/ with `dvc checkout data`")
        self.path, self.problem, self.expected, self.actual = path, problem, expected, actual


class DatasetFileMissing(DatasetIntegrityError, FileNotFoundError):
    """A file meta.json records is missing (also a FileNotFoundError)."""


class UnverifiedDatasetWarning(UserWarning):
    """A dataset whose meta.json records no md5s (written before they were recorded)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: float32 x in [0, 1], int64 y, and the meta fields."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None  # None: not loaded (load_dataset's `splits`)
    y_test: np.ndarray | None

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of split `which` in train, val, test."""
        if which not in SPLITS:
            raise ValueError(f"unknown split {which!r}; allowed: {', '.join(SPLITS)}")
        x = getattr(self, f"x_{which}")
        if x is None:
            raise ValueError(f"split {which!r} of dataset {self.name!r} was not loaded (a tuning job never "
                             "reads the test split)")
        return x, getattr(self, f"y_{which}")


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of `x` scaled to [0, 1].

    uint8 data is reduced through a 256-bin histogram per channel, built in chunks,
    so no large float or int copy of an image set is made.
    """
    means, stds = [], []
    for c in range(x.shape[1]):
        if x.dtype == np.uint8:
            counts = sum(np.bincount(x[i:i + 4096, c].ravel(), minlength=256)
                         for i in range(0, len(x), 4096)).astype(np.float64)
            values = np.arange(256) / 255.0
            mean = counts @ values / counts.sum()
            std = np.sqrt(counts @ (values - mean) ** 2 / counts.sum())
        else:
            mean, std = np.mean(x[:, c], dtype=np.float64), np.std(x[:, c], dtype=np.float64)
        means.append(float(mean))
        stds.append(float(std))
    return means, stds


def write_dataset(target: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write `arrays` ({"x_train": ..., ...}) and `meta` as directory `target`, atomically.

    Files go to a hidden temporary sibling which is renamed onto `target` at the end
    (replacing an existing one); on any error the temporary directory is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        for key, array in sorted(arrays.items()):
            save_npy(tmp / f"{key}.npy", array)
        # md5s of the bytes as written (replacing any a copied meta carried, e.g. a synthetic set's)
        write_json(tmp / META, {**meta, MD5: {f"{key}.npy": md5_file(tmp / f"{key}.npy") for key in arrays}})
        tmp.chmod(0o755)
        _install(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _install(tmp: Path, target: Path) -> None:
    """Rename directory `tmp` onto `target`, moving an existing `target` aside first."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@timed("data")
def load_dataset(path_or_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Load a prepared dataset from its directory (or any file inside it, e.g. meta.json).
    Only the files of `splits` are read; the others stay None (tuning: never the test split).
    All files are first checked against their recorded md5s (`verify_dataset`), those of
    the splits not loaded too: a damaged test split stops a tuning job at once rather than the
    final runs after the tuning budget is spent; comparing its md5 reads no test data into anything."""
    root = _root(path_or_dir)
    meta = verify_dataset(root)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown splits {unknown}; allowed: {', '.join(SPLITS)}")
    arrays = {f"{k}_{s}": load_npy(_require(root, f"{k}_{s}.npy")) if s in splits else None
              for s in SPLITS for k in ("x", "y")}
    arrays = {k: a if a is None else _unit_float(a) if k[0] == "x" else a.astype(np.int64, copy=False)
              for k, a in arrays.items()}
    return Dataset(
        name=meta["name"], num_classes=int(meta["num_classes"]), input_shape=tuple(meta["input_shape"]),
        mean=tuple(meta["mean"]), std=tuple(meta["std"]), augment=meta["augment"], **arrays,
    )


@timed("data")
def verify_dataset(path_or_dir: str | os.PathLike) -> dict:
    """Check each .npy file of a prepared dataset (its directory or a file in it) against the
    md5 its meta.json records; return the meta. A missing, unreadable or differing file raises
    DatasetIntegrityError (the file, the expected and the actual md5, the fix); a meta.json
    without md5s (a dataset written before they were recorded) gives an UnverifiedDatasetWarning."""
    root = _root(path_or_dir)
    path = root / META
    if not path.is_file():
        raise DatasetFileMissing(path, "missing (it records the dataset's md5s)")
    try:
        meta = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetIntegrityError(path, f"not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise DatasetIntegrityError(path, "not a JSON object")
    recorded = meta.get(MD5)
    if recorded is None:
        warnings.warn(f"{path} records no md5s (written before they were recorded), so {root} is used "
                      f"unverified; write it again (`snakemake --cores 1 --force {path}`) to record them",
                      UnverifiedDatasetWarning, stacklevel=2)
        return meta
    for fname in ARRAY_FILES:
        expected, file = recorded.get(fname), root / fname
        if expected is None:
            raise DatasetIntegrityError(file, f"{path} records no md5 for it")
        if not file.is_file():
            raise DatasetFileMissing(file, f"expected md5 {expected} (recorded in {META}), actual: no such file",
                                     expected)
        actual = md5_file(file)
        if actual != expected:
            raise DatasetIntegrityError(file, f"expected md5 {expected} (recorded in {META}), actual md5 {actual}",
                                        expected, actual)
    return meta


def _root(path_or_dir: str | os.PathLike) -> Path:
    """The dataset directory of `path_or_dir` (the directory itself or a file in it)."""
    root = Path(path_or_dir)
    return root.parent if root.suffix in (".json", ".npy") and not root.is_dir() else root


def _require(root: Path, fname: str) -> Path:
    path = root / fname
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: the dataset directory is incomplete, prepare it again")
    return path


def _unit_float(x: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 / 255; float data -> float32 as stored."""
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        out /= 255.0
        return out
    return x.astype(np.float32, copy=False)
