"""Drift statistics as plain functions: MMD² permutation test, PSI."""
from __future__ import annotations

import numpy as np


def mmd_permutation_test(x: np.ndarray, y: np.ndarray, n_perm: int = 1000, seed: int = 0,
                         max_rows: int = 1000) -> dict:
    """Unbiased MMD² with an RBF kernel (median-distance bandwidth) and a seeded permutation p-value.

    All permutations are evaluated at once: with an indicator matrix A (perm x rows), the block sums are
    quadratic forms of the one kernel matrix, so the test costs one (N x N) @ (N x B) product.
    """
    rng = np.random.default_rng(seed)
    if len(x) > max_rows:
        x = x[rng.choice(len(x), max_rows, replace=False)]
    if len(y) > max_rows:
        y = y[rng.choice(len(y), max_rows, replace=False)]
    z = np.vstack([x, y]).astype(np.float64)
    m, n = len(x), len(y)
    sq = np.sum(z * z, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    sigma2 = float(np.median(d2[np.triu_indices(m + n, 1)])) or 1.0
    k = np.exp(-d2 / sigma2)
    np.fill_diagonal(k, 0.0)

    def stat(a: np.ndarray) -> np.ndarray:
        """MMD² for indicator rows a (1 = first sample); a is (B, N)."""
        b = 1.0 - a
        ka = k @ a.T
        sxx = np.einsum("bi,ib->b", a, ka)
        sxy = np.einsum("bi,ib->b", b, ka)
        syy = np.einsum("bi,ib->b", b, k @ b.T)
        return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)

    observed = float(stat(np.r_[np.ones(m), np.zeros(n)][None, :])[0])
    perms = np.zeros((n_perm, m + n))
    for i in range(n_perm):
        perms[i, rng.permutation(m + n)[:m]] = 1.0
    null = stat(perms)
    p = (1 + int(np.sum(null >= observed))) / (1 + n_perm)
    return {"mmd2": observed, "p_value": p, "bandwidth_sigma2": sigma2, "permutations": n_perm,
            "null_q95": float(np.quantile(null, 0.95)), "n_ref": m, "n_cur": n}


def psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index over reference-quantile bins."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.histogram(ref, edges)[0] / len(ref) + eps
    c = np.histogram(cur, edges)[0] / len(cur) + eps
    return float(np.sum((c - r) * np.log(c / r)))
