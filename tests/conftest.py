"""Shared fixtures: the repository root and a scratch copy of the workflow."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ["Snakefile", "config", "workflow", "src", "data.dvc", ".dvc", ".dvcignore"]


def copy_workflow(dest: Path) -> Path:
    """Copy what `snakemake` needs to run the pipeline into `dest` (no results, no git)."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "tmp"))
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    return copy_workflow(tmp_path / "repo")
