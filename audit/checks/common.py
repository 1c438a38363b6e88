"""Metric pieces several checks share (kept here so checks never import one another)."""
from __future__ import annotations

import numpy as np

from ..stats import macro_f1_from_confusion


def accuracy_samples(y: np.ndarray, pred: np.ndarray, cells) -> np.ndarray:
    """Accuracy on every resample of the split's paired bootstrap (cells: stats.CellBootstrap)."""
    return cells.counts_of((y == pred).astype(np.int64), 2)[:, 1] / cells.n


def macro_f1_samples(y: np.ndarray, pred: np.ndarray, k: int, cells) -> np.ndarray:
    conf = cells.counts_of(y * k + pred, k * k).reshape(-1, k, k)
    return macro_f1_from_confusion(conf)


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    conf = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    return float(macro_f1_from_confusion(conf))


def group_codes(frame, columns) -> tuple[np.ndarray, list[str]]:
    """Integer group ids for one column or the intersection of several; names sorted for stable output."""
    values = frame[list(columns)].astype(str).agg(" & ".join, axis=1) if len(columns) > 1 else frame[columns[0]].astype(str)
    names = sorted(values.unique())
    index = {v: i for i, v in enumerate(names)}
    return values.map(index).to_numpy(dtype=np.int64), names
