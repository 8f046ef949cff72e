"""Hyper-parameter selection on the validation split, as a pipeline stage (issue 13).

A method entry (`tgeo_kd.methods.<m>`, `mtard.methods.<m>`, `continual.runs.<r>`) may carry

    tune:
      grid: {alpha: [0.5, 0.9], tau: [2.0, 4.0]}  # dotted keys of the entry (train.<key>: the
                                                  # method's training settings); every combination
      metric: val_acc        # the selection metric, computed on the VALIDATION split only
      mode: max              # max (default) or min
      seeds: [3]             # the seeds each candidate trains (the budget's second factor)
      epochs: 20             # each candidate's training epochs (default: the entry's own)

`plan` turns such an entry into jobs: the candidates, one per grid point, each training on
the train split with the test split not even loaded (`data.load_dataset(..., splits=
TUNING_SPLITS)`) and recording the validation metrics; one `select` job (`<rule>_select`)
writing selection.json (every point's validation scores, the chosen point, the budget) and
grouping the candidates' MLflow runs under one sweep run; and the method's final job, which
reads selection.json and runs with the chosen values (`selected_spec`; its own spec holds
TUNED for each grid key). Editing a grid key's configured value reruns nothing.

Candidates per job (config key `tuning.candidates_per_job`): the `sweep` job
`<rule>_tune<j>` trains candidates j*n .. j*n+n-1 one after another in one process
(`sweep_candidates`, run by lifelearn.studies.run_job), each with its own MLflow runs, checkpoints and metrics.json, exactly
as a job of its own would (a candidate's results do not depend on its neighbours: every
seed seeds its own generators). 0 (the default profile) puts a method's whole grid in one
job: at embedded scale a job's fixed cost (interpreter, imports, MLflow store) is several
times a candidate's training (issue 16). 1 (the paper profile) gives each candidate its own
job, so a cluster runs them side by side. A job's params are its candidates' specs (each
the entry with its point applied), so editing one grid value reruns the jobs holding the
candidates it changes, the selection, the final job and the report.

Selection: the mean over the tuning seeds of `metric`; ties go to the first point in grid
order (the grid's keys in their config order, the last key varying fastest). The budget of a
method is (grid points, tuning seeds, epochs); `check_budgets` makes the two sides of every
claim between tuned methods spend the same one (issue 13: baselines at their best, on the
same budget as the proposed method).
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

TUNING_SPLITS = ("train", "val")  # what a tuning job loads: never the test split
SWEEP = "sweep"  # the step of a job training one or more candidates (each run as step "tune")
SELECTION_FILE = "selection.json"
TUNED = "tuned"  # a final job's value of a grid key: the selection's choice replaces it
CODE = ("tuning.py",)


def key_path(spec: dict, entry_path: tuple[str, ...], dotted: str) -> tuple[str, ...]:
    """Where grid key `dotted` lives in a job's spec: under the method's entry, except
    `train.<key>` when the entry has no `train` of its own: the method's training settings."""
    parts = tuple(dotted.split("."))
    if parts[0] == "train" and "train" not in _get(spec, entry_path):
        return parts
    return (*entry_path, *parts)


def check_key(spec: dict, path: tuple[str, ...], dotted: str, where: str) -> None:
    node = spec
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"{where}.tune.grid: {dotted!r} is not a key of {where} (or train.<key>)")
        node = node[part]


def points(tune: dict, spec: dict, entry_path: tuple[str, ...], where: str) -> list[dict]:
    """Every combination of the grid's values ({dotted key: value}), in grid order; every
    key must exist in the spec (key_path)."""
    grid = tune.get("grid") or {}
    if not grid:
        raise ValueError(f"{where}.tune.grid: give at least one key with a list of values")
    for key, values in grid.items():
        check_key(spec, key_path(spec, entry_path, key), key, where)
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}.tune.grid.{key}: a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def apply_point(spec: dict, entry_path: tuple[str, ...], point: dict) -> dict:
    """`spec` with each grid key of `point` set to its value (a new dict; `spec` unchanged)."""
    for key, value in point.items():
        spec = _set(spec, key_path(spec, entry_path, key), value)
    return spec


