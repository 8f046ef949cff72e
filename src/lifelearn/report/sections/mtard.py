"""Report section of the MTARD study (stage `mtard`): clean / PGD-20 / AutoAttack / weighted
robust accuracy per method and teacher (mean ± std over seeds), an accuracy-vs-robustness
scatter (AutoAttack where measured), and the trajectories of MTARD's balances
(temperatures and weights per epoch)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lifelearn.io import read_json
from lifelearn.report.figures import BAND, _save
from lifelearn.report.markdown import figure, md_table, mean_std
from lifelearn.report.results import scalar_metrics
from lifelearn.stats import t_interval

ACC = [("test_clean_acc", "clean acc (%)"), ("test_pgd_acc", "PGD acc (%)"),
       ("test_weighted_robust_acc", "weighted robust acc, PGD (%)"),
       ("test_autoattack_clean_acc", "clean acc, AA subset (%)"), ("test_autoattack_acc", "AutoAttack acc (%)"),
       ("test_autoattack_weighted_robust_acc", "weighted robust acc, AA (%)")]
BALANCES = [("tau_adv", "tau_adv"), ("tau_nat", "tau_nat"), ("w_adv", "w_adv"), ("w_nat", "w_nat")]


def teacher_rows(df: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The study's teachers' metrics, read beside the students' results
    (results/<profile>/teachers/<name>/seed<k>/metrics.json, inputs of the report)."""
    results_root = Path(df["result_dir"].iloc[0]).parents[2]
    study = config.get("mtard") or {}
    seeds = set(df["seed"])  # the teachers of the students' seeds only
    rows = []
    for role, name in sorted(study.get("teachers", {}).items()):
        for path in sorted((results_root / "teachers" / name).glob("seed*/metrics.json")):
            data = read_json(path)
            if data["seed"] not in seeds:
                continue
            metrics = scalar_metrics(data.get("metrics", {}))
            metrics.setdefault("test_clean_acc", metrics.get("test_acc"))
            rows.append({"name": f"{role} teacher ({name})", "seed": data["seed"], **metrics})
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["name", "seed"])


def _seconds(g: pd.DataFrame, column: str) -> str:
    return f"{g[column].mean():.1f}" if column in g and g[column].notna().any() else "n/a"


def _table(df: pd.DataFrame, teachers: pd.DataFrame, order: list[str]) -> str:
    acc = [(m, label) for m, label in ACC if m in df or m in teachers]
    header = ["model", "seeds", *(label for _, label in acc), "train s (mean, wall)", "AutoAttack s (mean)"]
    rows = []
    for name, g in [(n, df[df["name"] == n]) for n in order] + list(teachers.groupby("name", sort=True)):
        rows.append([name, len(g), *(mean_std(g[m], 100) if m in g else "n/a" for m, _ in acc),
                     _seconds(g, "train_seconds"), _seconds(g, "test_autoattack_seconds")])
    return md_table(header, rows)


def autoattack_text(cfg: dict, df: pd.DataFrame) -> str:
    """What the AutoAttack columns measured: eps, attacks run, samples (from the results)."""
    aa = cfg.get("autoattack")
    if not aa or "test_autoattack_acc" not in df:
        return ""
    from lifelearn.evaluate.autoattack import STANDARD, autoattack_settings

    s = autoattack_settings(aa)
    ran = [a for a in s["attacks"] if f"test_autoattack_acc_{a.replace('-', '_')}" in df]
    left = [a for a in STANDARD if a not in ran]
    samples = sorted(set(df["test_autoattack_samples"].dropna().astype(int))) if "test_autoattack_samples" in df else []
    return (f"AutoAttack (Croce & Hein 2020, standard L-inf version, through ART; `evaluate/autoattack.py`): "
            f"eps {s['eps']:g}, {', '.join(ran)} ({s['iterations']} APGD iterations, {s['targets']} APGD-T "
            f"targets), on the first {', '.join(map(str, samples)) or s['samples']} test samples; not run: "
            f"{', '.join(left) or 'none'} (FAB-T is not in ART; ART's Square needs image-shaped inputs), so its "
            "accuracy is an upper bound of the reference package's. The robustness claims are judged on the "
            "AutoAttack columns; PGD-20 is reported beside them. 'clean acc, AA subset' is the clean accuracy on "
            "the same samples, and 'weighted robust acc, AA' the mean of the two."
            + (f" Tuning candidates are selected by the same attack on the first {s['samples']} validation samples "
               "(their AutoAttack weighted robust accuracy), so selection and claims use one metric."
               if aa.get("tuning") else " Tuning candidates are selected on PGD-20 (val), not AutoAttack."))


def _scatter(points: pd.DataFrame, path: Path, x: str = "test_clean_acc", y: str = "test_pgd_acc",
             ylabel: str = "PGD accuracy (%)") -> None:
    order = list(dict.fromkeys(points["name"]))
    palette = dict(zip(order, sns.color_palette("tab10", len(order))))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for name in order:
            g = points[points["name"] == name]
            ax.scatter(g[x] * 100, g[y] * 100, s=16, alpha=0.5, color=palette[name])
            ax.scatter(g[x].mean() * 100, g[y].mean() * 100, s=90, marker="D",
                       color=palette[name], edgecolor="black", label=name)
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small", loc="best")
    _save(fig, path)


