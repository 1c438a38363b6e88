"""Metric pieces several checks share (kept here so checks never import one another)."""
from __future__ import annotations

import numpy as np

from ..stats import macro_f1_from_confusion, wcount


def accuracy_samples(y: np.ndarray, pred: np.ndarray, cells) -> np.ndarray:
    """Accuracy on every resample of the split's paired bootstrap (cells: stats.CellBootstrap)."""
    return cells.counts_of((y == pred).astype(np.int64), 2)[:, 1] / cells.n


def macro_f1_samples(y: np.ndarray, pred: np.ndarray, k: int, cells) -> np.ndarray:
    conf = cells.counts_of(y * k + pred, k * k).reshape(-1, k, k)
    return macro_f1_from_confusion(conf)


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int, weights=None) -> float:
    conf = wcount(y * k + pred, k * k, weights).reshape(k, k)
    return float(macro_f1_from_confusion(conf))


def group_codes(frame, columns) -> tuple[np.ndarray, list[str]]:
    """Integer group ids for one column or the intersection of several; names sorted for stable output."""
    if len(columns) > 1:
        values = frame[list(columns)].astype(str).agg(" & ".join, axis=1)
    else:
        values = frame[columns[0]].astype(str)
    names = sorted(values.unique())
    index = {v: i for i, v in enumerate(names)}
    return values.map(index).to_numpy(dtype=np.int64), names


# ---- group disparities from confusion counts shaped (..., G, K, K) [true, pred]: the bias check's ---------------
# ---- definitions, also decomposed by the slices check (drivers) ------------------------------------------------

DISPARITIES = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
               "equal_opportunity_difference", "accuracy_difference")
NEEDS_LABELS = {"equalized_odds_difference", "equal_opportunity_difference"}


def confusion_rates(conf: np.ndarray, classes) -> dict:
    """Per-group n, accuracy and per-class selection rate, TPR, FPR of counts (..., G, K, K) [true, pred]."""
    with np.errstate(invalid="ignore", divide="ignore"):
        n = conf.sum(axis=(-1, -2))
        out = {"n": n, "accuracy": np.trace(conf, axis1=-2, axis2=-1) / n}
        sel, tpr, fpr = [], [], []
        for c in classes:
            true_c = conf[..., c, :].sum(-1)
            pred_c = conf[..., :, c].sum(-1)
            tp = conf[..., c, c]
            sel.append(pred_c / n)
            tpr.append(tp / true_c)
            fpr.append((pred_c - tp) / (n - true_c))
        out["selection_rate"], out["tpr"], out["fpr"] = np.stack(sel, -1), np.stack(tpr, -1), np.stack(fpr, -1)
    return out          # per-class arrays have shape (..., G, C)


def _range(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """max - min over the groups in mask (axis -2 for (..., G, C) arrays); NaN groups ignored."""
    x = np.where(mask[..., None], x, np.nan)
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmax(x, axis=-2) - np.nanmin(x, axis=-2)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def disparities(conf: np.ndarray, classes, mask: np.ndarray, label_mask: np.ndarray) -> dict:
    """Every disparity for counts (..., G, K, K); groups outside mask (too small) are left out."""
    r = confusion_rates(conf, classes)
    with _quiet(), np.errstate(invalid="ignore", divide="ignore"):
        sel = np.where(mask[..., None], r["selection_rate"], np.nan)
        ratio = np.nanmin(sel, axis=-2) / np.nanmax(sel, axis=-2)
        acc = np.where(mask, r["accuracy"], np.nan)
        tpr_range, fpr_range = _range(r["tpr"], label_mask), _range(r["fpr"], label_mask)
        return {
            "demographic_parity_difference": np.nanmax(_range(r["selection_rate"], mask), axis=-1),
            "demographic_parity_ratio": np.nanmin(np.where(np.isfinite(ratio), ratio, np.nan), axis=-1),
            "equalized_odds_difference": np.nanmax(np.maximum(tpr_range, fpr_range), axis=-1),
            "equal_opportunity_difference": np.nanmax(tpr_range, axis=-1),
            "accuracy_difference": np.nanmax(acc, axis=-1) - np.nanmin(acc, axis=-1),
        }
