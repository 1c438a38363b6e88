"""Mergeable sufficient statistics of predictions: what the predictions-only checks need from any number of rows,
computed per block and merged exactly, so nothing whose size grows with the rows ever reaches the driver.

- joint cell counts: label x every role's prediction x every sensitive column's value. The paired multinomial
  bootstrap (stats.CellBootstrap) depends on rows only through these counts, so `cell_bootstrap` reproduces its
  draws exactly; per-group confusion counts are margins of the same table.
- score histograms: each role's positive-class score on a fixed grid of GRID equal bins in [0, 1], per label and
  per split. AUC, PSI and KS come from them with a stated bound on the error against the exact value.
- a uniform sample of fixed size: bottom-k by a seeded hash of the row's content, so which rows are kept does not
  depend on how the rows were split into blocks or workers (rows needed by MMD, attribution, ...).
Merging is associative and commutative: any partition of the rows gives the same result.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

GRID = 4000           # histogram bins on [0, 1]: AUC error <= half the tied-pair mass (stated per result)
SAMPLE_SIZE = 1024


def score_bins(scores: np.ndarray) -> np.ndarray:
    return np.minimum((np.asarray(scores, dtype=np.float64) * GRID).astype(np.int64), GRID - 1)


def row_priority(frame, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each row's content (pandas' vectorised SipHash): the same row gets the same
    priority in any block, so the bottom-k sample does not depend on how rows were split."""
    import pandas as pd

    key = f"{seed:016d}"[-16:]
    return pd.util.hash_pandas_object(frame, index=False, hash_key=key).to_numpy(dtype=np.uint64)


@dataclass
class PredictionStats:
    """Sufficient statistics of one split's predictions; `merge` combines blocks exactly."""

    roles: tuple[str, ...]
    sensitive: tuple[str, ...]
    n_classes: int
    seed: int = 0
    sample_size: int = SAMPLE_SIZE
    cells: Counter = field(default_factory=Counter)          # (label, pred per role..., group value...) -> rows
    hist: dict = field(default_factory=dict)                 # role -> (n_classes, GRID) counts of positive score
    sample: list = field(default_factory=list)               # [(priority, text, label)] smallest priorities

    @property
    def n(self) -> int:
        return sum(self.cells.values())

    def add(self, labels, preds: dict, groups: dict, pos_scores: dict, priorities=None, payload=None
            ) -> PredictionStats:
        """One block: labels (n,), preds role -> (n,), groups column -> (n,) values, pos_scores role -> (n,);
        priorities (n,) uint64 content hashes (row_priority) and payload[i] (what the sample keeps of row i)."""
        import pandas as pd

        labels = np.asarray(labels, dtype=np.int64)
        cols = [labels] + [np.asarray(preds[r], dtype=np.int64) for r in self.roles]
        vocabs = []
        for c in self.sensitive:
            codes, vocab = pd.factorize(pd.Series(np.asarray(groups[c])).astype(str), sort=True)
            cols.append(codes.astype(np.int64))
            vocabs.append(list(vocab))
        if labels.size:
            uniq, counts = np.unique(np.stack(cols, axis=1), axis=0, return_counts=True)
            width = 1 + len(self.roles)
            for row, count in zip(uniq.tolist(), counts.tolist()):
                key = tuple(row[:width]) + tuple(v[i] for v, i in zip(vocabs, row[width:]))
                self.cells[key] += count
        for r in self.roles:
            flat = np.bincount(labels * GRID + score_bins(pos_scores[r]), minlength=self.n_classes * GRID)
            self.hist[r] = self.hist.get(r, 0) + flat.reshape(self.n_classes, GRID)
        if priorities is not None:
            priorities = np.asarray(priorities, dtype=np.uint64)
            keep = np.argsort(priorities, kind="stable")[: self.sample_size]
            self._keep(self.sample + [(int(priorities[i]), payload[i], int(labels[i])) for i in keep])
        return self

    def _keep(self, rows: list) -> None:
        self.sample = sorted(rows)[: self.sample_size]

    def merge(self, other: PredictionStats) -> PredictionStats:
        if (other.roles, other.sensitive, other.n_classes, other.seed) != (self.roles, self.sensitive,
                                                                           self.n_classes, self.seed):
            raise ValueError("statistics of different layouts cannot be merged")
        out = PredictionStats(self.roles, self.sensitive, self.n_classes, self.seed, self.sample_size,
                              self.cells + other.cells)
        out.hist = {r: self.hist.get(r, 0) + other.hist.get(r, 0) for r in self.roles}
        out._keep(self.sample + other.sample)
        return out

    # ---- what the checks read ---------------------------------------------------------------------------------
    def cell_table(self):
        """Cells as integer codes in the order CellBootstrap numbers them (group values factorized sorted), and
        their counts."""
        keys = sorted(self.cells)
        width = 1 + len(self.roles)
        codes = [np.array([k[i] for k in keys], dtype=np.int64) for i in range(width)]
        for j in range(len(self.sensitive)):
            values = [k[width + j] for k in keys]
            vocab = {v: i for i, v in enumerate(sorted(set(values)))}
            codes.append(np.array([vocab[v] for v in values], dtype=np.int64))
        matrix = np.stack(codes, axis=1) if keys else np.zeros((0, width + len(self.sensitive)), dtype=np.int64)
        counts = np.array([self.cells[k] for k in keys], dtype=np.int64)
        order = np.lexsort(matrix.T[::-1]) if len(keys) else np.arange(0)
        return matrix[order], counts[order]

    def cell_bootstrap(self, n_boot: int, seed: int) -> np.ndarray:
        """(n_boot, cells) multinomial counts: the same draw stats.CellBootstrap makes from the rows."""
        _, counts = self.cell_table()
        n = int(counts.sum())
        return np.random.default_rng(seed).multinomial(n, counts / max(n, 1), size=n_boot)

    def group_confusion(self, role: str, column: str, positive: int = 1) -> dict:
        """{group value: {tp, fp, tn, fn}} for one role's predictions (binary tasks)."""
        r, g = 1 + self.roles.index(role), 1 + len(self.roles) + self.sensitive.index(column)
        out: dict = {}
        for key, count in self.cells.items():
            c = out.setdefault(key[g], {"tp": 0, "fp": 0, "tn": 0, "fn": 0})
            actual, pred = key[0] == positive, key[r] == positive
            c[("t" if actual == pred else "f") + ("p" if pred else "n")] += count
        return out

    def accuracy(self, role: str) -> float:
        r = 1 + self.roles.index(role)
        return sum(c for k, c in self.cells.items() if k[0] == k[r]) / max(self.n, 1)

    def auc(self, role: str, positive: int = 1) -> tuple[float, float]:
        """ROC AUC from the histogram and the bound on |AUC - exact AUC| (stats.binned_auc)."""
        from .stats import binned_auc

        return binned_auc(self.hist[role], positive)


