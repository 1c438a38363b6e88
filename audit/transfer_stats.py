"""Transfer statistics as plain functions: LogME (You et al. 2021), linear CKA (Kornblith et al. 2019)."""
from __future__ import annotations

import numpy as np


def _class_evidence(target: np.ndarray, ft: np.ndarray, s: np.ndarray, max_iter: int = 11) -> float:
    """MacKay fixed-point iteration for one one-vs-rest target (thuml LogME, You et al. 2021), per row."""
    n, d = ft.shape
    tmp = ft.T @ target                       # F^T y in the eigenbasis of F^T F
    alpha, beta = 1.0, 1.0
    lam = alpha / beta
    for _ in range(max_iter):
        gamma = float((s / (s + lam)).sum())
        m = tmp * beta / (alpha + beta * s)   # posterior mean of the weights, eigenbasis
        alpha_de = float((m * m).sum())
        alpha = gamma / (alpha_de + 1e-5)
        beta_de = float(((target - ft @ m) ** 2).sum())
        beta = (n - gamma) / (beta_de + 1e-5)
        new_lam = alpha / beta
        if abs(new_lam - lam) / lam < 0.01:
            break
        lam = new_lam
    evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * s))
                - beta / 2.0 * (beta_de + 1e-5) - alpha / 2.0 * (alpha_de + 1e-5) - n / 2.0 * np.log(2 * np.pi))
    return float(evidence / n)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-class log marginal evidence of a Bayesian linear model on the features (higher = better)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    s, v = np.linalg.eigh(f.T @ f)
    s = np.clip(s, 0.0, None)
    ft = f @ v
    return float(np.mean([_class_evidence((y == c).astype(np.float64), ft, s) for c in np.unique(y)]))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two representations of the same rows (1 = same up to rotation and scale)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x, "fro") ** 2
    denom = np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")
    return float(cross / denom) if denom > 0 else float("nan")
