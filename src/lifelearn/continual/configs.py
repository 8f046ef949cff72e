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


def synthetic_sets(cfg: dict) -> list[str]:
    """Names (`<method>_ipc<n>`) of the distilled synthetic sets a run's strategies replay."""
    return sorted({p["synthetic"] for p in cfg["strategies"].values() if p and "synthetic" in p})


def check_synthetic_sets(config: dict, name: str, cfg: dict) -> None:
    """A replayed synthetic set must be one the dataset_distillation study produces, on the
    run's dataset, for each of the run's seeds."""
    wanted = synthetic_sets(cfg)
    if not wanted:
        return
    dd = config.get("dataset_distillation") or {}
    made = {f"{m}_ipc{c['ipc']}" for m in dd.get("methods") or {} for c in dd.get("ipc") or []}
    key = f"continual.runs.{name}.strategies"
    missing = sorted(set(wanted) - made)
    if missing:
        raise ValueError(f"{key}: synthetic set(s) {missing} are not produced by dataset_distillation "
                         f"(available: {sorted(made) or 'none'})")
    if dd.get("dataset") != cfg["dataset"]:
        raise ValueError(f"{key}: synthetic sets are distilled from {dd.get('dataset')!r}, the run streams {cfg['dataset']!r}")
    extra = sorted(set(cfg["seeds"]) - set(config["seeds"]))
    if extra:
        raise ValueError(f"{key}: seeds {extra} have no synthetic set (dataset_distillation runs seeds {config['seeds']})")


def expert_run(runs: dict[str, dict], name: str) -> str | None:
    """The single-task-expert run of `name`'s setting (strategy `single_task`), if the
    config has one; None for that run itself. Its seeds must include `name`'s."""
    setting = runs[name]["setting"]
    found = sorted(n for n, r in runs.items() if r["setting"] == setting and "single_task" in r["strategies"])
    if not found or name in found:
        return None
    missing = sorted(set(runs[name]["seeds"]) - set(runs[found[0]]["seeds"]))
    if missing:
        raise ValueError(f"continual.runs.{found[0]}: the single-task experts of setting {setting!r} "
                         f"lack seeds {missing} of run {name!r}")
    return found[0]
