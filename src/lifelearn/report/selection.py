"""The report's hyper-parameter selection section (issue 13): for every tuned method, the
grid, each point's validation score per tuning seed, the chosen point and the budget, read
from the selection.json files the plan's `select` jobs wrote (lifelearn.tuning)."""
from __future__ import annotations

from pathlib import Path

from lifelearn.io import read_json
from lifelearn.report.markdown import md_table

INTRO = ("Methods with a `tune` block are trained once per grid point on the train split and scored "
         "on the **validation** split (a tuning job does not load the test split); the point with the "
         "best mean score over the tuning seeds (first in grid order among equals) is the one the final "
         "runs use. Methods compared by a claim spend the same budget (grid points x tuning seeds x "
         "epochs); a method without a `tune` block runs as configured.")


def point_text(point: dict) -> str:
    return ", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v}" for k, v in point.items())


def budget_text(budget: dict) -> str:
    seeds = ", ".join(map(str, budget["seeds"]))
    return (f"{budget['points']} points x {len(budget['seeds'])} seed(s) ({seeds}) x {budget['epochs']} epochs "
            f"= {budget['runs']} runs, {budget['epochs_total']} epochs")


def edge_keys(selection: dict) -> list[str]:
    """Grid keys of more than two numeric values whose chosen value is the grid's smallest or
    largest: the optimum may lie outside the grid (widen it)."""
    out = []
    for key, values in selection["grid"].items():
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numeric) > 2 and selection["chosen"][key] in (min(numeric), max(numeric)):
            out.append(key)
    return out


def method_table(selection: dict) -> str:
    """One tuned method: a row per grid point, its score per seed and mean, the chosen one marked."""
    seeds = selection["seeds"]
    header = ["point", *(f"{selection['metric']} seed {s}" for s in seeds), "mean", "chosen"]
    rows = [[point_text(p), *(f"{v:.4f}" for v in scores), f"{mean:.4f}",
             "**chosen**" if i == selection["chosen_index"] else ""]
            for i, (p, scores, mean) in enumerate(zip(selection["points"], selection["scores"],
                                                      selection["scores_mean"]))]
    head = (f"**{selection['study']} / `{selection['name']}`**: selected by {selection['mode']} "
            f"`{selection['metric']}` on the validation split; budget: {budget_text(selection['budget'])}; "
            f"chosen: {point_text(selection['chosen'])}.")
    edges = edge_keys(selection)
    if edges:
        head += (f" **At the edge of its grid:** {', '.join(f'`{k}`' for k in edges)} (the best value may lie "
                 "outside the values tried).")
    return "\n\n".join([head, md_table(header, rows)])


def selection_section(jobs: list, root: str | Path = ".") -> str:
    """'## Hyper-parameter selection' over the plan's select jobs whose selection.json exists."""
    root = Path(root)
    files = [root / f for j in jobs if j.step == "select" for f in j.outputs["selection"]]
    tables = [method_table(read_json(f)) for f in files if f.exists()]
    if not tables:
        return ""
    missing = [str(f) for f in files if not f.exists()]
    note = [f"Not yet selected: {', '.join(missing)}."] if missing else []
    return "\n\n".join(["## Hyper-parameter selection", INTRO, *tables, *note])
