"""Deterministic seaborn figures: Agg backend, fixed size and dpi, no metadata, no jitter."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from lifelearn.io import atomic_path  # noqa: E402
from lifelearn.stats import t_interval  # noqa: E402

DPI = 110
BAND = "95% Student-t interval of the mean over seeds"


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    try:
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def learning_curves(histories: pd.DataFrame, path: str | Path, metric: str = "val_acc") -> Path:
    """`metric` against epoch per name: mean line, t-interval band; one panel per dataset."""
    histories = histories.assign(dataset=histories["dataset"].fillna("unknown"))
    datasets = sorted(histories["dataset"].unique())
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4),
                                 squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            sub = histories[histories["dataset"] == dataset]
            sns.lineplot(data=sub, x="epoch", y=metric, hue="name",
                         hue_order=sorted(sub["name"].unique()), errorbar=t_interval, ax=ax)
            ax.set_title(dataset)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(title=None, fontsize="small")
    return _save(fig, path)


def points_by_name(ax, df: pd.DataFrame, metric: str, order: list[str], scale: float = 1.0) -> None:
    """On `ax`: mean `metric` per name with its t-interval (black), each seed's value beside it (blue)."""
    data = df.assign(value=df[metric] * scale)
    sns.pointplot(data=data, x="name", y="value", order=order, errorbar=t_interval,
                  color="black", linestyle="none", markers="D", markersize=5,
                  linewidth=1.5, capsize=0.1, ax=ax)
    seeds = data["name"].map({name: i for i, name in enumerate(order)}) + 0.18
    ax.scatter(seeds, data["value"], s=18, color="tab:blue", alpha=0.8, zorder=3, label="seed")
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_xlabel("")
    ax.set_ylabel(metric)


def metric_by_method(df: pd.DataFrame, metric: str, path: str | Path) -> Path:
    """Mean `metric` per name with its t-interval (black), each seed's value beside it (blue)."""
    order = sorted(df["name"].unique())
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(order) + 1.5), 4))
        points_by_name(ax, df, metric, order)
        ax.legend(loc="best", fontsize="small")
        ax.tick_params(axis="x", labelrotation=20 if len(order) > 3 else 0)
    return _save(fig, path)
