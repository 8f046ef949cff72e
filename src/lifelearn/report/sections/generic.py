"""Report section of a study without a module of its own: every scalar metric as
mean ± std per name, and the learning curves."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lifelearn.report.markdown import learning_curves_figure, md_table, mean_std
from lifelearn.report.results import ID_COLUMNS


def section(df: pd.DataFrame, hist: pd.DataFrame, out_dir: Path, config: dict) -> str:
    """Every scalar metric of one (study, stage) as mean ± std per name, and the learning curves."""
    study, stage = df["study"].iloc[0], df["stage"].iloc[0]
    metrics = [c for c in df.columns if c not in ID_COLUMNS and df[c].notna().any()]
    rows = [[name, len(g), *(mean_std(g[m], fmt="{:.4g}") for m in metrics)]
            for name, g in df.groupby("name", sort=True)]
    parts = [f"## Study `{study}`, stage `{stage}`",
             "Mean ± std over seeds (ddof=1).",
             md_table(["name", "seeds", *metrics], rows),
             learning_curves_figure(hist, out_dir, f"{study}-{stage}")]
    return "\n\n".join(p for p in parts if p)