def score_shift(ref: PredictionStats, cur: PredictionStats, role: str, psi_bins: int = 10) -> dict:
    """PSI on psi_bins equal-width bins (exact: they are unions of grid bins) and KS with its grid bound: the
    exact KS differs by at most the largest share one grid bin holds in either split."""
    a, b = ref.hist[role].sum(0).astype(np.float64), cur.hist[role].sum(0).astype(np.float64)
    pa, pb = a / max(a.sum(), 1), b / max(b.sum(), 1)
    ks = float(np.abs(np.cumsum(pa) - np.cumsum(pb)).max())
    if GRID % psi_bins:
        raise ValueError(f"psi_bins must divide the grid ({GRID})")
    coarse_a, coarse_b = pa.reshape(psi_bins, -1).sum(1), pb.reshape(psi_bins, -1).sum(1)
    eps = 1e-6
    qa, qb = np.clip(coarse_a, eps, None), np.clip(coarse_b, eps, None)
    psi = float(((qb - qa) * np.log(qb / qa)).sum())
    return {"psi": psi, "ks": ks, "ks_bound": float(max(pa.max(), pb.max()))}


def to_json(s: PredictionStats) -> str:
    """A block's statistics as JSON (no pickle crosses workers): cells as rows, histograms sparse."""
    import json

    hist = {}
    for r, h in s.hist.items():
        k, b = np.nonzero(h)
        hist[r] = [k.tolist(), b.tolist(), h[k, b].tolist()]
    return json.dumps({"roles": s.roles, "sensitive": s.sensitive, "k": s.n_classes, "seed": s.seed,
                       "size": s.sample_size, "cells": [[*key, c] for key, c in s.cells.items()], "hist": hist,
                       "sample": s.sample})


def from_json(text: str) -> PredictionStats:
    import json

    d = json.loads(text)
    width = 1 + len(d["roles"])
    s = PredictionStats(tuple(d["roles"]), tuple(d["sensitive"]), d["k"], d["seed"], d["size"],
                        Counter({tuple(int(v) for v in row[:width]) + tuple(row[width:-1]): row[-1]
                                 for row in d["cells"]}))
    for r, (k, b, c) in d["hist"].items():
        h = np.zeros((s.n_classes, GRID), dtype=np.int64)
        h[np.asarray(k, dtype=np.int64), np.asarray(b, dtype=np.int64)] = c
        s.hist[r] = h
    s.sample = [tuple(row) for row in d["sample"]]
    return s
