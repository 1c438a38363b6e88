"""Drift statistics as plain functions: the MMD² permutation test on embeddings, per-column two-sample tests
with their effect sizes, and PSI with its permutation null."""
from __future__ import annotations

import numpy as np


def pooled_pca(x: np.ndarray, y: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Both samples projected on the top principal components of the POOLED sample.

    Why pooled, not the reference alone: the permutation test is exact only when the statistic treats every
    row alike, so that relabelling rows leaves its distribution unchanged. A projection fitted on the
    reference rows depends on which rows carry that label: the reference is then spread along its own fitted
    axes and the current sample is not, which a permutation never reproduces. With 384-d embeddings and 150
    rows a side that made 100% of no-drift runs significant. A pooled fit is a symmetric function of all
    rows, so the p-value is exact at any n. The other valid choice, a projection fitted on a held-out half of
    the reference, is exact too but tests only half the reference rows and cannot see a shift along a
    direction the reference barely varies in; the pooled fit sees it, because a mean shift adds pooled
    variance along its own direction. The price: the projection (so the MMD² value) depends on the current
    window; compare windows by their p-values and effect sizes, not raw MMD² values.
    """
    from scipy.linalg import eigh

    z = np.vstack([x, y]).astype(np.float64)
    z -= z.mean(0)
    n, d = z.shape
    k = int(min(components, d, n - 1))
    if d <= n:      # top eigenvectors of the d x d scatter: the principal axes
        _, vec = eigh(z.T @ z, subset_by_index=[d - k, d - 1])
        scores = z @ vec[:, ::-1]
    else:           # fewer rows than dimensions: the n x n Gram matrix gives the scores directly
        val, vec = eigh(z @ z.T, subset_by_index=[n - k, n - 1])
        scores = vec[:, ::-1] * np.sqrt(np.clip(val[::-1], 0.0, None))
    return scores[: len(x)], scores[len(x):], k


def _permutation_indicators(m: int, n: int, n_perm: int, rng) -> np.ndarray:
    """(n_perm, m + n) 0/1 rows, each marking m rows drawn without replacement as the 'first sample'."""
    order = np.argpartition(rng.random((n_perm, m + n)), m - 1, axis=1)[:, :m]
    a = np.zeros((n_perm, m + n), dtype=np.float32)
    np.put_along_axis(a, order, 1.0, axis=1)
    return a


def median_bandwidth(z: np.ndarray, rng, max_rows: int = 1000) -> float:
    """Median squared distance between pooled rows (the median heuristic), over at most `max_rows` rows drawn
    at random from the pooled sample. The draw ignores which sample a row came from, so the bandwidth stays a
    symmetric function of the pooled rows and the permutation test stays exact."""
    from scipy.spatial.distance import pdist

    rows = z if len(z) <= max_rows else z[np.sort(rng.choice(len(z), max_rows, replace=False))]
    return float(np.median(pdist(rows, "sqeuclidean"))) or 1.0


def mmd_permutation_test(x: np.ndarray, y: np.ndarray, n_perm: int = 999, seed: int = 0,
                         max_rows: int = 1000) -> dict:
    """Unbiased MMD² with an RBF kernel (median-heuristic bandwidth) and a seeded permutation p-value.

    Every statistic is a quadratic form of the one pooled kernel matrix K (zero diagonal): with `a` marking
    the first sample, b = 1 - a and r = K1, the three block sums are a'Ka, a'r - a'Ka and 1'K1 - 2a'r + a'Ka.
    So B permutations cost one (N x N) @ (N x B) product. The p-value counts the observed labelling as one of
    the permutations, (1 + #{null >= observed}) / (1 + B), so P(p <= alpha) <= alpha under no drift for any
    B, with equality when alpha * (B + 1) is a whole number (B = 99 or 999 at 5% and 1%). K is kept in
    float32: it halves the O(N²) time and memory, and its rounding (about 1e-7 relative) is far below the
    spread of the permutation null.
    """
    rng = np.random.default_rng(seed)
    if len(x) > max_rows:
        x = x[np.sort(rng.choice(len(x), max_rows, replace=False))]
    if len(y) > max_rows:
        y = y[np.sort(rng.choice(len(y), max_rows, replace=False))]
    z = np.vstack([x, y]).astype(np.float64)
    z -= z.mean(0)                    # distances are unchanged; smaller norms keep the expansion below accurate
    m, n = len(x), len(y)
    sigma2 = median_bandwidth(z, rng)
    # -||zi - zj||² / s² = 2 zi.zj / s² - |zi|² / s² - |zj|² / s², built in place in one N x N float32 array
    sq = (np.sum(z * z, 1) / sigma2).astype(np.float32)
    w = (z * np.sqrt(2.0 / sigma2)).astype(np.float32)
    k = w @ w.T
    k -= sq[:, None]
    k -= sq[None, :]
    np.minimum(k, 0.0, out=k)
    np.exp(k, out=k)
    np.fill_diagonal(k, 0.0)
    r = k.sum(1, dtype=np.float64)
    total = float(r.sum())
    cxx, cyy, cxy = 1.0 / (m * (m - 1)), 1.0 / (n * (n - 1)), 2.0 / (m * n)

    def stat(a: np.ndarray) -> np.ndarray:
        """MMD² for indicator rows a (B, N) from q = a'Ka and t = a'r."""
        q = np.einsum("bi,bi->b", a, a @ k, dtype=np.float64)
        t = a @ r
        return cxx * q + cyy * (total - 2 * t + q) - cxy * (t - q)

    first = np.zeros((1, m + n), dtype=np.float32)
    first[0, :m] = 1.0
    observed = float(stat(first)[0])
    null = np.concatenate([stat(_permutation_indicators(m, n, min(256, n_perm - i), rng))
                           for i in range(0, n_perm, 256)])
    p = (1 + int(np.sum(null >= observed))) / (1 + n_perm)
    return {"mmd2": observed, "mmd": float(np.sqrt(max(observed, 0.0))), "p_value": p,
            "bandwidth_sigma2": sigma2, "permutations": n_perm, "null_mean": float(null.mean()),
            "null_q95": float(np.quantile(null, 0.95)), "n_ref": m, "n_cur": n}


def embedding_mmd_test(reference: np.ndarray, current: np.ndarray, components: int, n_perm: int, seed: int,
                       max_rows: int = 1000) -> dict:
    """The embedding drift test of the check: pooled PCA, then the MMD² permutation test."""
    r, c, k = pooled_pca(reference, current, components)
    return dict(mmd_permutation_test(r, c, n_perm, seed, max_rows), pca_components=k)


# ---- per-column tests: statistic, effect size, p-value ---------------------------------------------------------

def ks_with_effect(reference, current) -> dict:
    """Two-sample KS (statistic D, p-value) and the Wasserstein-1 distance in reference standard deviations,
    the effect size that says how far the distribution moved (evidently's "normed Wasserstein")."""
    from scipy.stats import ks_2samp, wasserstein_distance

    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    r, c = r[np.isfinite(r)], c[np.isfinite(c)]
    if r.size == 0 or c.size == 0:
        return {"statistic": float("nan"), "statistic_name": "KS D", "effect_size": float("nan"),
                "effect_size_name": "Wasserstein / reference sd", "p_value": 1.0}
    import warnings

    # scipy's exact KS needs O(n1 * n2) memory (1.7 GB and 6 s at 10k rows); the asymptotic p-value is
    # accurate long before that. With ties the exact method falls back to it with a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ks = ks_2samp(r, c, method="exact" if max(r.size, c.size) <= 2000 else "asymp")
    sd = float(np.std(r))
    w = float(wasserstein_distance(r, c))
    return {"statistic": float(ks.statistic), "statistic_name": "KS D", "p_value": float(ks.pvalue),
            "effect_size": w / sd if sd > 0 else (0.0 if w == 0 else float("inf")),
            "effect_size_name": "Wasserstein / reference sd"}


def category_table(reference, current, min_count: int = 10):
    """The 2 x K count table of a categorical column; categories seen fewer than `min_count` times in both
    samples together are pooled into one, so the chi-square approximation holds."""
    import pandas as pd

    counts = pd.concat([pd.Series(reference).astype(str).value_counts().rename("r"),
                        pd.Series(current).astype(str).value_counts().rename("c")], axis=1).fillna(0)
    rare = counts.sum(axis=1) < min_count
    if rare.any():
        counts = pd.concat([counts[~rare], counts[rare].sum().to_frame("(rare)").T])
    counts = counts[counts.sum(axis=1) > 0]
    return counts.to_numpy().T


def chi2_with_effect(reference, current) -> dict:
    """Chi-square test of homogeneity on the 2 x K table, with Cramér's V (sqrt(chi² / N) for a 2-row table)."""
    from scipy.stats import chi2_contingency

    table = category_table(reference, current)
    if table.shape[1] < 2:
        stat, p, dof = 0.0, 1.0, 0
    else:
        stat, p, dof, _ = chi2_contingency(table)     # Yates-corrected when there are two categories
    total = float(table.sum())
    return {"statistic": float(stat), "statistic_name": f"chi² ({int(dof)} df)", "p_value": float(p),
            "effect_size": float(np.sqrt(stat / total)) if total else 0.0, "effect_size_name": "Cramér's V"}


# ---- PSI ------------------------------------------------------------------------------------------------------

def _psi_edges(ref: np.ndarray, bins: int) -> np.ndarray:
    """Reference-quantile bin edges, open at both ends. A reference with a single value v gets the three bins
    below v, exactly v, above v: quantile edges collapse there, and one catch-all bin made PSI 0 whatever
    the current data did."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        v = float(edges[0])
        return np.array([-np.inf, v, np.nextafter(v, np.inf), np.inf])
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index over reference-quantile bins."""
    ref = np.asarray(ref, dtype=np.float64)
    cur = np.asarray(cur, dtype=np.float64)
    edges = _psi_edges(ref, bins)
    r = np.histogram(ref, edges)[0] / len(ref) + eps
    c = np.histogram(cur, edges)[0] / len(cur) + eps
    return float(np.sum((c - r) * np.log(c / r)))


def psi_null(ref: np.ndarray, cur: np.ndarray, n_perm: int = 200, seed: int = 0, bins: int = 10) -> dict:
    """PSI's distribution when nothing drifted: rows of both samples relabelled at random, bins re-fitted on
    each relabelled reference. Gives a permutation p-value and the 95th percentile PSI reaches by chance at
    these sample sizes (with 10 bins, roughly 17 * (1/n_ref + 1/n_cur))."""
    rng = np.random.default_rng(seed)
    ref = np.asarray(ref, dtype=np.float64)
    z = np.concatenate([ref, np.asarray(cur, dtype=np.float64)])
    m = len(ref)
    null = np.empty(n_perm)
    for i in range(n_perm):
        perm = rng.permutation(z.size)
        null[i] = psi(z[perm[:m]], z[perm[m:]], bins)
    observed = psi(ref, cur, bins)
    return {"psi": observed, "p_value": (1 + int(np.sum(null >= observed))) / (1 + n_perm),
            "null_q95": float(np.quantile(null, 0.95)), "permutations": n_perm}
