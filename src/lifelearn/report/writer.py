"""Write a study report: claim verdicts, one section per study and stage, provenance.

Figures and claims.json are written first and README.md last, each atomically, so a
README that exists belongs to a finished report. Text depends only on the inputs.
"""
from __future__ import annotations

import re
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from lifelearn.io import read_json, write_json, write_text
from lifelearn.report.claims import VERDICT_RULE, evaluate_claims, holm_family_text, interval_text
from lifelearn.report.ledger import ledger_section, plan
from lifelearn.report.selection import selection_section
from lifelearn.report.markdown import md_table, number
from lifelearn.report.results import load_histories, load_results
from lifelearn.report.sections import generic

Section = Callable[[pd.DataFrame, pd.DataFrame, Path, dict], str]
DATA_DIFFERS = ("regenerated data differs from the version recorded in data.dvc; "
                "results are not comparable to the committed report")


def section_of(study: str) -> Section:
    """The `section` of lifelearn.report.sections.<study>, or the generic one when the
    study has no module there."""
    name = f"{generic.__package__}.{study}"
    if study.isidentifier() and find_spec(name) is not None:
        return import_module(name).section
    return generic.section


def criterion(c: dict) -> str:
    """'A - B > margin', naming a control as 'control `name`' and a constant by its value."""
    op = ">" if c["direction"] == "greater" else "<"
    if c.get("control") is not None:
        base = f"control `{c['control']}`"
    else:
        base = c["b"] if c["b"] is not None else number(c["value"], "{:g}")
    return f"{c['a']} - {base} {op} {c['margin']:g}"


def permutation_text(c: dict) -> str:
    """The permutation p-value, '(MC)' when it is a Monte-Carlo estimate."""
    if c.get("perm_p") is None:
        return "n/a"
    return f"{c['perm_p']:.3g}" + (" (MC)" if c["perm_method"] == "monte carlo" else "")


def seeds_needed_text(c: dict) -> str:
    """Seeds needed for 80% power: blank unless computed (inconclusive intervals), 'n/a'
    for an inconclusive claim without a finite number."""
    if c["seeds_needed"] is not None:
        return str(c["seeds_needed"])
    return "n/a" if c["verdict"] == "inconclusive" else ""


def paper_effect_text(c: dict) -> str:
    """'yes (+0.0276; 6 seeds)' / 'no (...)' for a claim with the paper's effect, blank otherwise."""
    if c.get("paper_effect") is None:
        return ""
    if c.get("paper_resolvable") is None:
        return f"n/a ({c['paper_effect']:+g})"
    needed = c["paper_seeds_needed"]
    return (f"{'yes' if c['paper_resolvable'] else '**no**'} ({c['paper_effect']:+g}; needs "
            f"{needed if needed is not None else 'n/a'} seeds)")


def holm_text(c: dict) -> str:
    """The Holm verdict, with the adjusted p when there is one."""
    p = "" if c.get("holm_p") is None else f" (p {c['holm_p']:.3g})"
    return f"**{c['holm_verdict']}**{p}"


def claims_section(claims: list[dict]) -> str:
    """Verdict table of all evaluated claims, with the verdict rule and the power columns."""
    if not claims:
        return "## Paper claims\n\nNo claims configured."
    header = ["id", "statement", "source", "metric", "criterion", "mean A", "mean B / control / value",
              "mean diff [95% CI]", "seeds won / n", "MDE (80% power)", "seeds needed",
              "paper's effect resolvable", "permutation p", "verdict", "Holm verdict", "note"]
    rows = [[c["id"], c["statement"], c["source"], c["metric"], criterion(c), number(c["mean_a"]),
             number(c["mean_b"]), interval_text(c), f"{c['seeds_won']}/{c['n']}", number(c["mde"]),
             seeds_needed_text(c), paper_effect_text(c),
             permutation_text(c), f"**{c['verdict']}**", holm_text(c), c["note"]] for c in claims]
    return "\n\n".join(filter(None, ["## Paper claims", VERDICT_RULE, md_table(header, rows), holm_family_text(claims)]))


def study_sections(df: pd.DataFrame, hist: pd.DataFrame, out_dir: Path, config: dict) -> list[str]:
    """One section per (study, stage), in sorted order, written by the study's section module."""
    parts = []
    for (study, stage), sub in df.groupby(["study", "stage"], sort=True):
        h = hist[(hist["study"] == study) & (hist["stage"] == stage)]
        parts.append(section_of(study)(sub, h, out_dir, config))
    return parts


def _data_lines(data_version: dict | None) -> list[str]:
    if data_version is None:
        return ["- Data version: not recorded."]
    status = data_version.get("status")
    lines = [f"- Data version (data.dvc md5): `{data_version.get('committed_md5')}`, "
             f"status: **{status}**"]
    lines += [f"  - `{k}`: `{v}`" for k, v in sorted(data_version.get("datasets", {}).items())]
    if status == "differs":
        lines.append(f"\n> **Warning:** {DATA_DIFFERS}.")
    elif status == "no data.dvc":
        lines.append("\nNo data.dvc is committed, so the data cannot be checked "
                     "against a recorded version.")
    return lines


