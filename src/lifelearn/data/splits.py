"""Deterministic stratified splits (scikit-learn train_test_split, fixed seed)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

SPLIT_SEED = 0


def stratified_split(y: np.ndarray, held_out: int | float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held) of a stratified split of `y`; `held_out` is a count or a
    fraction as in train_test_split. Both index arrays are sorted, so each split
    keeps the source order."""
    from sklearn.model_selection import train_test_split  # lazy: ~1 s a job that only loads data

    kept, held = train_test_split(np.arange(len(y)), test_size=held_out, stratify=y, random_state=seed)
    return np.sort(kept), np.sort(held)


Split = tuple[np.ndarray, np.ndarray]


class Built(NamedTuple):
    """What a dataset builder returns: (x, y) per split and a line for meta "source"."""

    train: Split
    val: Split
    test: Split
    source: str


def carve(x: np.ndarray, y: np.ndarray, held_out: int | float, seed: int = SPLIT_SEED) -> tuple[Split, Split]:
    """Split (x, y) into stratified (kept, held) parts, see `stratified_split`."""
    kept, held = stratified_split(y, held_out, seed)
    return (x[kept], y[kept]), (x[held], y[held])
