"""Report section of the `continual` study (stage "continual"): per setting two tables of
the metrics of lifelearn.evaluate.continual_metrics (mean ± std over seeds), the method
comparison with 95% intervals, the mean accuracy matrices as heat-maps, the
continual-evaluation stream (per-task accuracy against the iteration, task boundaries
dashed), the stability gap (old-task accuracy aligned at each task switch) and, for runs
with refresh, the ratio ||refresh update|| / ||SGD update|| per task."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from lifelearn.io import read_json  # noqa: E402
from lifelearn.report.figures import BAND, _save, points_by_name  # noqa: E402
from lifelearn.report.markdown import column, figure, md_table, mean_std, number  # noqa: E402
from lifelearn.stats import t_interval  # noqa: E402

INTRO = (
    "R[i, j] is the test accuracy on task j after training task i (full test split); the stream is "
    "the accuracy of every seen task on a fixed test subset every k iterations. Every metric is "
    "defined in [Metric definitions](#metric-definitions); accuracies in %, transfer contrasts in "
    "[-1, 1], iterations as counted by the stream. The lifelong-learning metrics compare each run "
    "with the setting's single-task experts (`*_single_task`: the model restarts from its start "
    "before every task). In class-incremental streams a task's classes are never predicted before "
    "they are trained, so R[j-1, j] = 0: FWT = -b_j and the forward-transfer contrast is -1 by "
    "construction there."
)
ACCURACY_COLUMNS = [("ACC", "avg_acc", 100), ("AIA", "avg_incremental_acc", 100), ("forgetting", "forgetting", 100),
                    ("BWT", "bwt", 100), ("FWT", "fwt", 100), ("min-ACC", "min_acc", 100), ("WC-ACC", "wc_acc", 100)]
DYNAMICS_COLUMNS = [("gap depth", "gap_depth", 100), ("gap drop", "gap_drop", 100),
                    ("recovery", "gap_recovery", 100), ("iters to half recovery", "gap_recover_iters", 1),
                    ("WF^10 (10 evals)", "wf10", 100), ("WP^10 (10 evals)", "wp10", 100), ("PM", "perf_maintenance", 100),
                    ("FT", "forward_transfer", 1), ("BT", "backward_transfer", 1),
                    ("rel. to expert", "relative_to_expert", 1), ("sample eff.", "sample_efficiency", 1)]
SYNTHETIC_NOTE = (
    "`synthetic_er` replays the dataset-distillation study's synthetic set of the same seed "
    "(only the classes already trained) instead of raw exemplars. That set was distilled once from "
    "the whole training split, so it carries information about classes before the stream reaches "
    "them; compare it with ER holding the same number of raw images."
)


PRETRAINED_NOTE = (
    "What \"pretrained\" means here: a setting with init `teacher:<name>` starts from that "
    "teacher's checkpoint of the same seed (stage `teachers`) with its classifier head re-initialised. "
    "On the embedded data (default profile) the digits teacher was trained on the whole digits train "
    "split, i.e. on the very classes the stream later presents; its features therefore fit every "
    "task, which is a stronger (leakier) start than the papers' ImageNet -> CIFAR-100 transfer. The "
    "paper profile starts the Split-CIFAR-100 stream from a CIFAR-10 teacher, a disjoint source."
)


def _runs(config: dict) -> dict:
    """`continual.runs` of the config ({} without a continual section)."""
    return (config.get("continual") or {}).get("runs") or {}


def _setting_of(config: dict, name: str) -> str:
    return _runs(config).get(name, {}).get("setting", "unknown")


def _is_expert(config: dict, name: str) -> bool:
    return "single_task" in (_runs(config).get(name, {}).get("strategies") or {})


def _describe(config: dict, setting: str) -> str:
    s = ((config.get("continual") or {}).get("settings") or {}).get(setting)
    if not s:
        return ""
    t = s["train"]
    model = s.get("model", {}).get("arch", "") if s["init"] == "scratch" else s["init"]
    tuned = any(r.get("setting") == setting and "train.lr" in ((r.get("tune") or {}).get("grid") or {})
                for r in _runs(config).values())
    lr = f"lr {t['lr']}" + (" (tuned runs: the lr their sweep chose, see Hyper-parameter selection)" if tuned else "")
    return (f"{s['dataset']}, {s['scenario'].replace('_', '-')}, {s['n_tasks']} tasks, start: {model}, "
            f"{t['epochs']} epoch(s) a task, batch {t['batch_size']}, {t['optimizer']} {lr}, "
            f"evaluation every {s['eval']['every']} iteration(s)")


ER_COMBINE = {"mean": "one CE over current + replay samples (Mammoth models/er.py)",
              "sum": "CE(current) + CE(replay) (RaptorMai/online-continual-learning agents/exp_replay.py)"}
CONTROL_NOTE = (
    "`*_noswitch` rows are the no-switch control of the run they name: the same stream length, evaluation "
    "schedule and test subsets, with each segment drawn from the classes seen so far in the real stream's "
    "proportions, so its dips are evaluation noise and its stability-gap statistics are the noise floor "
    "the real run's are judged against (claims with `control:`, seed by seed). It trains with the "
    "learning rate its real run selected on validation."
)


def _er_line(config: dict, setting: str) -> str:
    """How the ER runs of `setting` combine their two CE terms (strategy er, key combine)."""
    runs = _runs(config)
    forms: dict[str, list[str]] = {}
    for name, run in sorted(runs.items()):
        if run.get("setting") == setting and "er" in (run.get("strategies") or {}):
            forms.setdefault((run["strategies"]["er"] or {}).get("combine", "mean"), []).append(f"`{name}`")
    return "; ".join(f"ER loss {ER_COMBINE[k]}: {', '.join(v)}" for k, v in sorted(forms.items()))


def _derpp_line(config: dict, setting: str) -> str:
    """DER++'s weights and optimiser per DER++ run of `setting` (strategy derpp): alpha, beta,
    the replay batch, the run's lr and weight decay, and which run is the weight-decay control."""
    settings = (config.get("continual") or {}).get("settings") or {}
    base = (settings.get(setting) or {}).get("train") or {}
    parts = []
    for name, run in sorted(_runs(config).items()):
        if run.get("setting") != setting or "derpp" not in (run.get("strategies") or {}):
            continue
        d, t = run["strategies"]["derpp"] or {}, {**base, **(run.get("train") or {})}
        wd = t.get("weight_decay", 0.0)
        role = (" + refresh" if run.get("refresh") else
                " (the weight-decay control: refresh's optimiser without refresh)" if wd else "")
        parts.append(f"`{name}`{role}: alpha {d.get('alpha', 'default')}, beta {d.get('beta', 'default')}, buffer "
                     f"{d.get('buffer', 'default')}, replay batch {d.get('replay_batch', 'default')} (each of two draws), "
                     f"lr {t.get('lr')}, weight decay {wd:g}")
    if not parts:
        return ""
    return ("DER++ (Buzzega et al. 2020; loss CE + alpha MSE(stored logits) + beta CE(buffer labels), Mammoth "
            "models/derpp.py), with the refresh authors' DER++ arguments for seq-mnist and their optimiser's weight "
            "decay 1e-4: " + "; ".join(parts) + ".")


