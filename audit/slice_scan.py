"""The paired slice scan as a plain function: per-slice paired gains of the adapted model (M2) over the base
probe (M1) and the no-transfer control (M0), gaps against the rest, one-sided McNemar p-values combined by an
intersection-union test, Benjamini-Hochberg across slices, and intervals on the refined shared bootstrap.
checks/slices.py turns a Scan into measurements and tables; docs/slices.md explains the method.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from .results import ModelRole
from .slice_stats import RefinedDraw, benjamini_hochberg, bin_column, candidate_slices, mcnemar_worse, membership

A, M1, M0 = ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value, ModelRole.NO_TRANSFER.value


class SliceMetric(str, Enum):
    ACCURACY = "accuracy"      # all rows of the slice
    TPR = "tpr"                # accuracy on the slice's positives (binary tasks)
    TNR = "tnr"                # accuracy on the slice's negatives (binary tasks)


# A row's scan cell: code = metric_row*16 + m2_right*8 + m1_right*4 + m0_right*2 + m2_selected. Every statistic
# below is a linear function of the counts of these 32 cells, so a slice is summarised by COEF (32 x 7).
_BITS = np.array([[(c >> s) & 1 for s in (4, 3, 2, 1, 0)] for c in range(32)])
_E, _R2, _R1, _R0, _SEL = _BITS.T
COLUMNS = ("n", "n_metric", "right_adapted", "right_base_probe", "right_no_transfer", "selected", "wrong")
COEF = np.stack([np.ones(32), _E, _E * _R2, _E * _R1, _E * _R0, _SEL, 1 - _R2], axis=1).astype(float)


def scan_codes(y, pred2, pred1, pred0, positive, metric: SliceMetric) -> np.ndarray:
    if metric is SliceMetric.ACCURACY:
        elig = np.ones(y.size, dtype=np.int64)
    else:
        elig = (y == positive) if metric is SliceMetric.TPR else (y != positive)
    sel = (pred2 == positive) if positive is not None else np.zeros(y.size, dtype=bool)
    return (elig.astype(np.int64) * 16 + (pred2 == y) * 8 + (pred1 == y) * 4 + (pred0 == y) * 2 + sel).astype(np.int64)


def slice_statistics(x: np.ndarray, total: np.ndarray, coef: np.ndarray = COEF) -> dict:
    """Gains and gaps from cell counts x (..., S, cells) of the slices and total (..., cells) of the whole split;
    coef holds the rows of COEF for the cells present."""
    v = (x.reshape(-1, x.shape[-1]) @ coef).reshape(*x.shape[:-1], coef.shape[1])
    t = (total @ coef)[..., None, :]
    rest = t - v
    with np.errstate(invalid="ignore", divide="ignore"):
        d1 = (v[..., 2] - v[..., 3]) / v[..., 1]
        d0 = (v[..., 2] - v[..., 4]) / v[..., 1]
        return {"gain_vs_both": np.maximum(d1, d0), "gain_vs_base_probe": d1, "gain_vs_no_transfer": d0,
                "selection_rate_gap": v[..., 5] / v[..., 0] - rest[..., 5] / rest[..., 0],
                "error_rate_gap": v[..., 6] / v[..., 0] - rest[..., 6] / rest[..., 0]}


@dataclass(frozen=True)
class Scan:
    """Every tested slice, in candidate order; arrays have one entry per slice."""

    labels: list[tuple[str, str]]          # (feature, value), e.g. ("occupation x age", "Sales & [28, 37)")
    n: np.ndarray
    n_metric: np.ndarray
    point: dict
    ci: dict                               # name -> (S, 2) array of interval ends
    p_vs: dict                             # role -> one-sided McNemar p-values
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray
    order: np.ndarray                      # slice indices, most surely harmful first
    redundant: int
    overall: dict


def scan(frame, y, preds: dict, columns, cells, positive, *, seed: int, min_n: int = 30, min_metric: int = 0,
         depth: int = 2, bins: int = 4, metric: SliceMetric = SliceMetric.ACCURACY, fdr: float = 0.10,
         ci_level: float = 0.95) -> Scan:
    """The paired slice scan on one split. preds maps adapted / base_probe / no_transfer to predicted class
    indices; cells is the split's shared stats.CellBootstrap (Evidence.cells), seed the statistics seed;
    positive is the positive class index of a binary task (None otherwise). A slice needs min_n rows, and
    min_metric of them among the rows the metric reads (tpr: positives, tnr: negatives)."""
    binned = [bin_column(frame[c], bins) for c in columns]
    codes = [b[0] for b in binned]
    row_codes = scan_codes(y, preds[A], preds[M1], preds[M0], positive, metric)
    slices = candidate_slices(codes, [len(b[1]) for b in binned], depth, min_n, row_codes >= 16, min_metric)
    present, code = np.unique(row_codes, return_inverse=True)
    coef, bits, k = COEF[present], _BITS[present], present.size        # only the scan cells that occur
    draw = RefinedDraw(cells, codes, seed)
    point_counts, samples = _slice_counts(slices, codes, code.reshape(-1), k, coef, draw)
    point = slice_statistics(point_counts, np.bincount(code.reshape(-1), minlength=k), coef)
    ci = {name: _intervals(v, ci_level) for name, v in samples.items()}
    metric_rows, right2 = bits[:, 0] == 1, bits[:, 1] == 1
    p_vs = {}
    for role, bit in ((M1, 2), (M0, 3)):
        right_other = bits[:, bit] == 1
        p_vs[role] = mcnemar_worse(point_counts[:, metric_rows & ~right2 & right_other].sum(1),
                                   point_counts[:, metric_rows & right2 & ~right_other].sum(1))
    p = np.maximum(p_vs[M1], p_vs[M0])                       # intersection-union test of "worse than both"
    q, significant = benjamini_hochberg(p, fdr)
    upper = ci["gain_vs_both"][:, 1]
    order = np.lexsort((point["gain_vs_both"], np.where(np.isfinite(upper), upper, np.inf)))
    labels = [(" x ".join(columns[c] for c in fam), " & ".join(binned[c][1][v] for c, v in zip(fam, val)))
              for fam, val in zip(slices.columns, slices.values)]
    t = np.bincount(code.reshape(-1), minlength=k) @ coef
    overall = {"gain_vs_base_probe": float((t[2] - t[3]) / t[1]) if t[1] else None,
               "gain_vs_no_transfer": float((t[2] - t[4]) / t[1]) if t[1] else None}
    return Scan(labels, slices.n, (point_counts @ coef)[:, 1].astype(np.int64), point, ci, p_vs, p, q,
                significant, order, slices.redundant, overall)


def _slice_counts(slices, codes, code, k: int, coef, draw: RefinedDraw):
    """Point cell counts (S, k) of every slice, and every statistic on every resample of the refined draw.

    A sparse matrix maps each fine cell of the draw to (slice, scan cell) for every slice it lies in, so one
    sparse product per chunk of resamples gives all slices' cell counts at once."""
    from scipy.sparse import csr_matrix

    s_total = len(slices)
    fine_code = code[draw.representative]
    rows, members = membership(slices, codes, draw.representative)
    z = csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, members * k + fine_code[rows])),
                   shape=(draw.n_fine, s_total * k))
    onehot = np.eye(k, dtype=np.float32)[fine_code]
    point = np.asarray(draw.sizes.astype(np.float32) @ z).reshape(s_total, k).astype(np.int64)
    samples = {name: np.empty((draw.n_boot, s_total), dtype=np.float32)
               for name in slice_statistics(point[:0], np.zeros(k), coef)}
    for start, w in draw.chunks():
        w = w.astype(np.float32)          # counts are below 2**24, so float32 holds them exactly
        got = slice_statistics(np.asarray(w @ z).reshape(w.shape[0], s_total, k), w @ onehot, coef)
        for name, v in got.items():
            samples[name][start:start + w.shape[0]] = v
    return point, samples


def _intervals(samples: np.ndarray, level: float) -> np.ndarray:
    """(S, 2) percentile intervals of samples (B, S) with numpy's default (linear) quantile, non-finite
    resamples left out as in stats.percentile_ci; NaN where a slice has none. One sort for all slices."""
    a = (1 - level) / 2
    x = np.sort(np.where(np.isfinite(samples), samples, np.nan).astype(float), axis=0)   # NaN sorts last
    k = np.isfinite(x).sum(axis=0)
    out = np.full((x.shape[1], 2), np.nan)
    cols = np.flatnonzero(k > 0)
    for j, q in enumerate((a, 1 - a)):
        pos = q * (k[cols] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, k[cols] - 1)
        frac = pos - lo
        out[cols, j] = x[lo, cols] + frac * (x[hi, cols] - x[lo, cols])
    return out
