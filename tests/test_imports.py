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


def module_level(module: str, source: str) -> tuple[set[str], set[str]]:
    """What importing `module` runs: (the lifelearn modules, with their parent packages, and
    the top-level names of the other packages) its module-level code imports; a function
    body's imports run only when it is called, an `if TYPE_CHECKING:` block never."""
    names: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, node)
                names.update(f"{base}.{a.name}" if f"{base}.{a.name}" in PATHS else base for a in node.names)
            visit(ast.iter_child_nodes(node))

    visit(ast.parse(source).body)
    ours = {m for m in map(_resolve, (n for n in names if n.split(".")[0] == "lifelearn")) if m}
    ours |= {".".join(m.split(".")[:i]) for m in ours for i in range(1, m.count(".") + 1)}  # parent packages
    return ours - {module}, {n.split(".")[0] for n in names if n.split(".")[0] not in ("lifelearn", "__future__")}


MODULE_LEVEL = {m: module_level(m, p.read_text(encoding="utf-8")) for m, p in PATHS.items()}


def external_closure(modules) -> dict[str, set[str]]:
    """{other package: the lifelearn modules importing it} over everything importing `modules` runs."""
    seen, todo, out = set(), list(modules), {}
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        ours, theirs = MODULE_LEVEL[m]
        todo += sorted(ours)
        for name in theirs:
            out.setdefault(name, set()).add(m)
    return out


def test_module_level_imports_skip_function_bodies_and_add_parent_packages():
    source = ("import torch\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas\n"
              "from lifelearn.continual.template import Plugin\n"
              "def f():\n    import seaborn\n    from lifelearn.report import writer\n"
              "class A:\n    import numpy\n")
    ours, theirs = module_level("lifelearn.x", source)
    assert ours == {"lifelearn", "lifelearn.continual", "lifelearn.continual.template"}
    assert theirs == {"torch", "typing", "numpy"}
    assert external_closure(["lifelearn.stats"]) == {"numpy": {"lifelearn.stats"}}


# what a continual training or evaluation job imports (its glue, run_snakemake_job, run_job and the
# late imports of studies.continual's run_train / train_seed / evaluate_run); benchmarks/import_cost.py
CONTINUAL_JOB = ["lifelearn.studies", "lifelearn.studies.continual", "lifelearn.io", "lifelearn.jobs",
                 "lifelearn.phases", "lifelearn.tracking", "lifelearn.progress", "lifelearn.data.arrays",
                 "lifelearn.tuning", "lifelearn.continual.evaluation", "lifelearn.continual.scenarios",
                 "lifelearn.continual.starts", "lifelearn.continual.strategies", "lifelearn.continual.template",
                 "lifelearn.continual.configs", "lifelearn.evaluate.continual_metrics", "lifelearn.stats"]
NOT_IN_CONTINUAL_JOBS = ("pytorch_lightning", "lightning", "lightning_fabric", "seaborn", "matplotlib", "scipy",
                         "pooch", "sklearn", "art", "kornia")


def test_continual_and_evaluation_job_modules_import_no_lightning_plotting_or_scipy():
    """In-process and without importing anything: the module-level imports the continual and
    continual-evaluation jobs run, followed through lifelearn (the slow test below checks
    the packages' own imports in a fresh interpreter)."""
    pulled = external_closure(CONTINUAL_JOB)
    bad = {name: sorted(pulled[name]) for name in NOT_IN_CONTINUAL_JOBS if name in pulled}
    assert not bad, f"imported at module level by a continual job's modules: {bad}"
    assert "torch" in pulled and "numpy" in pulled  # what they do need, found by the same walk


@pytest.mark.slow
def test_evaluation_job_loads_no_plotting_or_scipy():
    imports = "lifelearn.studies.continual, lifelearn.evaluate.continual_metrics, lifelearn.stats"
    assert loaded_after(imports, ("matplotlib", "seaborn", "scipy")) == []


@pytest.mark.slow
def test_continual_jobs_load_no_lightning_plotting_or_scipy_stats():
    """A fresh interpreter after the continual jobs' imports and a seed summary (every job's
    parent-run aggregates: the t quantile comes from scipy.special, not scipy.stats)."""
    code = ", ".join(CONTINUAL_JOB) + ", mlflow\nlifelearn.stats.seed_summary([{'a': 1.0}, {'a': 2.0}])\nimport sys"
    assert loaded_after(code, ("pytorch_lightning", "lightning_fabric", "torch._dynamo", "matplotlib", "seaborn",
                               "scipy.stats", "pooch")) == []


@pytest.mark.slow
def test_planning_the_studies_loads_no_torch_or_lightning():
    """The Snakefile imports every study module to plan its jobs: that must stay cheap."""
    imports = "lifelearn.config, lifelearn.jobs, " + ", ".join(
        f"lifelearn.studies.{p.stem}" for p in sorted((SRC / "lifelearn" / "studies").glob("[a-z]*.py")))
    assert loaded_after(imports, ("torch", "pytorch_lightning", "mlflow", "pandas", "matplotlib")) == []


def test_import_cost_reads_importtime_output_top_level_sums_and_first_heavy_import():
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_cost", SRC.parent / "benchmarks" / "import_cost.py")
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)
    stderr = ("import time: self [us] | cumulative | imported package\n"
              "import time:       100 |        100 |     numpy.core\n"
              "import time:       400 |     250000 |   pandas\n"
              "import time:      1000 |     500000 | mlflow\n"
              "import time:        50 |    2000000 | torch\n"
              "import time:        10 |        900 |   pandas\n"      # a later, already-loaded mention
              "import time:        20 |      30000 | lifelearn.stats\n"
              "unrelated line\n")
    total, heavy = cost.parse_importtime(stderr)
    assert total == pytest.approx(2.53) and heavy == {"pandas": 0.25, "mlflow": 0.5, "torch": 2.0}
    code = cost.entry_code({"imports": ["torch", "lifelearn.phases"], "calls": ["print(1)"]})
    assert code.splitlines()[0] == "import torch" and "except ModuleNotFoundError as err:" in code
    compile(code, "<entry>", "exec")