RATIO_PREFIX = "refresh_sgd_ratio_task"


def refresh_ratio_table(by_run) -> tuple[list[str], list[list]] | None:
    """Rows [run, seeds, per-task mean ± std over seeds of ||refresh update|| / ||SGD update||
    (each seed's value the mean over the task's batches), all tasks]; None without refresh runs."""
    tasks = sorted({int(c[len(RATIO_PREFIX):]) for _, g in by_run for c in g.columns
                    if c.startswith(RATIO_PREFIX) and column(g, c).notna().any()})
    if not tasks:
        return None
    rows = [[name, len(g), *(mean_std(column(g, f"{RATIO_PREFIX}{j}"), 1, "{:.2e}") for j in tasks),
             mean_std(column(g, "refresh_sgd_ratio_mean"), 1, "{:.2e}")]
            for name, g in by_run if column(g, "refresh_sgd_ratio_mean").notna().any()]
    return ["run", "seeds", *(f"task {j}" for j in tasks), "all tasks"], rows


def refresh_note(by_run) -> str:
    """What the ratio table says about the size of the refresh step, from the measured values."""
    values = pd.concat([column(g, "refresh_sgd_ratio_mean") for _, g in by_run]).dropna()
    if values.empty:
        return ""
    return ("Size of the refresh step: per batch, the global L2 norm of the refresh (unlearn) update over that of "
            "the optimiser's update that follows it (both over all parameters), averaged over each task's batches. "
            f"Measured here: {values.min():.2e} to {values.max():.2e} (mean over runs and seeds "
            f"{values.mean():.2e}), i.e. the refresh step is small next to an SGD step, though not below float32 "
            "resolution (its relative change of a tensor, delta = 1e-5, is about 80 times float32's machine epsilon).")


def _window_line(config: dict, setting: str) -> str:
    """WF^w / WP^w in iterations: w evaluations, one every `eval.every` iterations."""
    s = ((config.get("continual") or {}).get("settings") or {}).get(setting) or {}
    every = (s.get("eval") or {}).get("every", 1)
    windows = ((config.get("continual") or {}).get("evaluation") or {}).get("windows", [10, 100])
    if not every:
        return ""
    return ("Windows in iterations: " + ", ".join(f"WF^{w} / WP^{w} span {w} evaluations = {w * every} iterations"
                                                  for w in windows) + f" (one evaluation every {every}).")


