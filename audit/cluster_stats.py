"""Intervals over clustered pairs: one source text yields several swapped texts, whose outcomes are correlated.

Treating the n pairs as independent (a Wilson interval on n) understates the variance by the design effect
deff = Var_cluster(p) / (p (1 - p) / n), about 1 + (m - 1) * ICC for clusters of m pairs. The cluster bootstrap
resamples whole source texts (each keeps all its pairs) and estimates that variance without a model of the
correlation. The decision interval is Wilson's at the effective sample size n / deff: it keeps Wilson's good
behaviour near 0 and 1 (where a percentile bootstrap collapses to a point: 0 flips in every resample) and the
Bonferroni levels of simultaneous decisions, and it is as wide as the clustering makes it.

deff is clipped to [1, sum(m_c^2) / n]: the upper end is the design effect when every cluster is all-or-nothing
(ICC = 1), which is also what p in {0, 1} gets, since there the data cannot estimate it.
"""
from __future__ import annotations

import numpy as np

from .stats import wilson_ci


def cluster_weights(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_clusters) multiplicity of each cluster in each resample of the clusters."""
    from .stats import bootstrap_indices, row_weights

    return row_weights(bootstrap_indices(n_clusters, n_boot, seed), n_clusters)


def cluster_sums(cluster: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of values, pairs) per cluster, clusters numbered 0..C-1."""
    c = int(cluster.max()) + 1
    return (np.bincount(cluster, weights=values.astype(float), minlength=c),
            np.bincount(cluster, minlength=c).astype(float))


def ratio_resamples(sums: np.ndarray, sizes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The pooled mean sum(values) / sum(pairs) in each cluster resample."""
    return (weights @ sums) / np.maximum(weights @ sizes, 1.0)


def design_effect(p: float, resamples: np.ndarray, sizes: np.ndarray) -> float:
    n = float(sizes.sum())
    top = float((sizes ** 2).sum() / n)
    if p <= 0.0 or p >= 1.0:
        return top
    return float(np.clip(np.var(resamples, ddof=1) / (p * (1 - p) / n), 1.0, top))


def clustered_proportion(flags: np.ndarray, cluster: np.ndarray, n_boot: int, seed: int):
    """(p, deff, interval_at(level)) for a proportion over clustered pairs (see the module docstring)."""
    sums, sizes = cluster_sums(cluster, flags)
    n, x = float(sizes.sum()), float(sums.sum())
    p = x / n
    deff = design_effect(p, ratio_resamples(sums, sizes, cluster_weights(sizes.size, n_boot, seed)), sizes)
    return p, deff, lambda level: wilson_ci(x / deff, n / deff, level)
