"""Load per-run metrics.json and history.csv files into tidy pandas tables."""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Iterable

import pandas as pd

from lifelearn.io import read_json

ID_COLUMNS = ["study", "stage", "name", "seed", "dataset", "model", "run_id", "result_dir"]
HISTORY_ID_COLUMNS = ["study", "stage", "name", "seed", "dataset"]
SORT_KEY = ["study", "name", "seed", "stage"]


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The real-valued entries of a metrics dict; lists (per_class_acc) and bools are dropped."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool)
    }


def _identity(data: dict) -> dict:
    row = {c: data.get(c) for c in ID_COLUMNS if c != "result_dir"}
    row["seed"] = int(row["seed"])
    return row


def load_results(metric_paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per metrics.json: ID_COLUMNS, then one float column per scalar metric (sorted).

    Rows are sorted by study, name, seed; a repeated (study, stage, name, seed) is an error.
    """
    rows = []
    for path in metric_paths:
        data = read_json(path)
        ident = _identity(data) | {"result_dir": str(Path(path).parent)}
        rows.append(ident | scalar_metrics(data.get("metrics", {})))
    metric_cols = sorted({k for r in rows for k in r} - set(ID_COLUMNS))
    df = pd.DataFrame(rows, columns=ID_COLUMNS + metric_cols)
    dup = df.duplicated(["study", "stage", "name", "seed"], keep=False)
    if dup.any():
        raise ValueError(f"duplicate runs:\n{df.loc[dup, ID_COLUMNS].to_string(index=False)}")
    df["seed"] = df["seed"].astype("int64")
    return df.sort_values(SORT_KEY, kind="stable").reset_index(drop=True)


def load_histories(
    history_paths: Iterable[str | Path], metric_paths: Iterable[str | Path]
) -> pd.DataFrame:
    """Stack history.csv files, each tagged with the identity of the metrics.json beside it."""
    by_dir = {Path(p).resolve().parent: _identity(read_json(p)) for p in metric_paths}
    frames = []
    for path in history_paths:
        ident = by_dir.get(Path(path).resolve().parent)
        if ident is None:
            raise ValueError(f"no metrics.json beside {path}")
        frame = pd.read_csv(path)
        for col in reversed(HISTORY_ID_COLUMNS):
            frame.insert(0, col, ident[col])
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=HISTORY_ID_COLUMNS + ["epoch"])
    hist = pd.concat(frames, ignore_index=True)
    return hist.sort_values(SORT_KEY + ["epoch"], kind="stable").reset_index(drop=True)
