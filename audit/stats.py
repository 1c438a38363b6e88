"""Statistics shared by every check: seeded bootstrap indices, Wilson intervals, Holm, McNemar, AUC.

The bootstrap is *paired*: one matrix of resampled row indices per split is drawn once and reused by every
metric and model role, so differences between roles are computed on the same resamples (methods §8).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .options import option

DEFAULT_N_BOOT = 2000
Z95 = 1.959963984540054


@dataclass(frozen=True)
class StatsConfig:
    """The statistics settings every check runs under: the policy's `defaults` block (policy.Defaults)."""

    ci_level: float = option(0.95, "confidence level of every interval", lo=0.5, hi=0.999)
    n_boot: int = option(2000, "bootstrap resamples (paired: one draw per split, shared by every metric and model)",
                         lo=100, hi=100000)
    seed: int = option(0, "seed of the statistics (bootstrap, permutations, samples); the spec's seed drives data "
                          "sampling and training", lo=0)
    min_group_n: int = option(30, "a group with fewer rows is INSUFFICIENT_DATA and gets no number", lo=1)
    min_pos: int = option(10, "positives a group needs for its TPR", lo=0)
    min_neg: int = option(10, "negatives a group needs for its FPR", lo=0)


def bootstrap_indices(n: int, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n) int32 matrix of row indices drawn with replacement; deterministic under the seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n), dtype=np.int32)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    a = (1 - level) / 2
    lo, hi = np.quantile(samples, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_mean_ci(values, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95):
    """Percentile CI of a mean by resampling the (finite) values; None when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    idx = bootstrap_indices(v.size, n_boot, seed)
    return percentile_ci(v[idx].mean(axis=1), level)


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    if n <= 0:
        return None
    z = Z95 if level == 0.95 else _z(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends when no (or every) row succeeds: centre - half is then 0 up to rounding (6.9e-18 was printed)
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi


def _z(level: float) -> float:
    """Two-sided normal quantile; NormalDist (AS241, ~1e-16) costs microseconds where scipy's costs a millisecond,
    which matters when every group of every family gets an interval at its adjusted level."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - (1 - level) / 2)


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as given); NaNs stay NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """Exact two-sided McNemar p-value on paired correctness; returns (p, b, c) with b=A right/B wrong."""
    from scipy.stats import binomtest

    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    if b + c == 0:
        return 1.0, b, c
    return float(binomtest(b, b + c, 0.5).pvalue), b, c


def wcount(codes: np.ndarray, n_codes: int, weights=None) -> np.ndarray:
    """np.bincount as int64 counts of rows, each entry counting `weights[i]` rows (None: one)."""
    if weights is None:
        return np.bincount(codes, minlength=n_codes).astype(np.int64)
    return np.rint(np.bincount(codes, weights=weights, minlength=n_codes)).astype(np.int64)


def resampled_counts(codes: np.ndarray, n_codes: int, idx: np.ndarray) -> np.ndarray:
    """Counts of each code in every bootstrap resample: (n_boot, n_codes), one bincount call."""
    n_boot = idx.shape[0]
    flat = (np.arange(n_boot, dtype=np.int64)[:, None] * n_codes + codes[idx]).ravel()
    return np.bincount(flat, minlength=n_boot * n_codes).reshape(n_boot, n_codes)


def row_weights(idx: np.ndarray, n: int) -> np.ndarray:
    """(n_boot, n) multiplicity of each original row in each resample."""
    return resampled_counts(np.arange(n), n, idx)