def _mean_matrix(dirs: list[str]) -> np.ndarray:
    return np.mean([np.asarray(read_json(Path(d) / "accuracy_matrix.json")["accuracy"]) for d in dirs], axis=0)


def _panels(n: int, max_cols: int, panel_size: tuple[float, float]):
    """A grid of n panels, at most max_cols a row; unused axes switched off."""
    cols = min(max_cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def heatmaps(groups: dict[str, list[str]], path: Path) -> Path:
    """Mean accuracy matrix per run (rows: after task i; columns: task j)."""
    names = sorted(groups)
    fig, axes = _panels(len(names), 4, (3.2, 2.9))
    for ax, name in zip(axes.flat, names):
        R = _mean_matrix(groups[name]) * 100
        sns.heatmap(R, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", cbar=False, ax=ax,
                    annot_kws={"fontsize": 7})
        ax.set_title(f"{name} (n={len(groups[name])})", fontsize=9)
        ax.set_xlabel("evaluated task j")
        ax.set_ylabel("after task i")
    return _save(fig, path)


def stream_curves(groups: dict[str, list[str]], path: Path) -> Path:
    """Per-task stream accuracy (mean over seeds) against iteration, one panel per run;
    dashed lines: task boundaries of the first seed (they shift by a few steps between
    seeds, whose class orders give tasks of slightly different sizes)."""
    names = sorted(groups)
    fig, axes = _panels(len(names), 3, (4.6, 3.0))
    for ax, name in zip(axes.flat, names):
        frames = [pd.read_csv(Path(d) / "stream.csv") for d in groups[name]]
        if all(f.empty for f in frames):
            ax.set_title(f"{name}: no stream")
            continue
        stream = pd.concat(frames)
        mean = stream.groupby(["eval_task", "iteration"], sort=True)["accuracy"].mean().reset_index()
        for task, sub in mean.groupby("eval_task", sort=True):
            ax.plot(sub["iteration"], sub["accuracy"] * 100, lw=0.8, label=f"task {task}")
        first = frames[0]
        for it in first.groupby("current_task")["iteration"].min().iloc[1:]:
            ax.axvline(it - 0.5, color="grey", ls="--", lw=0.6)
        ax.set_title(f"{name} (mean of {len(frames)} seeds)", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=6, loc="lower left")
    return _save(fig, path)


def switch_aligned(stream: pd.DataFrame) -> pd.DataFrame:
    """Old-task accuracy around each task switch: for switch to task i and old task j < i,
    rows (since_switch, delta) with delta = a_j(t) - a_j at the last evaluation before
    the switch, for the evaluations while task i trains (since_switch = 1 at its first)."""
    s = stream.sort_values(["iteration", "eval_task"], kind="stable")
    rows = []
    for i in sorted(s["current_task"].unique())[1:]:
        during = s[(s["current_task"] == i) & (s["eval_task"] < i)]
        before = s[s["current_task"] == i - 1]
        if during.empty or before.empty:
            continue
        start = s.loc[s["current_task"] == i, "iteration"].min()
        pre = before.groupby("eval_task")["accuracy"].last()
        d = during[during["eval_task"].isin(pre.index)]
        rows.append(pd.DataFrame({"since_switch": d["iteration"] - start + 1,
                                  "delta": d["accuracy"].to_numpy() - pre.loc[d["eval_task"]].to_numpy()}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["since_switch", "delta"])


def gap_curves(groups: dict[str, list[str]], path: Path) -> Path:
    """Mean change of old-task accuracy (%) against iterations since a task switch, per run
    (mean over switches, old tasks and seeds; band: t-interval over seeds), cut at the
    shortest task of the first seed."""
    frames = []
    for name in sorted(groups):
        for seed_dir in groups[name]:
            stream = pd.read_csv(Path(seed_dir) / "stream.csv")
            aligned = switch_aligned(stream)
            if aligned.empty:
                continue
            lengths = stream.groupby("current_task")["iteration"].agg(lambda it: it.max() - it.min() + 1)
            aligned = aligned[aligned["since_switch"] <= lengths.iloc[1:].min()]
            frames.append(aligned.groupby("since_switch", as_index=False)["delta"].mean()
                          .assign(run=name, seed_dir=seed_dir))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if frames:
        data = pd.concat(frames, ignore_index=True).assign(delta=lambda d: d["delta"] * 100)
        sns.lineplot(data=data, x="since_switch", y="delta", hue="run", hue_order=sorted(data["run"].unique()),
                     errorbar=t_interval, ax=ax, lw=0.9)
        ax.legend(fontsize=6, ncol=2)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("iterations since the task switch")
    ax.set_ylabel("old-task accuracy change (points)")
    return _save(fig, path)


def comparison(df: pd.DataFrame, path: Path, metrics=(("avg_acc", "ACC (%)"), ("min_acc", "min-ACC (%)"))) -> Path:
    """Per run: mean with its 95% t-interval (black) and the seeds (blue), one panel per metric."""
    order = sorted(df["name"].unique())
    fig, axes = _panels(len(metrics), len(metrics), (max(3.5, 0.75 * len(order) + 1.5), 3.6))
    for ax, (metric, label) in zip(axes.flat, metrics):
        if metric in df and df[metric].notna().any():
            points_by_name(ax, df, metric, order, scale=100)
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelrotation=35, labelsize=7)
    return _save(fig, path)


def _table(groups, columns) -> list[list]:
    """Rows [run, seeds, mean ± std per column]; percentages with 2 decimals, iterations
    with 1, ratios and contrasts with 3."""
    rows = []
    for name, g in groups:
        row = [name, len(g)]
        for _, metric, scale in columns:
            fmt = "{:.2f}" if scale == 100 else "{:.1f}" if metric.endswith("_iters") else "{:.3f}"
            row.append(mean_std(column(g, metric), scale, fmt))
        rows.append(row)
    return rows


def section(df: pd.DataFrame, hist: pd.DataFrame, out_dir: Path, config: dict) -> str:
    """Per setting: the two metric tables, the notes that apply, the comparison, the mean
    accuracy matrices, the stream and the stability gap."""
    study = df["study"].iloc[0]
    df = df.assign(setting=[_setting_of(config, n) for n in df["name"]])
    parts = ["## Continual fine-tuning", INTRO]
    for setting, sub in df.groupby("setting", sort=True):
        by_run = list(sub.groupby("name", sort=True))
        groups = {name: sorted(g["result_dir"]) for name, g in by_run}
        described = _describe(config, setting)
        parts += [f"### Setting `{setting}`", described, _er_line(config, setting), _derpp_line(config, setting),
                  "Accuracy (%), mean ± std over seeds:",
                  md_table(["run", "seeds", *(c[0] for c in ACCURACY_COLUMNS), "train steps/s"],
                           [row + [number(column(g, "steps_per_second").mean(), "{:.0f}")]
                            for row, (_, g) in zip(_table(by_run, ACCURACY_COLUMNS), by_run)]),
                  "Stability gap, windowed forgetting / plasticity (points of accuracy) and lifelong-learning "
                  "metrics (PM in points; FT, BT as contrasts; relative performance and sample efficiency "
                  "as ratios to the single-task experts), mean ± std over seeds:",
                  md_table(["run", "seeds", *(c[0] for c in DYNAMICS_COLUMNS)], _table(by_run, DYNAMICS_COLUMNS)),
                  _window_line(config, setting)]
        ratios = refresh_ratio_table(by_run)
        if ratios is not None:
            parts += [refresh_note(by_run), "||refresh update|| / ||SGD update|| per task, mean ± std over seeds:",
                      md_table(*ratios)]
        if any(n.endswith("_noswitch") for n in groups):
            parts.append(CONTROL_NOTE)
        if "teacher:" in described:
            parts.append(PRETRAINED_NOTE)
        if any("synthetic_er" in n for n in groups):
            parts.append(SYNTHETIC_NOTE)
        rel = f"figures/{study}-{setting}-comparison.png"
        comparison(sub, out_dir / rel)
        parts.append(figure(rel, f"Final average accuracy and min-ACC per run; black: mean and {BAND}; blue: seeds"))
        rel = f"figures/{study}-{setting}-accuracy-matrix.png"
        heatmaps(groups, out_dir / rel)
        parts.append(figure(rel, "Mean accuracy matrix R[i, j] (%) over seeds per run"))
        rel = f"figures/{study}-{setting}-stream.png"
        stream_curves(groups, out_dir / rel)
        parts.append(figure(rel, "Continual evaluation: accuracy of each seen task on its fixed test "
                                 "subset against the training iteration (mean over seeds); dashed: task switches"))
        rel = f"figures/{study}-{setting}-stability-gap.png"
        gap_curves({n: d for n, d in groups.items() if not _is_expert(config, n)}, out_dir / rel)
        parts.append(figure(rel, "Stability gap: change of the old tasks' accuracy against the iterations since "
                                 "a task switch, relative to their last evaluation before it (mean over switches "
                                 f"and old tasks; line: mean over seeds, band: {BAND}; single-task experts, which "
                                 "restart at every switch, left out)"))
    return "\n\n".join(p for p in parts if p)