def provenance_section(config: dict, df: pd.DataFrame, data_version: dict | None,
                       commits: list[str]) -> str:
    """Profile, the git commits the results came from, data version, MLflow run ids
    and the resolved config."""
    commit = ", ".join(f"`{c}`" for c in commits) or "`unknown`"
    runs = md_table(["study", "stage", "name", "seed", "MLflow run id"],
                    df[["study", "stage", "name", "seed", "run_id"]].itertuples(index=False))
    return "\n".join([
        "## Provenance", "",
        f"- Profile: `{config.get('profile', 'unknown')}`",
        f"- Git commit(s) the results were produced at: {commit}",
        *_data_lines(data_version), "",
        f"<details><summary>MLflow run ids ({len(df)} runs)</summary>", "", runs, "",
        "</details>", "",
        "### Resolved config", "",
        "```yaml", yaml.safe_dump(config, sort_keys=True).rstrip(), "```",
    ])


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def contents(sections: list[str]) -> str:
    """Links to every '## ' heading of `sections`, in order."""
    headings = [line[3:] for part in sections for line in part.splitlines() if line.startswith("## ")]
    return "**Contents:** " + " · ".join(f"[{h}](#{_anchor(h)})" for h in headings)


def definitions_section(config: dict) -> str:
    """Every metric of the report: the continual ones as formulas (from the code that
    computes them), the others in words."""
    from lifelearn.evaluate.continual_metrics import metric_definitions

    windows = ((config.get("continual") or {}).get("evaluation") or {}).get("windows", [10, 100])
    lines = ["## Metric definitions", "",
             "Classification: **test acc** = accuracy on the held-out test split of the last epoch (no "
             "selection on test); **PGD acc** = accuracy under an L-inf PGD attack; **weighted robust "
             "acc** = (clean + PGD) / 2; **AutoAttack acc** = accuracy on the first n test points when "
             "every attack of the standard L-inf AutoAttack (as ART provides it) is tried and a point counts "
             "only if it survives all, **weighted robust acc, AA** = (clean acc on the same n points + "
             "AutoAttack acc) / 2. Continual learning (lifelearn.evaluate.continual_metrics; T tasks, "
             "R_{i,j} accuracy on task j after task i, a_j(t) stream accuracy of task j at iteration t, "
             "b_j accuracy of a random initialisation, LL / STE the run / the single-task expert):", ""]
    lines += [f"- `{key}`: ${formula}$" for key, formula in metric_definitions(windows).items()]
    return "\n".join(lines)


FIGURE = re.compile(r"^!\[(?P<stem>[^\]]+)\]\(figures/[^)]+\)\n\n\*(?P<caption>.+?)\.\*$", re.MULTILINE)


def figure_captions(text: str) -> dict[str, str]:
    """{figure stem: caption} of every figure in a README written by this module."""
    return {m["stem"]: m["caption"] for m in FIGURE.finditer(text)}


def captions_rst(captions: dict[str, str]) -> str:
    """The caption file of `snakemake --report` (Jinja over RST): the README's caption of
    the figure being rendered, verbatim."""
    blocks = [f'{{% if snakemake.wildcards.figure == "{stem}" %}}{{% raw %}}{_rst_escape(text)}.{{% endraw %}}{{% endif %}}'
              for stem, text in sorted(captions.items())]
    return "\n".join(blocks) + "\n"


def _rst_escape(text: str) -> str:
    return re.sub(r"([\\`*_|])", r"\\\1", text)


def write_report(config: dict, metric_paths, history_paths, data_version_path,
                 out_dir: str | Path, captions_path: str | Path | None = None, root: str | Path = ".") -> Path:
    """Write out_dir/figures/*.png, out_dir/claims.json, the figure captions for
    `snakemake --report` (`captions_path`) and, last, out_dir/README.md. `root`: the
    directory the plan's paths (data/, checkpoints/) are relative to, for the protocol ledger."""
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)  # a rule output even when no section draws one
    metric_paths, history_paths = list(metric_paths), list(history_paths)
    df = load_results(metric_paths)
    hist = load_histories(history_paths, metric_paths)
    claims = evaluate_claims(config.get("claims") or [], df)
    commits = sorted({read_json(p).get("git_commit") or "unknown" for p in metric_paths})
    write_json(out_dir / "claims.json", claims)
    data_version = None if data_version_path is None else read_json(data_version_path)
    jobs = plan(config)
    sections = [claims_section(claims), ledger_section(claims, df, config, root, jobs),
                selection_section(jobs, root),
                *study_sections(df, hist, out_dir, config),
                definitions_section(config), provenance_section(config, df, data_version, commits)]
    sections = [part for part in sections if part]
    text = "\n\n".join([f"# lifelearn report: profile `{config.get('profile', 'unknown')}`",
                         contents(sections), *sections]) + "\n"
    if captions_path is not None:
        write_text(captions_path, captions_rst(figure_captions(text)))
    readme = out_dir / "README.md"
    write_text(readme, text)
    return readme


def run_snakemake_report(smk) -> None:
    """The body of the `report` rule (workflow/scripts/report.py, directly or in a warm
    child, lifelearn.warm): write the report and record it as an MLflow run of its own; the
    job's wall time split into phases beside its benchmark file (lifelearn.phases;
    start-up: until here)."""
    from lifelearn.io import output_to
    from lifelearn.phases import job_phases, phases_path
    from lifelearn.tracking import RunContext, tracked_run

    with job_phases(phases_path(smk.config["profile"], smk.rule), smk.rule), output_to(smk.log[0]):
        config = smk.params.config
        out_dir = Path(smk.output.readme).parent
        readme = write_report(config, smk.input.metrics, smk.input.history, smk.input.data_version, out_dir,
                              smk.output.captions)
        data_version = read_json(smk.input.data_version).get("committed_md5") or "none"
        ctx = RunContext.for_job(config["profile"], data_version, rule=smk.rule)
        with tracked_run(ctx, "report", f"report/{config['profile']}", {"stage": "report"},
                         {"claims": len(config["claims"])}) as run:
            run.log_artifact(readme)
            run.log_artifact(smk.output.claims)
            for figure in sorted(Path(smk.output.figures).glob("*.png")):
                run.log_artifact(figure, "figures")