def budget(tune: dict, epochs: int) -> dict:
    """What a sweep spends: grid points, tuning seeds, epochs per candidate, candidate-seed runs."""
    n = math.prod(len(v) for v in tune["grid"].values())
    seeds = list(tune["seeds"])
    e = int(tune.get("epochs", epochs))
    return {"points": n, "seeds": seeds, "epochs": e, "runs": n * len(seeds), "epochs_total": n * len(seeds) * e}


def select(scores: list[list[float]], mode: str = "max") -> int:
    """Index of the best point by its mean score over seeds (first of equals); NaN never wins."""
    if mode not in ("max", "min"):
        raise ValueError(f"tune.mode: 'max' or 'min', got {mode!r}")
    means = [sum(s) / len(s) if s and all(math.isfinite(v) for v in s) else math.nan for s in scores]
    finite = [i for i, m in enumerate(means) if math.isfinite(m)]
    if not finite:
        raise ValueError("tuning: no candidate has a finite validation score")
    sign = 1 if mode == "max" else -1
    return max(finite, key=lambda i: (sign * means[i], -i))


def candidates_per_job(config: dict) -> int:
    """Config key `tuning.candidates_per_job`: candidates one sweep job trains (0: all)."""
    return int((config.get("tuning") or {}).get("candidates_per_job", 0))


def plan(rule: str, name: str, spec: dict, entry_path: tuple[str, ...], seeds: list, where: str,
         make_job: Callable, selection_dir: str, per_job: int = 0) -> list:
    """The jobs of one method: its sweep jobs (`per_job` candidates each, 0: all in one) and
    selection when its entry has a `tune` block, then its final job; without one, just the
    final job, the entry unchanged.

    `spec[entry_path]` is the method's entry; `make_job(spec, seeds, out_name, step, rule)`
    builds the study's JobSpec for a configuration (its inputs and outputs under `out_name`).
    """
    from dataclasses import replace

    from lifelearn.jobs import COMMON_CODE, JobSpec

    entry = _get(spec, entry_path)
    tune = entry.get("tune") if isinstance(entry, dict) else None
    if not tune:
        return [make_job(spec, seeds, name, "train", rule)]
    base = _set(spec, entry_path, {k: v for k, v in entry.items() if k != "tune"})
    grid = points(tune, base, entry_path, where)
    b = budget(tune, base["train"]["epochs"])
    candidates = []
    for i, point in enumerate(grid):
        cand = apply_point(base, entry_path, point)
        cand = cand | {"train": {**cand["train"], "epochs": b["epochs"]}, "tuning": {"index": i, "point": point}}
        candidates.append(make_job(cand, b["seeds"], f"tuning/{name}/c{i}", "tune", f"{rule}_tune{i}"))
    selection = f"{selection_dir}/{name}/{SELECTION_FILE}"
    select_spec = {"where": where, "grid": tune["grid"], "points": grid, "metric": tune["metric"],
                   "mode": tune.get("mode", "max"), "budget": b}
    select_job = JobSpec(candidates[0].study, "select", name, f"{rule}_select", spec=select_spec, seeds=b["seeds"],
                         outputs={"selection": [selection]}, code=(*CODE, *COMMON_CODE), training=False,
                         inputs={"candidates": [f for c in candidates for f in c.outputs["metrics"]]},
                         report={"extra": [selection]})
    # the final job's grid keys read TUNED: their configured values never reach it, so editing
    # one reruns nothing; its values come from selection.json, an input (selected_spec)
    final_spec = apply_point(base, entry_path, dict.fromkeys(tune["grid"], TUNED))
    final = make_job(final_spec, seeds, name, "train", rule)
    final = replace(final, inputs={**final.inputs, "selection": [selection]})
    return [*sweep_jobs(candidates, per_job, rule), select_job, final]


