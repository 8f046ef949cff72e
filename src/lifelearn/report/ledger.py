"""The protocol ledger of each claim (issue 13): the choices behind its numbers that explain
most "I can't get the paper's number" threads, for each method the claim compares.

Data-driven: the jobs come from the plan (`lifelearn.studies.<study>.jobs` over the resolved
config, what the Snakefile runs), matched to the results by the directory of their
metrics.json; a job's settings are read from its spec or, when it trained nothing itself
(an evaluation job), from the jobs upstream of it; test sizes from data/<dataset>/meta.json
and checkpoint md5s from the files, each only where present.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lifelearn.io import md5_file, read_json
from lifelearn.jobs import JobSpec, Layout
from lifelearn.report.markdown import md_table
from lifelearn.studies import study

REPORTED_EPOCH = "last (no checkpoint or epoch selection)"
FIELDS = ("reported epoch", "selection split", "seeds", "epochs", "batch size", "training attack",
          "evaluation attack", "test samples", "teacher / expert checkpoints (md5)")


def plan(config: dict) -> list[JobSpec]:
    """Every job of every study of the resolved config."""
    layout = Layout(config.get("profile", "default"))
    return [job for name in config.get("studies", []) for job in study(name).jobs(config, layout)]


def _norm(path) -> str:
    return os.path.normpath(str(path))


def producing_job(jobs: list[JobSpec], result_dirs) -> JobSpec | None:
    """The job whose reported metrics files lie in one of `result_dirs`."""
    dirs = {_norm(d) for d in result_dirs}
    return next((j for j in jobs if any(_norm(Path(p).parent) in dirs
                                        for p in j.report_inputs().get("metrics", []))), None)


def _inputs(job: JobSpec) -> list[str]:
    return [str(p) for files in job.inputs.values() for p in files]


def upstream(job: JobSpec, jobs: list[JobSpec]) -> list[JobSpec]:
    """`job`, then breadth first the jobs that made its inputs, through every input but a
    checkpoint (.pt: a trained model is where the chain of a result stops)."""
    made_by = {_norm(p): j for j in jobs for files in j.outputs.values() for p in files}
    chain, todo = [], [job]
    while todo:
        current = todo.pop(0)
        if current not in chain:
            chain.append(current)
            todo += [made_by[_norm(p)] for p in _inputs(current) if not p.endswith(".pt") and _norm(p) in made_by]
    return chain


def setting(chain: list[JobSpec], key: str):
    """The first value of `key` in the specs of `chain`, at the top of a spec or one level down."""
    for job in chain:
        for section in (job.spec, *(v for v in job.spec.values() if isinstance(v, dict))):
            if key in section:
                return section[key]
    return None


def attack_text(attack: dict | None) -> str:
    if not attack:
        return "none"
    return (f"PGD-{attack['steps']}, eps {attack['eps']:g}, step {attack['step_size']:g}, "
            f"{attack.get('random_start', 'uniform')} start")


def autoattack_text(autoattack: dict | None) -> str:
    """'; AutoAttack (...)' for an evaluation that also ran AutoAttack, else ''."""
    if not autoattack:
        return ""
    from lifelearn.evaluate.autoattack import autoattack_settings

    s = autoattack_settings(autoattack)
    return (f"; AutoAttack (standard L-inf, ART: {', '.join(s['attacks'])}; Square only on image inputs), "
            f"eps {s['eps']:g}")


def sample_text(chain: list[JobSpec], data_dir: Path) -> str:
    """Test split sizes from data/<dataset>/meta.json, AutoAttack's subset and the continual
    evaluation's subset."""
    names = dict.fromkeys(d for job in chain for d in job.datasets)
    sizes = [f"{n}: {read_json(data_dir / n / 'meta.json')['splits']['test']}" for n in names
             if (data_dir / n / "meta.json").exists()]
    autoattack = setting(chain, "autoattack")
    if isinstance(autoattack, dict) and "samples" in autoattack:
        sizes.append(f"AutoAttack: the first {autoattack['samples']}")
    stream = setting(chain, "eval")
    if isinstance(stream, dict) and "subset" in stream:
        sizes.append(f"stream: every {stream['every']} iteration(s) on <= {stream['subset']} per task")
    return "; ".join(sizes) or "n/a"


