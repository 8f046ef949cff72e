"""Parsers for the downloaded file formats; every input is treated as untrusted.

- IDX (MNIST, Fashion-MNIST): gzip; big-endian int32 magic (2051 images, 2049
  labels), int32 dimension sizes, then unsigned bytes. http://yann.lecun.com/exdb/mnist/
- CIFAR python version: a tar.gz of pickled dicts (b"data": uint8 (N, 3072) rows
  of 1024 R, 1024 G, 1024 B values, each 32x32 row-major; b"labels" or
  b"fine_labels"). https://www.cs.toronto.edu/~kriz/cifar.html
  Pickles are loaded with an unpickler that only rebuilds numpy arrays, and tars
  are extracted only after every member is checked to stay inside the target.
"""
from __future__ import annotations

import gzip
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
from numpy._core.multiarray import _reconstruct

IDX_IMAGES, IDX_LABELS = 2051, 2049


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Read a gzip IDX file of unsigned bytes; raise ValueError naming it if malformed."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as err:
        raise ValueError(f"{path.name}: not a readable gzip file ({err})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise ValueError(f"{path.name}: not an IDX file with magic {magic}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise ValueError(f"{path.name}: header says shape {shape} but holds {len(raw) - header} bytes")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


def safe_extract(tar_path: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract `tar_path` into `dest` with tarfile's "data" filter.

    Every member is checked first, so nothing is written if any one fails: its
    path must resolve inside `dest` (no "..", no absolute name) and the "data"
    filter must accept it (no links out of `dest`, no devices). Raises ValueError
    naming the offending member.
    """
    dest = Path(dest).resolve()
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            where = f"{Path(tar_path).name}: member {member.name!r}"
            if os.path.isabs(member.name) or not (dest / member.name).resolve().is_relative_to(dest):
                raise ValueError(f"{where} would land outside {dest}")
            try:
                tarfile.data_filter(member, str(dest))
            except tarfile.FilterError as err:
                raise ValueError(f"{where} refused: {err}") from None
        tar.extractall(dest, filter="data")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def load_pickle(path: str | os.PathLike):
    """Load a (Python 2 era) CIFAR pickle: bytes keys, numpy globals only."""
    with open(path, "rb") as f:
        return NumpyOnlyUnpickler(f, encoding="bytes").load()


def read_cifar_batch(path: str | os.PathLike, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file as (x uint8 (N, 3, 32, 32), y int64 (N,))."""
    batch = load_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"{Path(path).name}: expected a dict with b'data' and {label_key!r}")
    data, labels = batch[b"data"], np.asarray(batch[label_key], dtype=np.int64)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (len(labels), 3072):
        raise ValueError(f"{Path(path).name}: expected uint8 data of shape ({len(labels)}, 3072)")
    return data.reshape(-1, 3, 32, 32), labels
