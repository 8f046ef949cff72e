"""Resolve the `continual` config section (light imports: the Snakefile reads it).

`continual.settings.<setting>` holds a stream and its training (dataset, scenario,
n_tasks, init, model, train, eval, optional seeds); `continual.runs.<name>` names a
setting and the strategies (+ refresh) to run on it. A run's resolved config is its
setting deep-merged with the run's own keys, seeds defaulting to the top-level seeds.
"""
from __future__ import annotations

from lifelearn.config import deep_merge


def resolve_run(config: dict, name: str) -> dict:
    section = config["continual"]
    run = section["runs"][name]
    cfg = deep_merge(section["settings"][run["setting"]], run)
    cfg.setdefault("seeds", list(config["seeds"]))
    cfg.setdefault("refresh", False)
    return cfg


def resolved_runs(config: dict) -> dict[str, dict]:
    return {name: resolve_run(config, name) for name in sorted((config.get("continual") or {}).get("runs") or {})}


def init_checkpoint_dir(cfg: dict, checkpoints_root: str) -> str | None:
    """Where the starting checkpoints live (seed k: `<dir>/seed<k>.pt`), None from scratch:
    `teacher:<name>` -> <root>/teachers/<name>; `student:<study>/<name>` -> <root>/<study>/<name>
    (a distilled student: the pretraining -> distillation -> continual chain)."""
    init = cfg.get("init", "scratch")
    kind, _, name = init.partition(":")
    if kind == "teacher":
        return f"{checkpoints_root}/teachers/{name}"
    if kind == "student":
        return f"{checkpoints_root}/{name}"
    return None