def auc_from_weights(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney, ties count half) for each row of a weight matrix, fully vectorised.

    weights[b, i] is how often row i appears in resample b; weights of ones gives the plain AUC.
    """
    weights = np.atleast_2d(weights).astype(np.float64)
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = weights[:, order]
    pos = positive[order].astype(bool)
    pos_g = np.add.reduceat(w * pos, starts, axis=1)
    neg_g = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    num = np.sum(pos_g * (neg_below + 0.5 * neg_g), axis=1)
    den = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def macro_f1_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Macro F1 from confusion counts shaped (..., K, K) [true, pred]; absent classes count as in sklearn
    (F1 = 0 when a class has neither true nor predicted rows is excluded via zero_division=0 semantics)."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1).astype(float)
    pred = conf.sum(axis=-2).astype(float)
    true = conf.sum(axis=-1).astype(float)
    denom = pred + true
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    present = (true + pred) > 0
    return np.sum(f1 * present, axis=-1) / np.maximum(present.sum(axis=-1), 1)


class CellBootstrap:
    """Paired bootstrap over rows, drawn as multinomial counts of joint cells.

    Every metric the checks bootstrap (confusion counts per group and model role) depends on a row only
    through a few discrete keys: the label, each role's prediction, each sensitive group. Resampling n rows
    with replacement is then exactly a Multinomial(n, cell shares) draw over the joint cells of those keys,
    so one (n_boot x cells) matrix replaces the (n_boot x n) index matrix: the same distribution, shared by
    every metric and role (paired), at a cost that does not grow with n (1M rows fit in a few MB).
    """

    def __init__(self, keys: list[np.ndarray], n_boot: int = DEFAULT_N_BOOT, seed: int = 0, weights=None):
        """weights: rows each entry stands for (a streamed split's cells, stream.py); None: one row each.
        Cells of weighted entries get the same shares, so the same draw, as the rows they stand for."""
        matrix = np.stack([np.asarray(k, dtype=np.int64) for k in keys], axis=1)
        _, self.cell_of_row = np.unique(matrix, axis=0, return_inverse=True)
        self.cell_of_row = self.cell_of_row.reshape(-1)
        self.n_cells = int(self.cell_of_row.max()) + 1 if matrix.shape[0] else 0
        rows = wcount(self.cell_of_row, self.n_cells, weights)
        self.n = int(rows.sum())
        shares = rows / max(self.n, 1)
        self.counts = np.random.default_rng(seed).multinomial(self.n, shares, size=n_boot)   # (B, J)

    def counts_of(self, codes: np.ndarray, n_codes: int) -> np.ndarray:
        """(n_boot, n_codes) resampled counts of a per-row code that is a function of the keys."""
        code_of_cell = np.zeros(self.n_cells, dtype=np.int64)
        code_of_cell[self.cell_of_row] = codes
        if np.any(code_of_cell[self.cell_of_row] != codes):
            raise ValueError("codes must be a function of the bootstrap keys")
        onehot = np.zeros((self.n_cells, n_codes))
        onehot[np.arange(self.n_cells), code_of_cell] = 1.0
        return (self.counts @ onehot).round().astype(np.int64)


def hanley_mcneil(auc: float, n1: int, n0: int, level: float = 0.95) -> tuple[float, float]:
    """Normal interval of ROC AUC from its Hanley-McNeil (1982) standard error (n1 positives, n0 negatives)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    se = math.sqrt((auc * (1 - auc) + (n1 - 1) * (q1 - auc ** 2) + (n0 - 1) * (q2 - auc ** 2)) / max(n1 * n0, 1))
    z = Z95 if level == 0.95 else _z(level)
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def binned_auc(hist: np.ndarray, positive: int) -> tuple[float, float]:
    """ROC AUC from per-class score histograms (K, bins) on a fixed grid, ties within a bin counting half, and the
    bound on its distance from the exact AUC: half the share of positive-negative pairs that share a bin."""
    pos = hist[positive].astype(np.float64)
    neg = np.delete(hist, positive, axis=0).sum(0).astype(np.float64)
    n1, n0 = pos.sum(), neg.sum()
    if n1 == 0 or n0 == 0:
        return float("nan"), 0.0
    below = np.cumsum(neg) - neg
    same = float((pos * neg).sum())
    return float(((pos * below).sum() + 0.5 * same) / (n1 * n0)), 0.5 * same / (n1 * n0)


def auc_bootstrap(scores: np.ndarray, positive: np.ndarray, n_boot: int, seed: int, level: float = 0.95,
                  chunk: int = 50, max_rows: int = 5_000):
    """Percentile CI of ROC AUC by row resampling, in chunks of resamples to bound memory; above max_rows the
    Hanley-McNeil normal interval is used (resampling a million scores 2,000 times is not worth it)."""
    n = scores.size
    if n > max_rows:
        auc = float(auc_from_weights(scores, positive, np.ones((1, n)))[0])
        n1 = int(positive.sum())
        return hanley_mcneil(auc, n1, n - n1, level), "Hanley-McNeil"
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n), dtype=np.int32)
        out.append(auc_from_weights(scores, positive, row_weights(idx, n)))
    return percentile_ci(np.concatenate(out), level), "bootstrap"
