"""Import structure of src/lifelearn, read with ast: no cycles among its modules, evaluation
never imports the report, report sections never import the writer. Imports at any nesting
level count (a late import inside a function is still an edge); a package is its __init__.
Importing a submodule is an edge to that submodule only, not to its parent packages."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "lifelearn"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PATHS = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The lifelearn module `name` refers to: itself or its longest prefix that is one."""
    parts = name.split(".")
    while parts and ".".join(parts) not in PATHS:
        parts.pop()
    return ".".join(parts) or None


def _base(module: str, node: ast.ImportFrom) -> str:
    """The absolute name `from ... import` reads from, relative levels resolved against `module`."""
    if not node.level:
        return node.module
    package = module if PATHS[module].name == "__init__.py" else module.rpartition(".")[0]
    package = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
    return f"{package}.{node.module}" if node.module else package


def imported(module: str, source: str) -> set[str]:
    """The lifelearn modules `source` (the text of `module`) imports, at any nesting level."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            names |= {f"{base}.{a.name}" if f"{base}.{a.name}" in PATHS else base for a in node.names}
    return {m for m in map(_resolve, names) if m is not None and m != module}


GRAPH = {m: imported(m, p.read_text(encoding="utf-8")) for m, p in PATHS.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as the path [a, b, ..., a], or None when it has none."""
    done, path = set(), []

    def visit(node: str) -> list[str] | None:
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        done.add(path.pop())
        return None

    for node in sorted(graph):
        if node not in done and (cycle := visit(node)):
            return cycle
    return None


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_imports_are_read_at_any_depth_and_resolved_to_modules():
    source = ("import numpy\nimport lifelearn.io as io\n"
              "def f():\n    from ..report import writer\n    from . import continual_metrics\n"
              "    from lifelearn.report.claims import evaluate_claims\n")
    assert imported("lifelearn.evaluate.classification", source) == {
        "lifelearn.io", "lifelearn.report.writer", "lifelearn.evaluate.continual_metrics",
        "lifelearn.report.claims"}
    assert imported("lifelearn.report", "from .claims import evaluate_claims\nfrom . import x\n") \
        == {"lifelearn.report.claims"}
    assert "lifelearn.stats" in GRAPH["lifelearn.report.claims"]


def test_find_cycle_reports_the_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("importer, forbidden", [
    ("lifelearn.evaluate", "lifelearn.report"),
    ("lifelearn.report.sections", "lifelearn.report.writer"),
])
def test_layering(importer, forbidden):
    bad = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if under(m, importer)
                 for t in targets if under(t, forbidden))
    assert not bad, f"{importer} must not import {forbidden}: {bad}"


def loaded_after(imports: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has loaded after `imports`."""
    code = f"import sys, {imports}\nprint(sorted(m for m in {modules!r} if m in sys.modules))"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return eval(out.stdout)


@pytest.mark.slow
def test_evaluation_job_loads_no_plotting_or_scipy():
    imports = "lifelearn.studies.continual, lifelearn.evaluate.continual_metrics, lifelearn.stats"
    assert loaded_after(imports, ("matplotlib", "seaborn", "scipy")) == []


@pytest.mark.slow
def test_planning_the_studies_loads_no_torch_or_lightning():
    """The Snakefile imports every study module to plan its jobs: that must stay cheap."""
    imports = "lifelearn.config, lifelearn.jobs, " + ", ".join(
        f"lifelearn.studies.{p.stem}" for p in sorted((SRC / "lifelearn" / "studies").glob("[a-z]*.py")))
    assert loaded_after(imports, ("torch", "pytorch_lightning", "mlflow", "pandas", "matplotlib")) == []
