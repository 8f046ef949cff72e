"""Builders for the downloaded image datasets: parse the fetched files, carve val.

The val split is `spec.val_size` samples (5000 for the official sets), drawn
stratified from TRAIN, never from test.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .formats import IDX_IMAGES, IDX_LABELS, read_cifar_batch, read_idx, safe_extract
from .splits import Built, carve


def build_idx(spec, files: dict[str, Path]) -> Built:
    """MNIST-style IDX gzip files -> x uint8 (N, 1, 28, 28), y int64."""
    train = _idx_pair(files["train_images"], files["train_labels"])
    test = _idx_pair(files["test_images"], files["test_labels"])
    return _with_val(spec, train, test, f"{spec.about}, IDX format")


def _idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images, IDX_IMAGES), read_idx(labels, IDX_LABELS)
    if len(x) != len(y):
        raise ValueError(f"{images.name} holds {len(x)} images but {labels.name} {len(y)} labels")
    return x[:, None], y.astype(np.int64)


def build_cifar10(spec, files: dict[str, Path]) -> Built:
    """CIFAR-10 python tarball: data_batch_1..5 (train) and test_batch."""
    with _extracted(files["archive"]) as root:
        parts = [read_cifar_batch(root / "cifar-10-batches-py" / f"data_batch_{i}", b"labels") for i in range(1, 6)]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = read_cifar_batch(root / "cifar-10-batches-py" / "test_batch", b"labels")
    return _with_val(spec, train, test, f"{spec.about}, python version")


def build_cifar100(spec, files: dict[str, Path]) -> Built:
    """CIFAR-100 python tarball: train and test files, the 100 fine labels."""
    with _extracted(files["archive"]) as root:
        train = read_cifar_batch(root / "cifar-100-python" / "train", b"fine_labels")
        test = read_cifar_batch(root / "cifar-100-python" / "test", b"fine_labels")
    return _with_val(spec, train, test, f"{spec.about}, python version, fine labels")


@contextmanager
def _extracted(archive: Path) -> Iterator[Path]:
    """`archive` safely extracted into a temporary directory beside it, removed afterwards."""
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".extract-") as tmp:
        safe_extract(archive, tmp)
        yield Path(tmp)


def _with_val(spec, train, test, source: str) -> Built:
    kept, val = carve(*train, spec.val_size)
    return Built(kept, val, test, source)
