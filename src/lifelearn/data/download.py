"""Checksummed downloads through pooch, with an injectable source.

Every downloaded dataset names its files as ``role -> (url, "md5:<hex>")`` in a
`DownloadSource`. Files are cached under ``<cache_dir>/<dataset>/<file name>``;
pooch streams into a temporary file and moves it to that name only when the
checksum matches, so a corrupted download never lands in the cache.

Mirror: set ``LIFELEARN_DATA_MIRROR`` to a base URL and the official files are
fetched from ``<mirror>/<dataset>/<file name>`` instead (e.g.
``http://host/datasets/mnist/train-images-idx3-ubyte.gz``), still verified
against the official checksums. The variable does not affect a source passed
explicitly to `prepare_dataset`. The config key ``data.mirror`` does the same per run
(it wins over the variable); ``data.checksums.<dataset>.<role>`` replaces a file's
known hash, for a mirror that serves other bytes (the paper dry run's tiny archives,
config/overrides/paper_dry_run.yaml): the check itself always runs.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pooch

MIRROR_ENV = "LIFELEARN_DATA_MIRROR"
ATTEMPTS = 3  # a truncated or corrupted transfer is retried this many times in all


@dataclass(frozen=True)
class DownloadSource:
    """Files of one dataset: ``{role: (url, known_hash)}``, hash as ``"md5:<hex>"``."""

    files: dict[str, tuple[str, str]]


class ChecksumError(ValueError):
    """A downloaded file's checksum differs from the published one."""

    def __init__(self, fname: str, url: str, expected: str, actual: str, attempts: int = 1):
        super().__init__(
            f"checksum mismatch for {fname} downloaded from {url}: "
            f"expected {expected}, got {actual} ({attempts} attempt(s)); the file was not kept"
        )
        self.fname, self.url, self.expected, self.actual = fname, url, expected, actual


def file_name(url: str) -> str:
    """The last path component of `url`, used as the cached file name."""
    return Path(urlparse(url).path).name


def mirrored(name: str, source: DownloadSource, mirror: str | None = None) -> DownloadSource:
    """`source` with each URL moved to ``<mirror>/<name>/<file name>``, same checksums.

    `mirror` (when not empty) wins over the ``LIFELEARN_DATA_MIRROR`` environment variable;
    without one, `source` is returned unchanged.
    """
    mirror = mirror or os.environ.get(MIRROR_ENV, "")
    if not mirror:
        return source
    base = mirror.rstrip("/")
    return DownloadSource({role: (f"{base}/{name}/{file_name(url)}", known)
                           for role, (url, known) in source.files.items()})


def with_checksums(name: str, source: DownloadSource, checksums: dict[str, str] | None) -> DownloadSource:
    """`source` with the known hash of each role in `checksums` (``{role: "md5:<hex>"}``)
    replaced; an unknown role or a hash not written ``<alg>:<hex>`` is a ValueError naming
    the config key ``data.checksums.<name>.<role>``."""
    checksums = checksums or {}
    unknown = sorted(set(checksums) - set(source.files))
    if unknown:
        raise ValueError(f"config key 'data.checksums.{name}': unknown file role(s) {unknown}; "
                         f"{name} has {sorted(source.files)}")
    for role, known in checksums.items():
        if not re.fullmatch(r"(md5|sha1|sha256):[0-9a-fA-F]+", str(known)):
            raise ValueError(f"config key 'data.checksums.{name}.{role}': {known!r} is not '<md5|sha1|sha256>:<hex>'")
    return DownloadSource({role: (url, checksums.get(role, known)) for role, (url, known) in source.files.items()})


def fetch(name: str, source: DownloadSource, cache_dir: str | os.PathLike) -> dict[str, Path]:
    """Download (or reuse from cache) every file of `source`; return ``{role: path}``.

    Raises `ChecksumError` when a download does not match its known hash.
    """
    folder = Path(cache_dir) / name
    return {role: _retrieve(url, known, folder) for role, (url, known) in source.files.items()}


def _retrieve(url: str, known_hash: str, folder: Path, attempts: int = ATTEMPTS) -> Path:
    """pooch.retrieve with up to `attempts` tries when the checksum does not match
    (pooch discards the bad transfer each time, so nothing partial is kept)."""
    fname = file_name(url)
    for attempt in range(1, attempts + 1):
        try:
            return Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=folder, progressbar=False))
        except ValueError as err:
            if "does not match the known hash" not in str(err):
                raise
            if attempt < attempts:
                continue
            found = re.search(r"but got ([0-9a-fA-F]+)", str(err))
            actual = found.group(1) if found else _hash_of_fresh_copy(url, known_hash, folder)
            raise ChecksumError(fname, url, known_hash, f"{known_hash.split(':')[0]}:{actual.lower()}",
                                attempts) from None


def _hash_of_fresh_copy(url: str, known_hash: str, folder: Path) -> str:
    """Download `url` once more, unchecked, into a throwaway directory and hash it."""
    alg = known_hash.split(":")[0] if ":" in known_hash else "sha256"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        copy = pooch.retrieve(url, known_hash=None, fname="unverified", path=tmp, progressbar=False)
        return pooch.file_hash(copy, alg=alg)