def sweep_jobs(candidates: list, per_job: int, rule: str) -> list:
    """The candidates' JobSpecs grouped `per_job` to a job (0: all): job j is rule
    `<rule>_tune<j>`, step SWEEP, its spec {"candidates": [each candidate's spec]}, its
    outputs each candidate's as `c<i>_<key>` (i: the grid index); the candidates share
    their inputs, datasets and code (the grid sets hyper-parameters only)."""
    from dataclasses import replace

    if per_job < 0:
        raise ValueError(f"tuning.candidates_per_job: 0 (all in one job) or a positive count, got {per_job}")
    size = per_job or len(candidates)
    jobs = []
    for j, start in enumerate(range(0, len(candidates), size)):
        group = candidates[start:start + size]
        first = group[0]
        for other in group[1:]:
            for attr in ("inputs", "datasets", "code", "trainer", "seeds"):
                if getattr(other, attr) != getattr(first, attr):
                    raise ValueError(f"{other.rule}: tuning candidates of one sweep differ in {attr} "
                                     "(a grid key must not change what a job reads)")
        outputs = {f"c{c.spec['tuning']['index']}_{key}": files for c in group for key, files in c.outputs.items()}
        jobs.append(replace(first, step=SWEEP, rule=f"{rule}_tune{j}", outputs=outputs,
                            spec={"candidates": [c.spec for c in group]},
                            report={}))  # the report reads the selection, not the candidates
    return jobs


def sweep_candidates(job, paths) -> list[tuple]:
    """The (job, paths) of each candidate of a sweep job: step `tune`, the candidate's spec,
    the job's inputs and the candidate's own outputs (the `c<i>_` prefix removed)."""
    from dataclasses import replace

    from lifelearn.jobs import Paths

    out = []
    for spec in job.spec["candidates"]:
        prefix = f"c{spec['tuning']['index']}_"
        outputs = {k[len(prefix):]: v for k, v in paths.outputs.items() if k.startswith(prefix)}
        out.append((replace(job, step="tune", spec=spec), Paths(paths.inputs, outputs)))
    return out


def _get(spec: dict, path: tuple[str, ...]):
    for part in path:
        spec = spec[part]
    return spec


def _set(spec: dict, path: tuple[str, ...], value) -> dict:
    """A copy of `spec` with spec[path] = value (the dicts along the path copied)."""
    if not path:
        return value
    return {**spec, path[0]: _set(spec[path[0]], path[1:], value)}


def selected_spec(spec: dict, entry_path: tuple[str, ...], paths) -> tuple[dict, dict | None]:
    """The final job's spec with the chosen point of its selection.json applied (unchanged
    without one), and the selection."""
    from lifelearn.io import read_json

    files = paths.input("selection")
    if not files:
        return spec, None
    selection = read_json(files[0])
    return apply_point(spec, entry_path, selection["chosen"]), selection


def run_name(job) -> str:
    """A run's name in MLflow and on disk: `tuning/<name>/c<i>` for candidate i, else the name."""
    return f"tuning/{job.name}/c{job.spec['tuning']['index']}" if job.step == "tune" else job.name


def split(job) -> str:
    """The split a job evaluates on: val for a tuning candidate, test otherwise."""
    return "val" if job.step == "tune" else "test"


def tuned_params(selection: dict | None) -> dict:
    """MLflow params of a final run saying what its values were selected from."""
    if not selection:
        return {}
    return {"tuned": {"chosen": selection["chosen"], "metric": selection["metric"],
                      "score": selection["scores_mean"][selection["chosen_index"]],
                      "points": len(selection["points"]), "seeds": selection["budget"]["seeds"]}}


# ------------------------------------------------------------------------ the select step
def run_select(job, paths) -> list:
    """Read every candidate's records, pick the best point by its validation score, write
    selection.json and nest the candidates' MLflow parent runs under one sweep run."""
    from lifelearn.io import write_json
    from lifelearn.jobs import RunRecord

    spec, n_seeds = job.spec, len(job.seeds)
    files = paths.input("candidates")
    if len(files) != len(spec["points"]) * n_seeds:
        raise ValueError(f"{spec['where']}: {len(files)} candidate records for {len(spec['points'])} points "
                         f"x {n_seeds} seeds")
    records = [RunRecord.read(f) for f in files]
    metric = spec["metric"]
    scores = []
    for i in range(len(spec["points"])):
        group = records[i * n_seeds:(i + 1) * n_seeds]
        missing = [str(files[i * n_seeds + k]) for k, r in enumerate(group) if metric not in r.metrics]
        if missing:
            raise ValueError(f"{spec['where']}.tune.metric: {metric!r} is not in {missing[0]} "
                             f"(has: {', '.join(sorted(group[0].metrics))})")
        scores.append([float(r.metrics[metric]) for r in group])
    best = select(scores, spec["mode"])
    selection = {"study": job.study, "name": job.name, "where": spec["where"], "metric": metric,
                 "mode": spec["mode"], "split": "val", "grid": spec["grid"], "points": spec["points"],
                 "seeds": list(job.seeds), "scores": scores,
                 "scores_mean": [sum(s) / len(s) for s in scores], "chosen_index": best,
                 "chosen": spec["points"][best], "budget": spec["budget"],
                 "candidate_runs": [[r.run_id for r in records[i * n_seeds:(i + 1) * n_seeds]]
                                    for i in range(len(spec["points"]))]}
    selection["sweep_run_id"] = log_sweep(job, selection)
    write_json(paths.output("selection")[0], selection)
    print(f"{spec['where']}: chose {selection['chosen']} ({metric} {selection['scores_mean'][best]:.4f} "
          f"on val, {len(spec['points'])} points x {n_seeds} seeds)")
    return []


