"""Data version: is the regenerated data/ bit-identical to what data.dvc records?

DVC 3 names a directory by `md5(json.dumps(entries, sort_keys=True)) + ".dir"`,
where entries are {"md5": <file md5>, "relpath": <posix path>} sorted by relpath
(dvc_data.hashfile.tree.Tree.as_bytes). Computing it here needs no DVC import and no
git repository; tests/test_dvc.py checks it against `dvc add`.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from lifelearn.io import md5_file, md5_tree


def dvc_dir_md5(root: str | os.PathLike) -> str:
    """The md5 DVC records for directory `root` (with the '.dir' suffix)."""
    root = Path(root)
    entries = sorted(
        ({"md5": md5_file(p), "relpath": p.relative_to(root).as_posix()} for p in root.rglob("*") if p.is_file()),
        key=lambda e: e["relpath"],
    )
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
