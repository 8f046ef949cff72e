"""Data version: is the regenerated data/ bit-identical to what data.dvc records?

DVC 3 names a directory by `md5(json.dumps(entries, sort_keys=True)) + ".dir"`,
where entries are {"md5": <file md5>, "relpath": <posix path>} sorted by relpath
(dvc_data.hashfile.tree.Tree.as_bytes). Computing it here needs no DVC import and no
git repository; tests/test_dvc.py checks it against `dvc add`.

While parsing, the Snakefile asks `datasets_to_prepare_again` which datasets are damaged, or
embedded and differing from data.dvc, and `mark_checks` writes the verdict into one file per
dataset that its prepare_data job takes as input: so `snakemake -n` plans prepare_data again.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import yaml

from lifelearn.io import md5_file, md5_tree, read_json, write_text

from .arrays import MD5, META, DatasetIntegrityError, UnverifiedDatasetWarning, verify_dataset


def dvc_dir_md5(root: str | os.PathLike, only: Iterable[str] | None = None) -> str:
    """The md5 DVC records for directory `root` (with the '.dir' suffix); with `only`, that
    of `root` holding just its entries of those names (data/ with only the embedded datasets)."""
    return _dir_md5(_file_md5s(root, only))


def _file_md5s(root: str | os.PathLike, only: Iterable[str] | None = None) -> dict[str, str]:
    """{posix path relative to `root`: md5} of every file below `root` (below `only` of its entries)."""
    root, only = Path(root), None if only is None else set(only)
    return {p.relative_to(root).as_posix(): md5_file(p) for p in root.rglob("*")
            if p.is_file() and (only is None or p.relative_to(root).parts[0] in only)}


def _dir_md5(files: dict[str, str]) -> str:
    entries = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(files.items())]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def recorded_md5(dvc_file: str | os.PathLike) -> str | None:
    """The md5 of the first output a .dvc file records, or None when absent."""
    path = Path(dvc_file)
    if not path.exists():
        return None
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or []
    return outs[0].get("md5") if outs else None


def check_data_version(data_root: str | os.PathLike, dvc_file: str | os.PathLike) -> dict:
    """{"committed_md5", "actual_md5", "status": match|differs|no data.dvc, "datasets": {name: md5}}."""
    data_root = Path(data_root)
    committed = recorded_md5(dvc_file)
    actual = dvc_dir_md5(data_root)
    status = "no data.dvc" if committed is None else ("match" if committed == actual else "differs")
    datasets = {p.name: md5_tree(p) for p in sorted(data_root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    return {"committed_md5": committed, "actual_md5": actual, "status": status, "datasets": datasets}


def cache_if_match(report: dict, dvc_file: str | os.PathLike) -> str:
    """Store data/ in the DVC cache when it matches data.dvc (so `dvc status` is clean
    and `dvc push` has something to push); never rewrites a differing data.dvc."""
    if report["status"] != "match":
        return f"not cached: data {report['status']}"
    dvc_file = Path(dvc_file).resolve()
    proc = subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet", dvc_file.name],
                          cwd=dvc_file.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["dvc commit failed"])[-1]
        return f"not cached: {reason}"
    return "cached"


def datasets_to_prepare_again(data_root: str | os.PathLike, names: Iterable[str], embedded: Iterable[str],
                              dvc_file: str | os.PathLike, last_check: str | os.PathLike | None = None
                              ) -> dict[str, str]:
    """{name: why} for the datasets among `names` and `embedded` (each `data_root`/<name>) that
    prepare_data should write again:

    - a file fails `verify_dataset`: missing, unreadable, or not the md5 meta.json records
      (truncated, altered); or an `embedded` one's meta.json records no md5s (to record them);
    - the `embedded` datasets together differ from the md5 `dvc_file` records, even with the
      files above as meta.json records them, and this one has changed since the last data check
      saw it (`last_check`, a data_version.json: its md5 per dataset; none: every embedded one).
      Data the check has already seen differing is left to its warning: regenerated data that is
      not data.dvc's (changed data code, before `dvc add data`), or a data.dvc that records new
      data, would otherwise be prepared again on every run.

    A dataset whose directory is absent is none of these: Snakemake plans it as missing.
    """
    data_root, embedded = Path(data_root), sorted(embedded)
    again, repaired = {}, {}  # repaired: {relpath: md5} of the damaged files once written again
    for name in (n for n in sorted({*names, *embedded}) if (data_root / n).is_dir()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UnverifiedDatasetWarning)
                meta = verify_dataset(data_root / name)
        except DatasetIntegrityError as err:
            again[name] = f"{err.path}: {err.problem}"
            if name in embedded and err.expected is not None:  # meta.json is sound: the files as it records them
                recorded = read_json(data_root / name / META)[MD5]
                repaired |= {f"{name}/{f}": md5 for f, md5 in recorded.items()}
        except UnverifiedDatasetWarning:
            if name in embedded:
                again[name] = f"{data_root / name / META} records no md5s (key {MD5!r}): written again to record them"
    committed = recorded_md5(dvc_file)
    if committed is None or not all((data_root / n).is_dir() for n in embedded):
        return again
    files = _file_md5s(data_root, only=embedded)
    if _dir_md5(files | repaired) == committed:
        return again
    seen = _checked_md5s(last_check)
    for name in embedded:
        if name not in again and md5_tree(data_root / name) != seen.get(name):
            again[name] = (f"the embedded datasets differ from {Path(dvc_file).name} (it records {committed}, "
                           f"data/ has {_dir_md5(files)}) and {data_root / name} changed since the last data check")
    return again


def _checked_md5s(last_check: str | os.PathLike | None) -> dict:
    """data_version.json's {dataset: md5_tree} ({} when absent or unreadable)."""
    try:
        datasets = read_json(last_check).get("datasets") if last_check is not None else None
    except (OSError, ValueError, AttributeError):
        return {}
    return datasets if isinstance(datasets, dict) else {}


def mark_checks(marks_dir: str | os.PathLike, names: Iterable[str], again: dict[str, str]) -> None:
    """Write the check's verdict for each dataset of `names` to `marks_dir`/<name>.txt, an input
    of its prepare_data job: "ok" with mtime 0 (older than any output) while it is fine; why, at
    the time of this check, for one `again` names, so that input is newer than the outputs and
    Snakemake plans prepare_data again (with that file as the reason). Only what changes is written."""
    for name in names:
        path = Path(marks_dir) / f"{name}.txt"
        if name in again:
            write_text(path, f"prepare data/{name} again (checked at {time.time():.6f}): {again[name]}\n")
        elif not path.is_file() or path.stat().st_mtime != 0 or path.read_text() != "ok\n":
            write_text(path, "ok\n")
            os.utime(path, (0, 0))
