"""Report section of the `dataset_distillation` study: accuracy per IPC and method, the
experts' smoothness, a grid of the synthetic images per class and the matching-loss curve.

Reads, besides the metrics table: each seed's loss.csv beside its metrics.json, the
synthetic set named in metrics.json ("synthetic_set") and the experts' summary.json
(results/<profile>/dataset_distillation/experts/<set>/summary.json).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lifelearn.io import load_npy, read_json
from lifelearn.report.figures import BAND, _save
from lifelearn.report.markdown import column, figure, md_table, mean_std
from lifelearn.stats import paired_interval, t_interval

LOSS_WINDOW = 10  # iterations in the rolling mean of the plotted matching loss


def _ipc(name: str) -> int:
    return int(name.rsplit("_ipc", 1)[1])


def _method(name: str) -> str:
    return name.rsplit("_ipc", 1)[0]


def accuracy_table(df: pd.DataFrame, initial_lr: float | None = None) -> str:
    """Test accuracy per IPC and method; the step size each set is trained with, and its
    ratio to the initial one (the experts' learning rate) when known."""
    rows = []
    for name, g in sorted(df.groupby("name"), key=lambda kv: (_ipc(kv[0]), kv[0])):
        rows.append([_ipc(name), _method(name), len(g), int(g["networks"].iloc[0]) if "networks" in g else "",
                     mean_std(g["test_acc"], 100), mean_std(column(g, "test_acc_std_networks"), 100),
                     mean_std(g["syn_lr"], fmt="{:.4f}") if "syn_lr" in g else "n/a",
                     mean_std(g["syn_lr"] / initial_lr, fmt="{:.3f}") if "syn_lr" in g and initial_lr else "n/a"])
    return md_table(["IPC", "method", "seeds", "networks / seed", "test acc (%)",
                     "std over networks (%)", "step size", "step size / initial"], rows)


def control_choice(df: pd.DataFrame) -> dict[int, float]:
    """Per IPC, the ONE control step size with the highest mean last-epoch val accuracy over
    every method and seed that ran the control (test accuracy is never looked at)."""
    rows = [{"ipc": _ipc(r.name), **c} for r in df.itertuples()
            for c in read_json(Path(r.result_dir) / "metrics.json")["metrics"].get("control", [])]
    if not rows:
        return {}
    val = pd.DataFrame(rows).groupby(["ipc", "lr"])["val_acc"].mean()
    return {int(ipc): float(g.droplevel(0).idxmax()) for ipc, g in val.groupby(level=0)}


def control_values(df: pd.DataFrame, choice: dict[int, float]) -> pd.DataFrame:
    """name, seed, test_acc of every row's control run at its IPC's shared step size."""
    rows = []
    for r in df.itertuples():
        for c in read_json(Path(r.result_dir) / "metrics.json")["metrics"].get("control", []):
            if choice.get(_ipc(r.name)) == c["lr"]:
                rows.append({"name": r.name, "seed": r.seed, "test_acc": c["test_acc"]})
    return pd.DataFrame(rows, columns=["name", "seed", "test_acc"])


def _paired(a: pd.DataFrame, b_name: str, a_name: str) -> tuple[str, str]:
    """'mean diff [low, high]' (percentage points, 95% t interval) and 'won / n' of a - b paired by seed."""
    x = a[a["name"] == a_name].set_index("seed")["test_acc"]
    y = a[a["name"] == b_name].set_index("seed")["test_acc"]
    d = (x - y).dropna()
    if d.empty:
        return "n/a", "n/a"
    mean, low, high = paired_interval(d.to_numpy())
    ci = "" if low is None else f" [{100 * low:+.2f}, {100 * high:+.2f}]"
    return f"{100 * mean:+.2f}{ci}", f"{int((d > 0).sum())} / {len(d)}"


def control_table(df: pd.DataFrame, claims: list[dict]) -> str:
    """The fixed-step-size control beside the learned-step-size protocol: per IPC the shared
    step size, each method's test accuracy at it, and each claim's pair under both protocols."""
    choice = control_choice(df)
    if not choice:
        return ""
    ctrl = control_values(df, choice)
    rows = [[_ipc(name), _method(name), f"{choice[_ipc(name)]:g}", mean_std(g["test_acc"], 100),
             mean_std(df[df["name"] == name]["test_acc"], 100)]
            for name, g in sorted(ctrl.groupby("name"), key=lambda kv: (_ipc(kv[0]), kv[0]))]
    parts = [md_table(["IPC", "method", "shared step size", "test acc, control (%)", "test acc, learned (%)"], rows)]
    pairs = []
    for c in claims:
        if c.get("a") in set(ctrl["name"]) and c.get("b") in set(ctrl["name"]):
            learned, lw = _paired(df[["name", "seed", "test_acc"]], c["b"], c["a"])
            control, cw = _paired(ctrl, c["b"], c["a"])
            pairs.append([c["id"], f"{c['a']} - {c['b']}", learned, lw, control, cw])
    if pairs:
        parts.append(md_table(["claim", "difference", "learned lr: mean diff (pp) [95% CI]", "seeds won",
                               "control: mean diff (pp) [95% CI]", "seeds won"], pairs))
    return "\n\n".join(parts)


def ablation_table(df: pd.DataFrame, methods: dict) -> str:
    """Shen et al.'s ablation shape: MTT, MTT + each addition alone, MTT + all (smooth_mtt), per
    IPC on the ablation rows' seeds; each row's difference from MTT paired by seed."""
    abl = sorted(m for m, c in methods.items() if c.get("ablation"))
    if not abl:
        return ""
    base, full = "mtt", next((m for m, c in methods.items() if c.get("method") == "mtt" and not c.get("ablation")
                              and all(c.get(k) for k in ("representative_init", "balanced_loss",
                                                         "intermediate_matching", "weight_perturbation"))), None)
    rows = []
    for ipc in sorted(df["name"].map(_ipc).unique()):
        seeds = set(df[df["name"].isin([f"{m}_ipc{ipc}" for m in abl])]["seed"])
        sub = df[df["seed"].isin(seeds)]
        for m in [base, *abl] + ([full] if full else []):
            name = f"{m}_ipc{ipc}"
            g = sub[sub["name"] == name]
            if g.empty:
                continue
            on = "none (MTT)" if m == base else ("all" if m == full else ", ".join(
                k for k in ("representative_init", "balanced_loss", "intermediate_matching", "weight_perturbation",
                            "inner_momentum") if methods[m].get(k)) + f"; experts {methods[m]['experts']}")
            diff, won = ("", "") if m == base else _paired(sub[["name", "seed", "test_acc"]], f"{base}_ipc{ipc}", name)
            rows.append([ipc, m, on, len(g), mean_std(g["test_acc"], 100), diff, won,
                         mean_std(column(g, "syn_lr"), fmt="{:.4f}")])
    return md_table(["IPC", "method", "additions on", "seeds", "test acc (%)", "vs MTT: mean diff (pp) [95% CI]",
                     "seeds won", "step size"], rows)


def experts_table(root: Path) -> str:
    rows = []
    for path in sorted(root.glob("experts/*/summary.json")):
        s = read_json(path)
        e = pd.DataFrame(s["experts"])
        opts = ", ".join(f"{k}={v}" for k, v in sorted(s["options"].items()))
        rows.append([s["set"], opts, len(e), mean_std(e["val_acc"], 100), mean_std(e["test_acc"], 100),
                     mean_std(e["mean_epoch_step"], fmt="{:.3f}"), mean_std(e["max_epoch_step"], fmt="{:.3f}")])
    if not rows:
        return ""
    return md_table(["expert set", "options", "experts", "final val acc (%)", "final test acc (%)",
                     "mean ||theta_e+1 - theta_e||", "max ||theta_e+1 - theta_e||"], rows)


def image_grid(x: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """(rows = images per class, cols = classes) mosaic of the first channel, one pixel gap."""
    ipc = int(np.bincount(y, minlength=num_classes).max())
    h, w = x.shape[-2:]
    grid = np.full((ipc * (h + 1) - 1, num_classes * (w + 1) - 1), np.nan)
    for c in range(num_classes):
        for r, img in enumerate(x[y == c]):
            grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = img[0] if img.ndim == 3 else img.mean(0)
    return grid


def _figure_order(names) -> list[str]:
    """The compared methods first (random, mtt, smooth_mtt), then the ablation rows by name."""
    first = [n for m in ("random", "mtt", "smooth_mtt") for n in names if _method(n) == m]
    return first + sorted(n for n in names if n not in first)


def synthetic_figure(df: pd.DataFrame, out_dir: Path, ipc: int, columns: int = 4) -> str:
    import matplotlib.pyplot as plt

    sub = df[df["name"].map(_ipc) == ipc]
    names = _figure_order(sub["name"].unique())
    seed = int(sub["seed"].min())
    cols = min(columns, len(names))
    rows = -(-len(names) // cols)
    aspect = min(ipc, 10) / 10  # grid height / width for 10 classes, as drawn
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, (3.4 * aspect + 0.9) * rows), squeeze=False)
    scaled = False
    for ax, name in zip(axes.flat, names):
        row = sub[(sub["name"] == name) & (sub["seed"] == seed)].iloc[0]
        syn = Path(read_json(Path(row["result_dir"]) / "metrics.json")["synthetic_set"])
        x, y = load_npy(syn / "x_train.npy"), load_npy(syn / "y_train.npy")
        # ZCA-whitened sets (zca: true) leave [0, 1]: drawn on their own range, said in the caption
        lo, hi = (0.0, 1.0) if x.min() >= 0 and x.max() <= 1 else (float(x.min()), float(x.max()))
        scaled |= (lo, hi) != (0.0, 1.0)
        ax.imshow(image_grid(x, y, int(y.max()) + 1), cmap="gray_r", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(_method(name), fontsize="medium")
        ax.set_xlabel("class 0 ... 9", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    rel = f"figures/dataset_distillation-synthetic-ipc{ipc}.png"
    _save(fig, out_dir / rel)
    scale = ("each set on its own value range (ZCA-whitened values leave [0, 1])" if scaled
             else "pixel values 0 (white) to 1 (black)")
    return figure(rel, f"Synthetic sets at IPC {ipc}, seed {seed}: one column per class, {scale}; `random` is the "
                       f"real subset every method starts from unless representative initialisation is on; then "
                       f"`mtt`, `smooth_mtt` and the ablation rows")


def loss_figure(df: pd.DataFrame, out_dir: Path) -> str:
    import matplotlib.pyplot as plt
    import seaborn as sns

    frames = []
    for row in df.itertuples():
        path = Path(row.result_dir) / "loss.csv"
        loss = pd.read_csv(path) if path.exists() else pd.DataFrame()
        if not loss.empty:
            loss["smoothed"] = loss["loss"].rolling(LOSS_WINDOW, min_periods=1).mean()
            frames.append(loss.assign(method=_method(row.name), ipc=_ipc(row.name), seed=row.seed))
    if not frames:
        return ""
    data = pd.concat(frames, ignore_index=True)
    ipcs = sorted(data["ipc"].unique())
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(ipcs), figsize=(5.5 * len(ipcs), 4), squeeze=False)
        for ax, ipc in zip(axes[0], ipcs):
            sub = data[data["ipc"] == ipc]
            sns.lineplot(data=sub, x="iteration", y="smoothed", hue="method", hue_order=sorted(sub["method"].unique()),
                         errorbar=t_interval, ax=ax)
            ax.set_title(f"IPC {ipc}")
            ax.set_ylabel("matching loss (normalised)")
    rel = "figures/dataset_distillation-matching-loss.png"
    _save(fig, out_dir / rel)
    return figure(rel, f"Matching loss ||theta_hat - theta*_(t+M)||^2 / ||theta*_t - theta*_(t+M)||^2 per "
                       f"iteration (rolling mean over {LOSS_WINDOW} iterations, +intermediate terms where on); "
                       f"line: mean over seeds, band: {BAND}. Methods differ in experts and inner loss, so their "
                       f"losses are not on one scale")


def section(df: pd.DataFrame, hist: pd.DataFrame, out_dir: Path, config: dict) -> str:
    """'dataset_distillation' stage: accuracy per IPC and method, experts, images, loss curve."""
    cfg = config.get("dataset_distillation", {})
    root = Path(df["result_dir"].iloc[0]).parents[1]
    ev = cfg.get("evaluation", {})
    methods = cfg.get("methods", {})
    ablation_names = {f"{m}_ipc{i}" for m, c in methods.items() if c.get("ablation") for i in df["name"].map(_ipc)}
    full_df, df = df, df[~df["name"].isin(ablation_names)]
    experts_cfg = cfg.get("experts", {})
    parts = [
        "## Dataset distillation (MTT and smooth expert trajectories)",
        f"Dataset `{df['dataset'].iloc[0]}`. Each synthetic set (IPC images per class + its step size) is "
        f"evaluated by training {ev.get('networks', '?')} fresh networks on it alone "
        f"({ev.get('train', {}).get('epochs', '?')} epochs, SGD momentum {ev.get('train', {}).get('momentum', '?')}, "
        f"weight decay {ev.get('train', {}).get('weight_decay', '?')}, from the set's learned step size, as MTT "
        "evaluates); the accuracy is the "
        "test accuracy of the **last epoch** (no selection on test), averaged over the networks of a seed; "
        "table: mean ± std over seeds (ddof=1). `random`: a random real subset of the same size, trained with the "
        "experts' learning rate; trajectory matching methods (`mtt` = plain MTT: plain experts, all switches off): "
        + "; ".join(f"`{m}`: experts `{c['experts']}`, on: "
                    + (", ".join(k for k in sorted(c) if k not in ("experts", "method", "seeds", "ablation") and c[k])
                       or "none")
                    for m, c in sorted(methods.items()) if "experts" in c and not c.get("ablation")) + ".",
        accuracy_table(df, cfg.get("experts", {}).get("train", {}).get("lr")),
        "The step size is learned with the images (initial value: the experts' learning rate) and is the "
        "learning rate every evaluation network is trained with; a set whose step size collapsed during "
        "distillation (ratio far below 1) trains its networks too little in the evaluation budget.",
        f"Experts: each expert set is a pool of {experts_cfg.get('num', '?')}; distillation seed s matches its own "
        f"draw of {experts_cfg.get('per_seed', experts_cfg.get('num', '?'))} of them (numpy default_rng(s)), so the "
        "intervals over seeds include expert variance.",
    ]
    claims = config.get("claims") or []
    claims = claims.get("dataset_distillation", []) if isinstance(claims, dict) else [
        c for c in claims if c.get("study") == "dataset_distillation"]
    control = control_table(df, claims)
    if control:
        parts += ["### Control: one fixed step size shared by every method",
                  f"Each synthetic set also trains one network per step size of {ev.get('control_lr_grid')}; per IPC "
                  "the step size with the best mean last-epoch **validation** accuracy over all methods and seeds is "
                  "shared, and every method's test accuracy at it is shown beside the learned-step-size protocol, "
                  "so a method cannot win only through its learned step size. The claims stay on the learned "
                  "step size (MTT's and the paper's protocol: the step size is part of the distilled set); the "
                  "control rows say whether a verdict survives without it.", control]
    ablation = ablation_table(full_df, methods)
    if ablation:
        parts += ["### Ablation (MTT + each addition alone, and all together)",
                  "Shen et al.'s ablation shape, on the seeds the ablation rows run (MTT and MTT + all paired on "
                  "the same seeds); with this few seeds only differences of several points are resolved: read "
                  "the interval, not the mean.", ablation]
    experts = experts_table(root)
    if experts:
        parts += ["### Experts", "Final accuracies and the parameter distance travelled per epoch, per "
                  "expert set and its optimiser (momentum experts travel further per epoch at the same lr; "
                  "the clipping loss and the gradient penalty are meant to make the steps more even).", experts]
    parts.append("### Synthetic images")
    parts += [synthetic_figure(full_df, out_dir, ipc) for ipc in sorted(df["name"].map(_ipc).unique())]
    parts += ["### Matching loss", loss_figure(df, out_dir)]
    return "\n\n".join(p for p in parts if p)