def log_sweep(job, selection: dict) -> str | None:
    """One MLflow run for the sweep (params: grid, metric, budget; metrics: each point's mean
    validation score, the chosen one's), with each candidate's configuration run (the parent
    of its seed runs) nested under it. Returns its id; None when the store lacks the runs."""
    from mlflow.exceptions import MlflowException

    from lifelearn.tracking import PARENT_RUN_TAG, RUN_LEVEL_TAG, _client, _create_run, log_points, experiment_id

    uri = job.ctx.tracking_uri
    client = _client(uri)
    exp_id = experiment_id(uri, job.study)
    run_id = _create_run(client, exp_id, f"tuning/{job.name}",
                         job.ctx.tags(stage="tuning", name=job.name, **{RUN_LEVEL_TAG: "sweep"}),
                         {"grid": selection["grid"], "metric": selection["metric"], "mode": selection["mode"],
                          "budget": selection["budget"], "chosen": selection["chosen"]})
    points = [(f"{selection['metric']}_c{i}", m, 0) for i, m in enumerate(selection["scores_mean"])]
    points.append((f"{selection['metric']}_chosen", selection["scores_mean"][selection["chosen_index"]], 0))
    log_points(client, run_id, points)
    for seed_runs in selection["candidate_runs"]:
        try:
            parent = client.get_run(seed_runs[0]).data.tags.get(PARENT_RUN_TAG)
        except MlflowException:
            continue
        if parent:
            client.set_tag(parent, PARENT_RUN_TAG, run_id)
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def check_budgets(claims: list[dict], tunes: dict[str, dict], epochs: dict[str, int], study: str) -> None:
    """Both sides of every claim of `study` comparing two methods with tune blocks spend the
    same budget (points, seeds, epochs); a tuned method against an untuned one that has
    hyper-parameters to tune is the caller's to forbid (its entry names them)."""
    for claim in claims:
        if claim.get("study") != study:
            continue
        a, b = claim.get("a"), claim.get("b") or claim.get("control")
        if a in tunes and b in tunes:
            ba, bb = (budget(tunes[m], epochs[m]) for m in (a, b))
            keys = ("points", "seeds", "epochs")
            if any(ba[k] != bb[k] for k in keys):
                raise ValueError(f"claim {claim['id']!r}: {a} and {b} must have the same tuning budget; "
                                 f"{a}: {[ba[k] for k in keys]}, {b}: {[bb[k] for k in keys]} (points, seeds, epochs)")


def borrowed_selection(entries: dict, name: str, entry: dict, entry_path: tuple[str, ...], where: str,
                       selection_dir: str) -> tuple[dict, str | None]:
    """An entry with `tune_from: <other>` (a control, e.g. the no-switch stream of a tuned
    run) takes <other>'s selected values instead of tuning its own: its spec holds TUNED at
    <other>'s grid keys, and its final job reads <other>'s selection.json (the path returned),
    so the control trains with exactly the values the real entry chose. (spec, None) when
    the entry has no `tune_from`."""
    source = entry.get("tune_from")
    if not source:
        return entry, None
    if entry.get("tune"):
        raise ValueError(f"{where}.tune_from: an entry takes another's selection or tunes its own, not both")
    if source not in entries or not entries[source].get("tune"):
        raise ValueError(f"{where}.tune_from: {source!r} is not an entry with a tune block")
    grid = entries[source]["tune"]["grid"]
    for key in grid:
        check_key(entry, key_path(entry, entry_path, key), key, where)
    return apply_point(entry, entry_path, dict.fromkeys(grid, TUNED)), f"{selection_dir}/{source}/{SELECTION_FILE}"