def _trajectories(hist: pd.DataFrame, path: Path) -> None:
    long = hist.melt(id_vars=["name", "seed", "epoch"], value_vars=[c for c, _ in BALANCES],
                     var_name="quantity", value_name="value")
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, (qs, title) in zip(axes, [(("tau_adv", "tau_nat"), "temperatures (EBB)"),
                                          (("w_adv", "w_nat"), "loss weights (NLB)")]):
            sub = long[long["quantity"].isin(qs)].assign(series=lambda d: d["name"] + ": " + d["quantity"])
            sns.lineplot(data=sub, x="epoch", y="value", hue="series", errorbar=t_interval, ax=ax)
            ax.set_title(title + ", epoch mean of the per-batch values")
            ax.legend(fontsize="small", title=None)
    _save(fig, path)


def _premise(df: pd.DataFrame, teachers: pd.DataFrame) -> str:
    """What the measured numbers say about the paper's premise and effect: on AutoAttack
    where it was measured (the claims' attack), else on PGD."""
    aa = "test_autoattack_acc" in df and df["test_autoattack_acc"].notna().any()
    rob, wrob, what = (("test_autoattack_acc", "test_autoattack_weighted_robust_acc", "AutoAttack") if aa
                       else ("test_pgd_acc", "test_weighted_robust_acc", "PGD"))
    means = df.groupby("name")[[m for m, _ in ACC if m in df]].mean() * 100
    lines = []
    if {"natural", "pgd_at"} <= set(means.index):
        n, p = means.loc["natural"], means.loc["pgd_at"]
        lines.append(f"Trade-off in the student: natural training {n['test_clean_acc']:.1f}% clean / "
                     f"{n[rob]:.1f}% {what}, PGD-AT {p['test_clean_acc']:.1f}% / {p[rob]:.1f}%.")
    for name, label in (("mtard", "MTARD"), ("mtard_no_ebb", "MTARD without EBB")):
        if name not in means.index:
            continue
        m = means.loc[name]
        for base in ("pgd_at", "ard", "trades", "rslad", "mtard"):
            if base in means.index and base != name and (name == "mtard" or base == "mtard"):
                d = m - means.loc[base]
                lines.append(f"{label} minus {base}: clean {d['test_clean_acc']:+.1f}, {what} {d[rob]:+.1f}, "
                             f"weighted ({what}) {d[wrob]:+.1f} points (means over seeds; "
                             "the claim table gives the paired intervals).")
                if d[rob] < 0 < d[wrob]:
                    lines.append(f"Against {base}, {label}'s {what} accuracy is lower: its weighted robust accuracy "
                                 "gains through clean accuracy, not robustness.")
    if not teachers.empty and rob in teachers:
        t = teachers.groupby("name")[["test_clean_acc", rob]].mean().dropna() * 100
        lines += [f"{name}: {r['test_clean_acc']:.1f}% clean / {r[rob]:.1f}% {what}." for name, r in t.iterrows()]
    return " ".join(lines)


def section(df: pd.DataFrame, hist: pd.DataFrame, out_dir: Path, config: dict) -> str:
    """Stage `mtard`: the accuracy table, the scatter, the balances, the premise in numbers."""
    study = df["study"].iloc[0]
    order = [n for n in ("natural", "pgd_at", "trades", "ard", "rslad", "mtard", "mtard_no_ebb") if n in set(df["name"])]
    order += sorted(set(df["name"]) - set(order))
    teachers = teacher_rows(df, config)
    cfg = config.get("mtard") or {}
    attack = cfg.get("eval_attack", {})
    parts = ["## MTARD: multi-teacher adversarial robustness distillation",
             f"Dataset `{cfg.get('dataset')}`, student `{cfg.get('student')}`; test-set clean accuracy, "
             f"PGD-{attack.get('steps')} accuracy (L-inf eps {attack.get('eps')}, step {attack.get('step_size')}, "
             f"{attack.get('random_start', 'uniform')} start) and weighted robust accuracy = their mean. "
             "Mean ± std over seeds (ddof=1); students of seed k learn from the teachers of seed k.",
             _table(df, teachers, order)]
    aa_text = autoattack_text(cfg, df)
    if aa_text:
        parts.append(aa_text)
    aa = aa_text != "" and "test_autoattack_clean_acc" in df
    x, y = ("test_autoattack_clean_acc", "test_autoattack_acc") if aa else ("test_clean_acc", "test_pgd_acc")
    if {x, y} <= set(df.columns):
        points = pd.concat([df[df["name"] == n] for n in order] + [teachers.dropna(subset=[y])
                                                                   if y in teachers else teachers.iloc[0:0]])
        rel = f"figures/{study}-accuracy-vs-robustness.png"
        what = "AutoAttack" if aa else "PGD"
        _scatter(points, out_dir / rel, x, y, f"{what} accuracy (%)")
        parts.append(figure(rel, f"Clean vs {what} accuracy" + (" (both on the AutoAttack samples)" if aa else "")
                            + "; small dots: seeds, diamonds: means over seeds"))
    mt = hist[hist["tau_adv"].notna()] if "tau_adv" in hist else hist.iloc[0:0]
    if not mt.empty:
        rel = f"figures/{study}-balances.png"
        _trajectories(mt, out_dir / rel)
        parts.append(figure(rel, "MTARD's temperatures and loss weights per epoch (epoch mean of the per-batch "
                                 f"values; per-batch series in MLflow); band: {BAND}"))
    premise = _premise(df, teachers)
    if premise:
        parts.append("**Measured.** " + premise)
    return "\n\n".join(parts)
