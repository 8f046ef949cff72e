"""Tiny CIFAR-10/100 archives in the OFFICIAL formats, and a 127.0.0.1 mirror serving them.

The archives are what https://www.cs.toronto.edu/~kriz/cifar.html ships, only smaller:
``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1..5``, ``test_batch`` and
``batches.meta``; ``cifar-100-python.tar.gz`` holds ``cifar-100-python/train``, ``test`` and
``meta``. Each batch is a Python-2 style pickle (byte-string keys; ``b"data"`` a uint8
(N, 3072) array of R, G, B planes; ``b"labels"`` / ``b"fine_labels"`` a list of ints), as the
cPickle-made originals are. Bytes are deterministic (fixed RNG seed, tar mtimes 0, gzip
mtime 0), so config/overrides/paper_dry_run.yaml can state their md5s and the download's
checksum check still runs. Images are class-dependent colour blobs plus noise, so the
tiny models learn something (a claim's direction is not meaningful at this size).

    python tests/cifar_mirror.py DIR          # write DIR/cifar10/..., DIR/cifar100/...; print md5s
    python tests/cifar_mirror.py DIR --serve  # and serve DIR on 127.0.0.1 (prints the base URL)
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import pickle
import struct
import sys
import tarfile
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np

# (train images per class, test images per class) of the tiny sets; the dry run's
# data.val_size takes its val from train (val_size per class = VAL_PER_CLASS).
SIZES = {"cifar10": (70, 20), "cifar100": (6, 2)}
VAL_PER_CLASS = {"cifar10": 10, "cifar100": 1}
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings, like the cPickle-made CIFAR files."""

    def _save_bytestring(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        head = (pickle.SHORT_BINSTRING + bytes([len(raw)]) if len(raw) < 256
                else pickle.BINSTRING + struct.pack("<i", len(raw)))
        self.write(head + raw)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, str: _save_bytestring, bytes: _save_bytestring}


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _images(rng: np.random.Generator, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """uint8 (N, 3072): a class-coloured square at a class-dependent place, plus noise."""
    n = len(labels)
    x = rng.integers(0, 96, (n, 3, 32, 32)).astype(np.int32)
    colours = np.random.default_rng(1234).integers(64, 256, (num_classes, 3))
    for i, c in enumerate(labels):
        r, q = divmod(int(c) % 16, 4)
        x[i, :, 4 + 6 * r:12 + 6 * r, 4 + 6 * q:12 + 6 * q] = colours[c][:, None, None]
    return np.clip(x, 0, 255).astype(np.uint8).reshape(n, 3072)


def _batch(rng, labels: np.ndarray, num_classes: int, label_key: bytes, name: bytes) -> bytes:
    return _py2_pickle({b"batch_label": name, label_key: [int(v) for v in labels],
                        b"data": _images(rng, labels, num_classes),
                        b"filenames": [b"img_%05d.png" % i for i in range(len(labels))]})


def _tar_gz(members: dict[str, bytes]) -> bytes:
    """A deterministic .tar.gz: members in order, mtime 0, no owner names, gzip mtime 0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)


def archive(name: str) -> bytes:
    """The tiny archive of `name` (cifar10 or cifar100), byte-identical on every call."""
    rng = np.random.default_rng({"cifar10": 10, "cifar100": 100}[name])
    train_per, test_per = SIZES[name]
    if name == "cifar10":
        y_train = rng.permutation(np.repeat(np.arange(10), train_per))
        y_test = rng.permutation(np.repeat(np.arange(10), test_per))
        parts = np.array_split(y_train, 5)
        members = {f"cifar-10-batches-py/data_batch_{i + 1}": _batch(
            rng, part, 10, b"labels", b"training batch %d of 5" % (i + 1)) for i, part in enumerate(parts)}
        members["cifar-10-batches-py/test_batch"] = _batch(rng, y_test, 10, b"labels", b"testing batch 1 of 1")
        members["cifar-10-batches-py/batches.meta"] = _py2_pickle(
            {b"label_names": [b"c%d" % i for i in range(10)], b"num_cases_per_batch": len(parts[0]),
             b"num_vis": 3072})
    else:
        y_train = rng.permutation(np.repeat(np.arange(100), train_per))
        y_test = rng.permutation(np.repeat(np.arange(100), test_per))
        members = {"cifar-100-python/train": _batch(rng, y_train, 100, b"fine_labels", b"training batch 1 of 1"),
                   "cifar-100-python/test": _batch(rng, y_test, 100, b"fine_labels", b"testing batch 1 of 1"),
                   "cifar-100-python/meta": _py2_pickle({b"fine_label_names": [b"f%d" % i for i in range(100)],
                                                         b"coarse_label_names": [b"k%d" % i for i in range(20)]})}
    return _tar_gz(members)


def write_mirror(root: str | Path) -> dict[str, str]:
    """Write ``<root>/<name>/<official file name>`` for both sets; return {name: "md5:<hex>"}."""
    md5s = {}
    for name, fname in ARCHIVES.items():
        data = archive(name)
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
        (Path(root) / name / fname).write_bytes(data)
        md5s[name] = "md5:" + hashlib.md5(data).hexdigest()
    return md5s


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve(root: str | Path) -> Iterator[str]:
    """Serve `root` over HTTP on 127.0.0.1 (a free port) in a thread; yield the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


if __name__ == "__main__":
    root = Path(sys.argv[1])
    for name, md5 in write_mirror(root).items():
        print(f"{name} {md5}")
    if "--serve" in sys.argv:
        with serve(root) as url:
            print(url, flush=True)
            threading.Event().wait()
