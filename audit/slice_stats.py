"""Statistics of the slice scan: binning, candidate slices, refined bootstrap draws, one-sided McNemar, BH.

A slice is a conjunction of column values (``occupation=Sales & age=[28, 37)``). Its bootstrap counts come from
the split's shared CellBootstrap, refined: every resample's count of a shared cell (label, each role's
prediction, each sensitive column) is split among that cell's rows by drawing that many rows uniformly with
replacement. Given the shared counts this is exactly the conditional multinomial of the finer cells, so the
refined draw is an exact row resample whose totals per shared cell equal the shared draw on every resample:
the scan is paired with every other check, and their results do not move (the shared draw is read, never
redrawn).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

REFINE_CHUNK = 50          # resamples refined at once; fixed so results do not depend on memory settings
REFINE_SALT = 0x511CE5     # separates the refinement's random stream from the shared draw's


def bin_column(values, bins: int) -> tuple[np.ndarray, list[str]]:
    """Integer codes and labels for one column.

    Numeric columns with more than ``bins`` distinct values are binned on the audited split: a value that holds
    at least 1/bins of the rows is its own bin (``= 0`` for capital gain, ``= 40`` hours), the other values are
    cut at their quantiles into the remaining bins, intervals closed on the left (``[28, 37)``), the last one
    closed; a point-mass value inside an interval also cuts it (``[35, 40)``, ``(40, 50)``); for whole-number
    columns the cut points are rounded up to whole numbers (the same rows, readable labels).
    Everything else is categorical, one code per value. Missing values form their own group ``missing``.
    """
    import pandas as pd

    s = pd.Series(values).reset_index(drop=True)
    missing = s.isna().to_numpy()
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if not numeric or s[~missing].nunique() <= bins:
        text = s.astype(str).where(~missing, "missing")
        names = sorted(text.unique(), key=lambda v: (v == "missing", _sort_key(v, s, numeric)))
        index = {v: i for i, v in enumerate(names)}
        return text.map(index).to_numpy(dtype=np.int64), names
    x = s.to_numpy(dtype=float)
    present = ~missing
    uniq, counts = np.unique(x[present], return_counts=True)
    points = uniq[counts >= present.sum() / bins]
    found = [(p, f"= {_num(p)}", x == p) for p in points]          # (sort key, label, rows)
    rest = present & ~np.isin(x, points)
    if rest.any():
        edges = np.quantile(x[rest], np.linspace(0, 1, max(bins - len(points), 1) + 1))
        if np.all(x[rest] == np.round(x[rest])):     # whole numbers: x >= 48.67 is x >= 49, so say 49
            edges = np.ceil(edges)
        inside = points[(points > edges[0]) & (points < edges[-1])]
        edges = np.unique(np.r_[edges, inside])      # a point-mass value also cuts the interval it falls in
        if edges.size == 1:                          # a single value left over: a bin of its own
            edges = np.r_[edges, edges]
        which = np.searchsorted(edges[1:-1], x, side="right")
        for b in np.unique(which[rest]):
            lo, hi = edges[b], edges[b + 1]
            opening = "(" if lo in points else "["   # the point itself is its own bin
            close = "]" if b == edges.size - 2 else ")"
            found.append((lo, f"{opening}{_num(lo)}, {_num(hi)}{close}", rest & (which == b)))
    found.sort(key=lambda t: t[0])
    if missing.any():
        found.append((np.inf, "missing", missing))
    codes = np.empty(x.size, dtype=np.int64)
    for i, (_, _, rows) in enumerate(found):
        codes[rows] = i
    return codes, [label for _, label, _ in found]


def _num(v: float) -> str:
    return f"{v:.4g}" if not float(v).is_integer() else str(int(v))


def _sort_key(v: str, s, numeric: bool):
    if numeric and v != "missing":
        return (0, float(v), "")
    return (1, 0.0, v)


@dataclass(frozen=True)
class Slices:
    """Candidate slices: for slice s, the columns it fixes (indices into names) and their value codes."""

    columns: tuple[tuple[int, ...], ...]
    values: tuple[tuple[int, ...], ...]
    n: np.ndarray                        # rows of the split in each slice
    redundant: int                       # intersections dropped because they equal one of their parents

    def __len__(self) -> int:
        return len(self.columns)


def candidate_slices(codes: list[np.ndarray], sizes: list[int], depth: int, min_n: int,
                     metric_rows: np.ndarray | None = None, min_metric: int = 0) -> Slices:
    """Every value of every column and every intersection of up to ``depth`` columns with at least ``min_n``
    rows (and ``min_metric`` of the ``metric_rows``) and at least one row outside it. An intersection with as
    many rows as one of its parents is the same set of rows as that parent and is dropped (it would be the same
    test counted twice)."""
    total = codes[0].size if codes else 0
    cols, vals, ns = [], [], []
    seen: dict[tuple, dict[tuple, int]] = {}          # columns -> {values: n} of every large-enough slice
    redundant = 0
    for d in range(1, depth + 1):
        for family in combinations(range(len(codes)), d):
            shape = [sizes[c] for c in family]
            flat_keys, inverse, counts = np.unique(np.ravel_multi_index([codes[c] for c in family], shape),
                                                   return_inverse=True, return_counts=True)   # combinations that occur
            seen[family] = {}
            keep = (counts >= min_n) & (counts < total)
            if metric_rows is not None:
                keep &= np.bincount(inverse.reshape(-1), weights=metric_rows, minlength=counts.size) >= min_metric
            for flat, n in zip(flat_keys[keep], counts[keep]):
                value = tuple(int(v) for v in np.unravel_index(flat, shape))
                n = int(n)
                seen[family][value] = n
                if d > 1 and any(seen[family[:i] + family[i + 1:]].get(value[:i] + value[i + 1:]) == n
                                 for i in range(d)):
                    redundant += 1
                    continue
                cols.append(family)
                vals.append(value)
                ns.append(n)
    return Slices(tuple(cols), tuple(vals), np.asarray(ns, dtype=np.int64), redundant)


def membership(slices: Slices, codes: list[np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, slice) index pairs for the given rows (one representative row per fine cell)."""
    r_idx, s_idx = [], []
    by_family: dict[tuple, list[int]] = {}
    for s, family in enumerate(slices.columns):
        by_family.setdefault(family, []).append(s)
    for family, members in by_family.items():
        sizes = [int(max(codes[c].max(), 0)) + 1 for c in family]
        key = np.ravel_multi_index([codes[c][rows] for c in family], sizes)
        slice_keys = np.array([np.ravel_multi_index(slices.values[s], sizes) for s in members])
        order = np.argsort(slice_keys)
        at = np.minimum(np.searchsorted(slice_keys[order], key), len(members) - 1)
        inside = np.flatnonzero(slice_keys[order][at] == key)
        r_idx.append(inside)
        s_idx.append(np.asarray(members)[order][at[inside]])
    if not r_idx:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(r_idx), np.concatenate(s_idx)


