"""Adding a study is three files (README "Adding a study"): its module under
src/lifelearn/studies/, its config/studies/<name>.yaml and its workflow/rules/<name>.smk
(+ its schema). The toy study of tests/toy_study/ added that way runs end to end on the
smoke profile: jobs, MLflow runs, report section and claim verdict."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, copy_workflow, experiment_runs, snakemake

pytestmark = pytest.mark.slow
TOY = REPO / "tests" / "toy_study"


def add_toy_study(workdir: Path) -> None:
    """The three files (and the schema), nothing else edited; the other studies are taken
    out (their config files) so that only the toy study and the report run."""
    for path in (workdir / "config" / "studies").glob("*.yaml"):
        path.unlink()
    shutil.copy(TOY / "toy.py", workdir / "src" / "lifelearn" / "studies" / "toy.py")
    shutil.copy(TOY / "toy.yaml", workdir / "config" / "studies" / "toy.yaml")
    shutil.copy(TOY / "toy.schema.yaml", workdir / "config" / "schemas" / "toy.yaml")
    shutil.copy(TOY / "toy.smk", workdir / "workflow" / "rules" / "toy.smk")


def test_a_study_added_as_three_files_runs_end_to_end(tmp_path):
    workdir = copy_workflow(tmp_path / "repo")
    add_toy_study(workdir)
    env = os.environ | {"PYTHONPATH": str(workdir / "src")}  # the copy's package, with the new module
    snakemake(workdir, "--cores", "2", env=env)
    results = workdir / "results" / "smoke"
    for method in ("majority", "nearest_mean"):
        for seed in (0, 1):
            record = json.loads((results / "toy" / method / f"seed{seed}" / "metrics.json").read_text())
            assert record["study"] == "toy" and record["method"] == method and 0 <= record["metrics"]["test_acc"] <= 1
            assert (workdir / "logs" / "smoke" / f"toy_{method}.log").exists()
    claims = {c["id"]: c for c in json.loads((results / "report" / "claims.json").read_text())}
    assert list(claims) == ["nearest_mean_beats_majority"] and claims["nearest_mean_beats_majority"]["verdict"] == "holds"
    readme = (results / "report" / "README.md").read_text()
    assert "## Study `toy`, stage `toy`" in readme and "nearest_mean" in readme
    runs = experiment_runs(workdir, "toy")
    assert sorted(r.info.run_name for r in runs) == ["majority/seed0", "majority/seed1", "nearest_mean/seed0",
                                                     "nearest_mean/seed1"]
    assert sorted(r.info.run_name for r in experiment_runs(workdir, "toy", level="parent")) == ["majority", "nearest_mean"]


def test_a_study_config_without_its_module_is_named(tmp_path):
    workdir = copy_workflow(tmp_path / "repo")
    shutil.copy(TOY / "toy.yaml", workdir / "config" / "studies" / "toy.yaml")
    shutil.copy(TOY / "toy.smk", workdir / "workflow" / "rules" / "toy.smk")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "profile=smoke"], cwd=workdir,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "study 'toy' (config/studies/toy.yaml) has no module src/lifelearn/studies/toy.py" in proc.stdout + proc.stderr