def selection_text(chain: list[JobSpec], root: Path) -> str:
    """How the chain's hyper-parameters were chosen: by a tuning sweep on val (its metric,
    budget and choice), or not at all."""
    from lifelearn.report.selection import budget_text, point_text

    select = next((j for j in chain if j.step == "select"), None)
    if select is None:
        return "none: hyper-parameters as configured"
    text = f"validation, `{select.spec['metric']}` ({budget_text(select.spec['budget'])})"
    path = root / select.outputs["selection"][0]
    return text + (f"; chosen {point_text(read_json(path)['chosen'])}" if path.exists() else "")


def checkpoint_text(chain: list[JobSpec], root: Path) -> str:
    """Each checkpoint the chain reads, by directory: 'dir/: seed0 `md5[:12]`, ...'."""
    paths = dict.fromkeys(p for job in chain for p in _inputs(job) if p.endswith(".pt"))
    by_dir: dict[str, list[str]] = {}
    for p in paths:
        md5 = md5_file(root / p)[:12] if (root / p).exists() else "not found"
        by_dir.setdefault(str(Path(p).parent), []).append(f"{Path(p).stem} `{md5}`")
    return "; ".join(f"{d}/: {', '.join(items)}" for d, items in by_dir.items()) or "none"


def method_ledger(rows: pd.DataFrame, jobs: list[JobSpec], data_dir: Path, root: Path) -> dict[str, str]:
    """FIELDS of one method of a claim, from its result rows and the job that produced them."""
    seeds = ", ".join(str(s) for s in sorted(rows["seed"].unique())) or "none"
    job = producing_job(jobs, rows["result_dir"]) if "result_dir" in rows else None
    if job is None:
        return dict.fromkeys(FIELDS, "n/a") | {"reported epoch": REPORTED_EPOCH, "seeds": seeds}
    chain = upstream(job, jobs)
    train = setting(chain, "train") or {}
    return dict(zip(FIELDS, [
        REPORTED_EPOCH, selection_text(chain, root),
        seeds, str(train.get("epochs", "n/a")), str(train.get("batch_size", "n/a")),
        attack_text(setting(chain, "attack")),
        attack_text(setting(chain, "eval_attack")) + autoattack_text(setting(chain, "autoattack")),
        sample_text(chain, data_dir), checkpoint_text(chain, root)]))


def claim_methods(claim: dict) -> list[tuple[str, str]]:
    """(role, method) of the methods a claim compares: A, then B or the control."""
    roles = [("A", claim["a"])]
    for key, role in (("b", "B"), ("control", "control")):
        if claim.get(key):
            roles.append((role, claim[key]))
    return roles


def claim_ledger(claim: dict, results: pd.DataFrame, jobs: list[JobSpec], data_dir: Path, root: Path) -> dict:
    """{f"{role} `{method}`": method_ledger} for each method of `claim`."""
    out = {}
    for role, name in claim_methods(claim):
        rows = results[(results["study"] == claim["study"]) & (results["name"] == name)]
        if claim.get("stage"):
            rows = rows[rows["stage"] == claim["stage"]]
        out[f"{role} `{name}`"] = method_ledger(rows, jobs, data_dir, root)
    return out


def ledger_section(claims: list[dict], results: pd.DataFrame, config: dict, root: str | Path = ".",
                   jobs: list[JobSpec] | None = None) -> str:
    """'## Protocol ledger': one collapsible table per claim (rows FIELDS, a column per method)."""
    root = Path(root)
    jobs = plan(config) if jobs is None else jobs
    parts = ["## Protocol ledger",
             "What each claim's numbers rest on, per method, from the plan of the resolved config and the "
             "results: the epoch reported, the split hyper-parameters were selected on, the seeds with "
             "results, the training schedule, the attacks, the test samples and the checkpoints read."]
    for claim in claims:
        ledger = claim_ledger(claim, results, jobs, root / "data", root)
        if all(m["seeds"] == "none" for m in ledger.values()):
            parts.append(f"`{claim['id']}`: no results.")
            continue
        table = md_table(["", *ledger], [[f, *(m[f] for m in ledger.values())] for f in FIELDS])
        parts.append(f"<details><summary><code>{claim['id']}</code></summary>\n\n{table}\n\n</details>")
    return "\n\n".join(parts)
