"""Report section of the `teachers` study (stage `pretrain`): a table per dataset, test
accuracy per teacher and the learning curves."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lifelearn.report.figures import BAND, metric_by_method
from lifelearn.report.markdown import column, figure, learning_curves_figure, md_table, mean_std, number


def section(df: pd.DataFrame, hist: pd.DataFrame, out_dir: Path, config: dict) -> str:
    """A table per dataset, the test accuracy per teacher and the learning curves."""
    parts = ["## Teacher pretraining"]
    header = ["teacher", "model", "seeds", "test acc (%)", "val acc (%)", "train s (mean)"]
    for dataset, sub in df.groupby("dataset", sort=True, dropna=False):
        rows = [[name, ", ".join(sorted(g["model"].dropna().unique())), len(g),
                 mean_std(column(g, "test_acc"), 100), mean_std(column(g, "val_acc"), 100),
                 number(column(g, "train_seconds").mean(), "{:.1f}")]
                for name, g in sub.groupby("name", sort=True)]
        parts += [f"### {dataset}", md_table(header, rows)]
    study = df["study"].iloc[0]
    if "test_acc" in df:
        rel = f"figures/{study}-pretrain-test_acc.png"
        metric_by_method(df, "test_acc", out_dir / rel)
        caption = "Test accuracy per teacher; blue: seeds, black: mean and " + BAND
        parts.append(figure(rel, caption))
    parts.append(learning_curves_figure(hist, out_dir, f"{study}-pretrain"))
    return "\n\n".join(p for p in parts if p)
