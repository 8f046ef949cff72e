"""The datasets by name: how each is obtained, its class count and augmentation.

Embedded (no network): digits, mnist1d. Downloaded from the official URLs with
their published md5 checksums: mnist, fashion_mnist, cifar10, cifar100.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .download import DownloadSource
from .downloaded import build_cifar10, build_cifar100, build_idx
from .embedded import build_digits, build_mnist1d
from .splits import Built

DEFAULT_VAL_SIZE = 5000
IDX_FILES = (
    ("train_images", "train-images-idx3-ubyte.gz"), ("train_labels", "train-labels-idx1-ubyte.gz"),
    ("test_images", "t10k-images-idx3-ubyte.gz"), ("test_labels", "t10k-labels-idx1-ubyte.gz"),
)


@dataclass(frozen=True)
class DatasetSpec:
    """How to build one dataset.

    `build(spec, files)` returns the splits, `files` being ``{role: path}`` of the
    fetched `source` (None for embedded datasets, then `files` is empty).
    `val_size` is the number of train samples held out as val by downloaded sets;
    `about` names the dataset in meta.json's "source".
    """

    name: str
    num_classes: int
    augment: str
    about: str
    build: Callable[..., Built]
    source: DownloadSource | None = None
    val_size: int = DEFAULT_VAL_SIZE


def _idx_source(base: str, md5s: tuple[str, str, str, str]) -> DownloadSource:
    return DownloadSource({role: (base + fname, f"md5:{md5}") for (role, fname), md5 in zip(IDX_FILES, md5s)})


MNIST = _idx_source("https://ossci-datasets.s3.amazonaws.com/mnist/", (
    "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))
FASHION_MNIST = _idx_source("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", (
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))
CIFAR10 = DownloadSource({"archive": (
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "md5:c58f30108f718f92721af3b95e74349a")})
CIFAR100 = DownloadSource({"archive": (
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "md5:eb9058c3a382ffc7106e4002c42a8d85")})

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("digits", 10, "none", "scikit-learn load_digits", build_digits),
    DatasetSpec("mnist1d", 10, "none", "mnist1d package", build_mnist1d),
    DatasetSpec("mnist", 10, "none", "MNIST (LeCun et al. 1998)", build_idx, MNIST),
    DatasetSpec("fashion_mnist", 10, "none", "Fashion-MNIST (Xiao et al. 2017)", build_idx, FASHION_MNIST),
    DatasetSpec("cifar10", 10, "crop_flip", "CIFAR-10 (Krizhevsky 2009)", build_cifar10, CIFAR10),
    DatasetSpec("cifar100", 100, "crop_flip", "CIFAR-100 (Krizhevsky 2009)", build_cifar100, CIFAR100),
)}


def dataset_names() -> list[str]:
    """Names accepted by `get_spec` / `prepare_dataset`, sorted."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The spec registered as `name`; KeyError listing the allowed names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; allowed: {', '.join(dataset_names())}") from None