class RefinedDraw:
    """The shared bootstrap refined by extra per-row keys, replayable chunk by chunk.

    ``parent`` is a stats.CellBootstrap. Each resample's count of a parent cell is split among that cell's rows
    by drawing that many of them uniformly with replacement; the resulting counts of the fine cells (parent cell
    x extra keys) sum back to the parent's counts exactly. Chunks are seeded by (seed, chunk index), so the same
    resample is drawn whoever asks for it and however often.
    """

    def __init__(self, parent, extra_keys: list[np.ndarray], seed: int):
        keys = np.stack([parent.cell_of_row] + [np.asarray(k, dtype=np.int64) for k in extra_keys], axis=1)
        _, first, self.fine_of_row = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        self.fine_of_row = self.fine_of_row.reshape(-1)
        self.representative = first                       # one row of each fine cell
        self.n_fine = int(first.size)
        self.sizes = np.bincount(self.fine_of_row, minlength=self.n_fine)
        self.parent, self.seed = parent, seed
        order = np.argsort(parent.cell_of_row, kind="stable")
        self._fine_sorted = self.fine_of_row[order]
        cell_n = np.bincount(parent.cell_of_row, minlength=parent.n_cells)
        self._start = np.r_[0, np.cumsum(cell_n)[:-1]]
        self._cell_n = cell_n
        self.n_boot = parent.counts.shape[0]

    def chunks(self):
        """Yields (first resample, counts (m, n_fine)) over all resamples, REFINE_CHUNK at a time."""
        for i, start in enumerate(range(0, self.n_boot, REFINE_CHUNK)):
            yield start, self.chunk(i)

    def chunk(self, i: int) -> np.ndarray:
        parent = self.parent.counts[i * REFINE_CHUNK:(i + 1) * REFINE_CHUNK]
        m, n = parent.shape[0], self.parent.n
        rng = np.random.default_rng([self.seed, REFINE_SALT, i])
        cell = np.repeat(np.tile(np.arange(self.parent.n_cells), m), parent.ravel())
        pos = self._start[cell] + (rng.random(cell.size) * self._cell_n[cell]).astype(np.int64)
        which = np.repeat(np.arange(m, dtype=np.int64), n) * self.n_fine + self._fine_sorted[pos]
        return np.bincount(which, minlength=m * self.n_fine).reshape(m, self.n_fine)


def mcnemar_worse(worse, better) -> np.ndarray:
    """One-sided exact McNemar p-values for "A is less accurate than B": worse = pairs where only B is right,
    better = pairs where only A is right. p = P(Bin(worse + better, 1/2) >= worse); 1 without discordant pairs."""
    from scipy.special import bdtrc

    worse, better = np.asarray(worse, dtype=float), np.asarray(better, dtype=float)
    total = worse + better
    with np.errstate(invalid="ignore"):
        p = bdtrc(worse - 1, total, 0.5)                 # P(X > worse - 1)
    return np.where((total > 0) & (worse > 0), p, 1.0)


def benjamini_hochberg(p_values, fdr: float) -> tuple[np.ndarray, np.ndarray]:
    """BH-adjusted p-values (q-values, same order) and which hypotheses are rejected at the given FDR."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p.copy(), np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = np.empty(m)
    q[order] = q_sorted
    return q, q <= fdr
