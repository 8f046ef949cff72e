"""Markdown building blocks of the report: tables, 'mean ± std' cells, numbers, figures
with their captions (the caption format figure_captions in writer.py parses)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from lifelearn.report.figures import BAND, learning_curves


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: Iterable[list]) -> str:
    """A GitHub markdown table; cells are stringified and pipes escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def number(x, fmt: str = "{:.4f}") -> str:
    """`x` formatted with `fmt`; 'n/a' for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def mean_std(values: pd.Series, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    """'mean ± std' of the non-missing values (std over seeds, ddof=1; omitted for one value)."""
    v = values.dropna() * scale
    if v.empty:
        return "n/a"
    return fmt.format(v.mean()) + ("" if len(v) < 2 else " ± " + fmt.format(v.std(ddof=1)))


def column(g: pd.DataFrame, name: str) -> pd.Series:
    """Column `name` of `g`, or an empty float series when `g` has none."""
    return g[name] if name in g else pd.Series(dtype=float)


def figure(rel: str, caption: str) -> str:
    """The markdown of figure `rel` (relative to the README) and its caption."""
    return f"![{Path(rel).stem}]({rel})\n\n*{caption}.*"


def learning_curves_figure(hist: pd.DataFrame, out_dir: Path, stem: str) -> str:
    """Draw out_dir/figures/<stem>-learning-curves.png and return its markdown; '' when
    `hist` has no validation accuracy."""
    if hist.empty or "val_acc" not in hist:
        return ""
    rel = f"figures/{stem}-learning-curves.png"
    learning_curves(hist, out_dir / rel)
    return figure(rel, f"Validation accuracy per epoch; line: mean over seeds, band: {BAND}")
