"""Report section of the `continual` study (stage "continual"): per setting a table of
final average accuracy, forgetting, BWT and min-ACC (mean ± std over seeds), the mean
accuracy matrices as heat-maps, and the continual-evaluation stream (per-task accuracy
against the training iteration, task boundaries dashed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from lifelearn.io import read_json  # noqa: E402
from lifelearn.report.figures import _save  # noqa: E402

FORMULAS = (
    "R[i, j] is the test accuracy on task j after training task i (T tasks, full test split). "
    "ACC = mean_j R[T, j]; forgetting (Chaudhry et al. 2018) = mean over j < T of "
    "(max_{l<T} R[l, j] - R[T, j]); BWT = mean over j < T of (R[T, j] - R[j, j]); "
    "min-ACC (De Lange et al. 2023) = mean over finished tasks of the lowest accuracy in the "
    "continual-evaluation stream (fixed test subset of <= 1000 samples, every k iterations) "
    "after the task's training ended."
)


PRETRAINED_NOTE = (
    "What \"pretrained\" means here: a setting with init `teacher:<name>` starts from that "
    "teacher's checkpoint of the same seed (stage `teachers`) with its classifier head re-initialised. "
    "On the embedded data (default profile) the digits teacher was trained on the whole digits train "
    "split, i.e. on the very classes the stream later presents; its features therefore fit every "
    "task, which is a stronger (leakier) start than the papers' ImageNet -> CIFAR-100 transfer. The "
    "paper profile starts the Split-CIFAR-100 stream from a CIFAR-10 teacher, a disjoint source."
)


def _setting_of(config: dict, name: str) -> str:
    runs = (config.get("continual") or {}).get("runs") or {}
    return runs.get(name, {}).get("setting", "unknown")


def _describe(config: dict, setting: str) -> str:
    s = ((config.get("continual") or {}).get("settings") or {}).get(setting)
    if not s:
        return ""
    t = s["train"]
    model = s.get("model", {}).get("arch", "") if s["init"] == "scratch" else s["init"]
    return (f"{s['dataset']}, {s['scenario'].replace('_', '-')}, {s['n_tasks']} tasks, start: {model}, "
            f"{t['epochs']} epoch(s) a task, batch {t['batch_size']}, {t['optimizer']} lr {t['lr']}, "
            f"evaluation every {s['eval']['every']} iteration(s)")


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


def continual_section(df: pd.DataFrame, hist: pd.DataFrame, out_dir: Path, config: dict) -> str:
    from lifelearn.report.writer import _col, _figure, _num, md_table, mean_std  # writer imports this module

    study = df["study"].iloc[0]
    df = df.assign(setting=[_setting_of(config, n) for n in df["name"]])
    parts = ["## Continual fine-tuning", FORMULAS]
    header = ["run", "seeds", "ACC (%)", "forgetting (%)", "BWT (%)", "min-ACC (%)", "train steps/s"]
    for setting, sub in df.groupby("setting", sort=True):
        rows = [[name, len(g), mean_std(_col(g, "avg_acc"), 100), mean_std(_col(g, "forgetting"), 100),
                 mean_std(_col(g, "bwt"), 100), mean_std(_col(g, "min_acc"), 100),
                 _num(_col(g, "steps_per_second").mean(), "{:.0f}")]
                for name, g in sub.groupby("name", sort=True)]
        groups = {name: sorted(g["result_dir"]) for name, g in sub.groupby("name", sort=True)}
        parts += [f"### Setting `{setting}`", _describe(config, setting), md_table(header, rows)]
        if "teacher:" in _describe(config, setting):
            parts.append(PRETRAINED_NOTE)
        rel = f"figures/{study}-{setting}-accuracy-matrix.png"
        heatmaps(groups, out_dir / rel)
        parts.append(_figure(rel, "Mean accuracy matrix R[i, j] (%) over seeds per run"))
        rel = f"figures/{study}-{setting}-stream.png"
        stream_curves(groups, out_dir / rel)
        parts.append(_figure(rel, "Continual evaluation: accuracy of each seen task on its fixed test "
                                  "subset against the training iteration (mean over seeds); dashed: task switches"))
    return "\n\n".join(p for p in parts if p)
