"""Dataset package: registry, format, splits, and the download path against a local
HTTP server serving tiny files in the real formats (no internet)."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import json
import os
import pickle
import re
import struct
import tarfile
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from lifelearn.data import (
    DATASETS, ChecksumError, DownloadSource, dataset_names, get_spec, load_dataset,
    prepare_dataset, safe_extract,
)
from lifelearn.data import arrays as arrays_mod
from lifelearn.data import download as download_mod
from lifelearn.data.download import MIRROR_ENV, mirrored
from lifelearn.data.formats import IDX_IMAGES, load_pickle, read_idx
from lifelearn.io import md5_file, read_json

FILES = [f"{k}_{s}.npy" for s in ("train", "val", "test") for k in "xy"] + ["meta.json"]
META_KEYS = {"name", "num_classes", "input_shape", "mean", "std", "augment", "source", "splits", "split_seed", "md5"}


# --- embedded datasets -------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return prepare_dataset("digits", data_root=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def mnist1d_dir(tmp_path_factory):
    return prepare_dataset("mnist1d", data_root=tmp_path_factory.mktemp("data"))


def test_digits_arrays(digits_dir):
    assert sorted(p.name for p in digits_dir.iterdir()) == sorted(FILES)
    ds = load_dataset(digits_dir)
    sizes = {s: len(ds.split(s)[1]) for s in ("train", "val", "test")}
    assert sizes == {"train": 1293, "val": 144, "test": 360} and sum(sizes.values()) == 1797
    for s in sizes:
        x, y = ds.split(s)
        assert x.shape[1:] == (1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.load(digits_dir / "x_train.npy").dtype == np.float32


def test_digits_splits_are_a_stratified_partition(digits_dir):
    from sklearn.datasets import load_digits

    full = load_digits()
    ds = load_dataset(digits_dir)
    rows = {s: [x.tobytes() + bytes([c]) for x, c in zip(*ds.split(s))] for s in ("train", "val", "test")}
    assert not set(rows["train"]) & set(rows["val"])
    assert not set(rows["train"]) & set(rows["test"]) and not set(rows["val"]) & set(rows["test"])
    source = [(img / 16).astype(np.float32)[None].tobytes() + bytes([c]) for img, c in zip(full.images, full.target)]
    assert Counter(rows["train"] + rows["val"] + rows["test"]) == Counter(source)
    totals = np.bincount(full.target)
    for s in rows:
        counts = np.bincount(ds.split(s)[1], minlength=10)
        expected = totals * len(ds.split(s)[1]) / len(full.target)
        assert (counts > 0).all() and np.abs(counts - expected).max() <= 2


def test_digits_meta(digits_dir):
    meta = read_json(digits_dir / "meta.json")
    assert set(meta) == META_KEYS
    ds = load_dataset(digits_dir / "meta.json")
    assert meta["name"] == ds.name == "digits" and meta["num_classes"] == ds.num_classes == 10
    assert meta["input_shape"] == [1, 8, 8] and ds.input_shape == (1, 8, 8)
    assert meta["augment"] == "none" and meta["split_seed"] == 0
    assert meta["splits"] == {"train": 1293, "val": 144, "test": 360}
    assert meta["mean"] == pytest.approx([float(ds.x_train.mean(dtype=np.float64))])
    assert meta["std"] == pytest.approx([float(ds.x_train.std(dtype=np.float64))])
    assert "load_digits" in meta["source"]
    assert meta["md5"] == {f: md5_file(digits_dir / f) for f in FILES if f != "meta.json"}
    assert (digits_dir / "meta.json").read_text() == json.dumps(meta, indent=2, sort_keys=True) + "\n"


def test_prepare_twice_is_bit_identical_and_replaces(digits_dir, tmp_path):
    first = prepare_dataset("digits", data_root=tmp_path)
    sums = {f: md5_file(first / f) for f in FILES}
    (first / "stale.txt").write_text("left over")
    second = prepare_dataset("digits", data_root=tmp_path)
    assert second == first and sorted(p.name for p in second.iterdir()) == sorted(FILES)
    assert {f: md5_file(second / f) for f in FILES} == sums == {f: md5_file(digits_dir / f) for f in FILES}
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


def test_mnist1d(mnist1d_dir):
    ds = load_dataset(mnist1d_dir)
    assert ds.x_train.shape == (7200, 1, 40) and ds.x_val.shape == (800, 1, 40) and ds.x_test.shape == (2000, 1, 40)
    assert len(ds.y_train) + len(ds.y_val) == 8000 and len(ds.y_test) == 2000
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    for x in (ds.x_val, ds.x_test):
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    val, total = np.bincount(ds.y_val, minlength=10), np.bincount(np.concatenate([ds.y_train, ds.y_val]))
    assert np.abs(val - total / 10).max() <= 1
    meta = read_json(mnist1d_dir / "meta.json")
    assert meta["input_shape"] == [1, 40] and "seed=42" in meta["source"] and "num_samples=10000" in meta["source"]


def test_load_names_missing_split(digits_dir, tmp_path):
    for f in FILES:
        (tmp_path / f).write_bytes((digits_dir / f).read_bytes())
    (tmp_path / "x_val.npy").unlink()
    with pytest.raises(FileNotFoundError, match="x_val.npy"):
        load_dataset(tmp_path)


# --- integrity: every load checks the files against meta.json's md5s ------------------------

def damage(path, how: str) -> None:
    """Truncate `path` to half, flip one bit of its last byte (data, not the .npy header), or remove it."""
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "flipped":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        path.unlink()


@pytest.fixture
def digits_copy(digits_dir, tmp_path):
    copy = tmp_path / "data" / "digits"
    copy.mkdir(parents=True)
    for f in FILES:
        (copy / f).write_bytes((digits_dir / f).read_bytes())
    return copy


@pytest.mark.parametrize("how", ["truncated", "flipped", "missing"])
def test_damaged_file_is_refused_with_file_md5s_and_fix(digits_copy, how):
    expected = md5_file(digits_copy / "x_train.npy")
    damage(digits_copy / "x_train.npy", how)
    error = arrays_mod.DatasetFileMissing if how == "missing" else arrays_mod.DatasetIntegrityError
    with pytest.raises(error) as err:
        load_dataset(digits_copy)
    message = str(err.value)
    actual = "no such file" if how == "missing" else f"actual md5 {md5_file(digits_copy / 'x_train.npy')}"
    assert f"{digits_copy / 'x_train.npy'}: expected md5 {expected}" in message and actual in message
    assert f"snakemake --cores 1 --force {digits_copy / 'meta.json'}" in message and "dvc checkout data" in message
    assert err.value.expected == expected and isinstance(err.value, ValueError)


def test_a_tuning_load_checks_the_test_split_too(digits_copy):
    """load_dataset(dir, splits) reads only `splits` but checks every file: a damaged test
    split stops a tuning job before its budget is spent (its md5 says nothing about its data)."""
    damage(digits_copy / "y_test.npy", "flipped")
    with pytest.raises(arrays_mod.DatasetIntegrityError, match="y_test.npy: expected md5"):
        load_dataset(digits_copy, ("train", "val"))


@pytest.mark.parametrize("text", ['{"name": "dig', "[]"])
def test_unreadable_meta_is_refused(digits_copy, text):
    (digits_copy / "meta.json").write_text(text)
    with pytest.raises(arrays_mod.DatasetIntegrityError, match=r"meta.json: not (valid JSON|a JSON object).*--force "):
        load_dataset(digits_copy)


def test_meta_without_md5s_loads_with_a_warning(digits_copy):
    """A dataset written before md5s were recorded: used unverified, and said so."""
    meta = read_json(digits_copy / "meta.json")
    del meta["md5"]
    (digits_copy / "meta.json").write_text(json.dumps(meta))
    damage(digits_copy / "x_train.npy", "flipped")  # not detectable without a record
    with pytest.warns(arrays_mod.UnverifiedDatasetWarning, match="records no md5s.*--force "):
        ds = load_dataset(digits_copy)
    assert ds.x_train.shape == (1293, 1, 8, 8)


def test_write_dataset_records_the_md5s_of_the_bytes_written(digits_copy, tmp_path):
    """A meta copied from another dataset (a synthetic set's) never carries its md5s over."""
    arrays = {f[:-4]: np.load(digits_copy / f) for f in FILES if f != "meta.json"}
    arrays["x_train"] = arrays["x_train"][:10]
    arrays["y_train"] = arrays["y_train"][:10]
    out = arrays_mod.write_dataset(tmp_path / "syn", arrays, read_json(digits_copy / "meta.json"))
    assert read_json(out / "meta.json")["md5"]["x_train.npy"] == md5_file(out / "x_train.npy")
    assert arrays_mod.verify_dataset(out)["md5"]["y_val.npy"] == md5_file(digits_copy / "y_val.npy")


def test_failed_write_leaves_no_partial_output(digits_dir, tmp_path, monkeypatch):
    target = prepare_dataset("digits", data_root=tmp_path)
    before = {f: md5_file(target / f) for f in FILES}
    calls = []

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        np.save(path, array)

    monkeypatch.setattr(arrays_mod, "save_npy", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset("digits", data_root=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]
    assert {f: md5_file(target / f) for f in FILES} == before


def test_unknown_name_lists_allowed():
    assert dataset_names() == sorted(["digits", "mnist1d", "mnist", "fashion_mnist", "cifar10", "cifar100"])
    with pytest.raises(KeyError) as err:
        prepare_dataset("imagenet")
    assert all(name in str(err.value) for name in dataset_names())
    with pytest.raises(KeyError, match="cifar100"):
        get_spec("svhn")


def test_embedded_rejects_a_download_source(tmp_path):
    with pytest.raises(ValueError, match="embedded"):
        prepare_dataset("digits", data_root=tmp_path, source=DownloadSource({}))
    assert not tmp_path.joinpath("digits").exists()


# --- downloads over a local HTTP server -----------------------------------------------

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(directory served, base URL) of a ThreadingHTTPServer on 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _serve(server, files: dict[str, tuple[str, bytes]], under: str = "") -> DownloadSource:
    """Put each (file name, bytes) on the server below `under`; a source with their true md5s."""
    root, base = server
    (root / under).mkdir(parents=True, exist_ok=True)
    for fname, data in files.values():
        (root / under / fname).write_bytes(data)
    prefix = f"{base}/{under}/" if under else f"{base}/"
    return DownloadSource({role: (prefix + fname, "md5:" + hashlib.md5(data).hexdigest())
                           for role, (fname, data) in files.items()})


def _images_with_ids(rng, n: int, size: int, start: int = 0) -> np.ndarray:
    """Random uint8 rows of `size` bytes whose first two bytes encode start + index."""
    x = rng.integers(0, 256, (n, size), dtype=np.uint8)
    ids = np.arange(start, start + n)
    x[:, 0], x[:, 1] = ids // 256, ids % 256
    return x


def _ids(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.int64)
    return flat[:, 0] * 256 + flat[:, 1]


def _idx_gz(magic: int, array: np.ndarray) -> bytes:
    header = struct.pack(f">{1 + array.ndim}i", magic, *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def _idx_files(rng):
    """Tiny MNIST-format set: 200 train (20 per class) and 50 test images with ids."""
    x_tr, y_tr = _images_with_ids(rng, 200, 784).reshape(200, 28, 28), np.arange(200) % 10
    x_te, y_te = _images_with_ids(rng, 50, 784).reshape(50, 28, 28), rng.integers(0, 10, 50)
    files = {
        "train_images": ("train-images-idx3-ubyte.gz", _idx_gz(2051, x_tr)),
        "train_labels": ("train-labels-idx1-ubyte.gz", _idx_gz(2049, y_tr)),
        "test_images": ("t10k-images-idx3-ubyte.gz", _idx_gz(2051, x_te)),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", _idx_gz(2049, y_te)),
    }
    return (x_tr, y_tr), (x_te, y_te), files


def _check_split_of_served(ds_x: np.ndarray, ds_y: np.ndarray, served_x: np.ndarray, served_y: np.ndarray):
    """Every row of a split is the served row with the same id, in source order."""
    ids = _ids(ds_x)
    assert (np.diff(ids) > 0).all()
    assert np.array_equal(ds_x, served_x[ids]) and np.array_equal(ds_y, served_y[ids])
    return ids


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_download_end_to_end(name, server, tmp_path, monkeypatch):
    (x_tr, y_tr), (x_te, y_te), files = _idx_files(np.random.default_rng(1))
    source = _serve(server, files)
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], val_size=20))
    out = prepare_dataset(name, data_root=tmp_path / "data", cache_dir=tmp_path / "cache", source=source)

    raw = {f: np.load(out / f) for f in FILES[:-1]}
    assert raw["x_train.npy"].dtype == np.uint8 and raw["y_train.npy"].dtype == np.int64
    assert raw["x_train.npy"].shape == (180, 1, 28, 28) and raw["x_val.npy"].shape == (20, 1, 28, 28)
    served_x = x_tr[:, None]
    ids_tr = _check_split_of_served(raw["x_train.npy"], raw["y_train.npy"], served_x, y_tr)
    ids_va = _check_split_of_served(raw["x_val.npy"], raw["y_val.npy"], served_x, y_tr)
    assert sorted(np.concatenate([ids_tr, ids_va])) == list(range(200))
    assert np.array_equal(np.bincount(raw["y_val.npy"]), np.full(10, 2))
    assert np.array_equal(raw["x_test.npy"], x_te[:, None]) and np.array_equal(raw["y_test.npy"], y_te)

    ds = load_dataset(out)
    assert ds.x_test.dtype == np.float32 and np.allclose(ds.x_test * 255, x_te[:, None])
    meta = read_json(out / "meta.json")
    assert meta["splits"] == {"train": 180, "val": 20, "test": 50} and meta["augment"] == "none"
    assert meta["input_shape"] == [1, 28, 28] and meta["num_classes"] == 10
    assert meta["mean"] == pytest.approx([raw["x_train.npy"].mean() / 255])
    assert meta["std"] == pytest.approx([raw["x_train.npy"].std() / 255])
    assert server[1] in meta["source"]
    assert (tmp_path / "cache" / name / "train-images-idx3-ubyte.gz").is_file()


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings, like the cPickle-made CIFAR files."""

    def _save_bytestring(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        short = len(raw) < 256
        head = pickle.SHORT_BINSTRING + bytes([len(raw)]) if short else pickle.BINSTRING + struct.pack("<i", len(raw))
        self.write(head + raw)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, str: _save_bytestring, bytes: _save_bytestring}


def _cifar_pickle(data: np.ndarray, labels: np.ndarray, label_key: bytes, py2: bool = False) -> bytes:
    """A batch dict as the CIFAR site ships it; `py2` writes it as the original Python 2
    pickles are (byte strings, numpy.core.multiarray._reconstruct), else as Python 3 does."""
    batch = {b"batch_label": b"tiny batch", label_key: [int(v) for v in labels], b"data": data,
             b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
    if not py2:
        return pickle.dumps(batch, protocol=3)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(batch)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def _cifar_archive(rng, name: str):
    """Tiny tarball in the layout of the official one; returns (bytes, train, test)."""
    if name == "cifar10":
        x_tr, y_tr = _images_with_ids(rng, 60, 3072), np.arange(60) % 10
        x_te, y_te = _images_with_ids(rng, 10, 3072), np.arange(10)
        members = {f"cifar-10-batches-py/data_batch_{i + 1}": _cifar_pickle(
            x_tr[12 * i:12 * (i + 1)], y_tr[12 * i:12 * (i + 1)], b"labels", py2=i % 2 == 0) for i in range(5)}
        members["cifar-10-batches-py/test_batch"] = _cifar_pickle(x_te, y_te, b"labels")
        members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]})
    else:
        x_tr, y_tr = _images_with_ids(rng, 200, 3072), np.arange(200) % 100
        x_te, y_te = _images_with_ids(rng, 100, 3072), np.arange(100)
        members = {"cifar-100-python/train": _cifar_pickle(x_tr, y_tr, b"fine_labels", py2=True),
                   "cifar-100-python/test": _cifar_pickle(x_te, y_te, b"fine_labels"),
                   "cifar-100-python/meta": pickle.dumps({b"fine_label_names": [b"c"] * 100})}
    return _tar_gz(members), (x_tr, y_tr), (x_te, y_te)


@pytest.mark.parametrize("name, val_size", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_download_end_to_end(name, val_size, server, tmp_path, monkeypatch):
    archive, (x_tr, y_tr), (x_te, y_te) = _cifar_archive(np.random.default_rng(2), name)
    source = _serve(server, {"archive": (f"{name}-python.tar.gz", archive)})
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], val_size=val_size))
    out = prepare_dataset(name, data_root=tmp_path / "data", cache_dir=tmp_path / "cache", source=source)

    x_test = np.load(out / "x_test.npy")
    assert x_test.dtype == np.uint8 and x_test.shape == (len(y_te), 3, 32, 32)
    assert x_test[3, 1, 2, 5] == x_te[3, 1024 + 2 * 32 + 5]  # rows are R, G, B planes, each 32x32 row-major
    assert np.array_equal(x_test, x_te.reshape(-1, 3, 32, 32)) and np.array_equal(np.load(out / "y_test.npy"), y_te)
    served = x_tr.reshape(-1, 3, 32, 32)
    ids_tr = _check_split_of_served(np.load(out / "x_train.npy"), np.load(out / "y_train.npy"), served, y_tr)
    ids_va = _check_split_of_served(np.load(out / "x_val.npy"), np.load(out / "y_val.npy"), served, y_tr)
    assert sorted(np.concatenate([ids_tr, ids_va])) == list(range(len(y_tr)))
    meta = read_json(out / "meta.json")
    assert meta["num_classes"] == (10 if name == "cifar10" else 100) and meta["augment"] == "crop_flip"
    assert meta["splits"] == {"train": len(ids_tr), "val": val_size, "test": len(y_te)}
    assert len(meta["mean"]) == 3 and meta["mean"][2] == pytest.approx(np.load(out / "x_train.npy")[:, 2].mean() / 255)
    assert [p.name for p in (tmp_path / "cache" / name).iterdir()] == [f"{name}-python.tar.gz"]


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    good = gzip.compress(struct.pack(">4i", 2051, 1, 28, 28) + bytes(784), mtime=0)
    source = _serve(server, {"train_images": ("train-images-idx3-ubyte.gz", good),
                             "train_labels": ("train-labels-idx1-ubyte.gz", b"unused")})
    bad = good[:-1] + b"\x01"
    (server[0] / "train-images-idx3-ubyte.gz").write_bytes(bad)
    data_root, cache = tmp_path / "data", tmp_path / "cache"
    with pytest.raises(ChecksumError) as err:
        prepare_dataset("mnist", data_root=data_root, cache_dir=cache, source=source)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and source.files["train_images"][0] in message
    assert hashlib.md5(good).hexdigest() in message and hashlib.md5(bad).hexdigest() in message
    assert f"({download_mod.ATTEMPTS} attempt(s))" in message
    assert isinstance(err.value, ValueError)
    assert not data_root.exists() or not any(data_root.iterdir())
    assert not (cache / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert not (cache / "mnist").exists() or not any((cache / "mnist").iterdir())


def test_truncated_download_is_retried(server, tmp_path, monkeypatch):
    good = gzip.compress(struct.pack(">4i", 2051, 1, 28, 28) + bytes(784), mtime=0)
    source = _serve(server, {"archive": ("cifar-10-python.tar.gz", good)})
    served = server[0] / "cifar-10-python.tar.gz"
    served.write_bytes(good[: len(good) // 2])  # the first transfer is cut short
    real_retrieve, calls = download_mod.pooch.retrieve, []

    def retrieve_then_heal(*args, **kwargs):
        calls.append(args)
        try:
            return real_retrieve(*args, **kwargs)
        finally:
            served.write_bytes(good)  # the next transfer is complete

    monkeypatch.setattr(download_mod.pooch, "retrieve", retrieve_then_heal)
    files = download_mod.fetch("cifar10", source, tmp_path / "cache")
    assert len(calls) == 2 and files["archive"].read_bytes() == good


def test_checksum_error_hashes_the_file_itself_when_pooch_does_not_say(server, tmp_path, monkeypatch):
    import pooch

    source = _serve(server, {"archive": ("cifar-10-python.tar.gz", b"served bytes")})
    url, _ = source.files["archive"]
    real_retrieve = pooch.retrieve

    def terse_retrieve(*args, known_hash=None, **kwargs):
        if known_hash is not None:
            raise ValueError("MD5 hash of downloaded file does not match the known hash")
        return real_retrieve(*args, known_hash=known_hash, **kwargs)

    monkeypatch.setattr(download_mod.pooch, "retrieve", terse_retrieve)
    wrong = "md5:" + "0" * 32
    with pytest.raises(ChecksumError, match=hashlib.md5(b"served bytes").hexdigest()):
        prepare_dataset("cifar10", data_root=tmp_path / "data", cache_dir=tmp_path / "cache",
                        source=DownloadSource({"archive": (url, wrong)}))
    assert not any((tmp_path / "cache" / "cifar10").iterdir()) and not (tmp_path / "data").exists()


def test_mirror_env_moves_official_urls(monkeypatch):
    official = DATASETS["mnist"].source
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert mirrored("mnist", official) == official
    monkeypatch.setenv(MIRROR_ENV, "http://mirror.example/data/")
    moved = mirrored("mnist", official)
    assert moved.files["test_labels"] == ("http://mirror.example/data/mnist/t10k-labels-idx1-ubyte.gz",
                                          "md5:ec29112dd5afa0611ce80d1b7f02629c")


def test_mirror_env_end_to_end(server, tmp_path, monkeypatch):
    """The default source fetched through $LIFELEARN_DATA_MIRROR/<name>/, meta names the official URLs."""
    _, (x_te, _), files = _idx_files(np.random.default_rng(3))
    served = _serve(server, files, under="mirror/mnist")
    official = DownloadSource({role: (f"https://official.invalid/mnist/{fname}", served.files[role][1])
                               for role, (fname, _) in files.items()})
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], source=official, val_size=20))
    monkeypatch.setenv(MIRROR_ENV, f"{server[1]}/mirror")
    out = prepare_dataset("mnist", data_root=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert np.array_equal(np.load(out / "x_test.npy"), x_te[:, None])
    source = read_json(out / "meta.json")["source"]
    assert "https://official.invalid/mnist/t10k-images-idx3-ubyte.gz" in source and server[1] not in source


# --- untrusted formats ----------------------------------------------------------------

@pytest.mark.parametrize("member", ["../evil.txt", "ABSOLUTE", "LINK"])
def test_safe_extract_refuses_escaping_members(member, tmp_path):
    outside = tmp_path / "outside" / "evil.txt"
    members, links = {"fine.txt": b"ok"}, {}
    if member == "LINK":
        member, links = "link", {"link": "../outside"}
    else:
        member = str(outside) if member == "ABSOLUTE" else member
        members[member] = b"pwned"
    tar_path = tmp_path / "bad.tar.gz"
    tar_path.write_bytes(_tar_gz(members, links))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ValueError, match=re.escape(repr(member))):
        safe_extract(tar_path, dest)
    assert not any(dest.iterdir()) and not (tmp_path / "evil.txt").exists() and not outside.exists()


def test_safe_extract_extracts_good_archive(tmp_path):
    tar_path = tmp_path / "ok.tar.gz"
    tar_path.write_bytes(_tar_gz({"top/a.bin": b"A", "top/sub/b.bin": b"B"}))
    safe_extract(tar_path, tmp_path / "dest")
    assert (tmp_path / "dest/top/a.bin").read_bytes() == b"A" and (tmp_path / "dest/top/sub/b.bin").read_bytes() == b"B"


def test_unpickler_refuses_other_globals(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        load_pickle(path)
    path.write_bytes(pickle.dumps({b"data": os.getcwd}))
    with pytest.raises(pickle.UnpicklingError, match="getcwd"):
        load_pickle(path)


def test_read_idx_rejects_bad_header(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(_idx_gz(2049, np.arange(5)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        read_idx(path, IDX_IMAGES)
    path.write_bytes(gzip.compress(struct.pack(">4i", 2051, 3, 28, 28) + bytes(784)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        read_idx(path, IDX_IMAGES)
