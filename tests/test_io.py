"""Atomic outputs: a writer that dies leaves neither a target nor a temporary file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lifelearn.io import atomic_path, md5_tree, save_npy, write_json


def test_failed_write_leaves_no_output(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("killed half-way")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"acc": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("garbage")
            raise RuntimeError
    assert json.loads(target.read_text()) == {"acc": 0.5} and len(list(tmp_path.iterdir())) == 1


def test_outputs_get_the_usual_file_mode(tmp_path):
    write_json(tmp_path / "a.json", {})
    save_npy(tmp_path / "a.npy", np.zeros(3))
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o044 == 0o044  # group/other readable (mkstemp makes 0600)


def test_md5_tree_depends_on_names_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"1")
    first = md5_tree(tmp_path)
    (tmp_path / "a" / "x").write_bytes(b"2")
    second = md5_tree(tmp_path)
    (tmp_path / "a" / "x").rename(tmp_path / "a" / "y")
    assert len({first, second, md5_tree(tmp_path)}) == 3
