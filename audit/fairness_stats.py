"""Array maths of group disparities: plain max - min (fairlearn's definitions) and a small-group-corrected
interval to decide on. Every function works on arrays with any leading axes (bootstrap resamples, or many
simulated data sets at once in the validity tests).

Why a corrected interval. max - min over groups is biased upward when groups are small (Lum, Zhang, Bower,
FAccT 2022): with equal true rates and groups of 31-600 rows the plain estimate averages about 0.11, and the
bootstrap percentile interval of max - min inherits the bias (its lower end exceeded 0.10 in most simulations
of six 30-row groups with a true gap of 0.05). The decision interval is built from the pairwise gaps instead:

* rates are smoothed, p~ = (x + 1) / (n + 2) (Beta(1, 1) / Agresti-Caffo), so no group has a zero variance;
* upper end: max over pairs of |p~_g - p~_h| + z * se_gh. If the true disparity is above a bound, one pair's
  gap is, and that pair's own one-sided bound stays below the truth with probability alpha/2 at most
  (an intersection-union argument): no adjustment is needed on this side;
* lower end: max over pairs of |p~_g - p~_h| - c * se_gh, with c Bonferroni-adjusted over every directed pair,
  so the chance that any pair overstates its gap is alpha/2 at most;
* ratios (min rate / max rate) use the same construction on log smoothed rates (delta-method se);
* the change of a disparity from one model to another on the same rows (bias.introduced) has its own
  interval, `disparity_change_interval`: paired per group for the upper end.

The point estimate shown next to the plain one is bootstrap bias-corrected (2 * plain - mean of resamples),
kept inside the corrected interval.
"""
from __future__ import annotations

import numpy as np

RATIOS = ("demographic_parity_ratio",)


def rate_counts(conf: np.ndarray, classes) -> dict:
    """Successes and trials per group and class, (..., G, C), from confusion counts (..., G, K, K)."""
    conf = np.asarray(conf, dtype=float)
    n = conf.sum(axis=(-1, -2))
    true = np.stack([conf[..., c, :].sum(-1) for c in classes], -1)
    pred = np.stack([conf[..., :, c].sum(-1) for c in classes], -1)
    tp = np.stack([conf[..., c, c] for c in classes], -1)
    n_c = np.broadcast_to(n[..., None], pred.shape)
    return {"selection": (pred, n_c), "tpr": (tp, true), "fpr": (pred - tp, n_c - true),
            "accuracy": (np.trace(conf, axis1=-2, axis2=-1)[..., None], n[..., None])}


def sources(disparity: str) -> tuple[str, ...]:
    return {"equalized_odds_difference": ("tpr", "fpr"), "equal_opportunity_difference": ("tpr",),
            "accuracy_difference": ("accuracy",)}.get(disparity, ("selection",))


def stacked(counts: dict, disparity: str, mask: np.ndarray):
    """(x, n, valid) for one disparity: the rate columns it compares side by side, groups outside mask left out."""
    x = np.concatenate([counts[s][0] for s in sources(disparity)], -1)
    n = np.concatenate([counts[s][1] for s in sources(disparity)], -1)
    valid = np.broadcast_to(np.asarray(mask, bool)[..., None], x.shape) & (n > 0)
    return x, n, valid


def _quietly(fn, *args, **kw):
    """numpy's nan-reductions warn on all-NaN slices, which here just mean 'undefined'."""
    import warnings

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kw)


def plain(x, n, valid, ratio: bool) -> np.ndarray:
    """max - min of the raw rates per column, worst column (ratio: min / max, lowest column); NaN if undefined."""
    def compute():
        rate = np.where(valid, x / np.where(n > 0, n, 1), np.nan)
        top, bottom = np.nanmax(rate, -2), np.nanmin(rate, -2)
        per_col = np.where(valid.sum(-2) >= 2, bottom / top if ratio else top - bottom, np.nan)
        per_col = np.where(np.isfinite(per_col), per_col, np.nan)
        return np.nanmin(per_col, -1) if ratio else np.nanmax(per_col, -1)

    return _quietly(compute)


def _z(p):
    from scipy.stats import norm

    return norm.ppf(p)


def pairwise_interval(x, n, valid, level: float, ratio: bool) -> dict:
    """Corrected interval of the largest pairwise gap (ratio: of min rate / max rate), with the pairs that set
    each end. Returns arrays over the leading axes: lo, hi, pair_lo, pair_hi ((g, h) group indices), pairs."""
    x, n, valid = np.asarray(x, float), np.asarray(n, float), np.asarray(valid, bool)
    g_count = x.shape[-2]
    gi, hi_idx = np.triu_indices(g_count, 1)
    p = (x + 1.0) / (n + 2.0)
    if ratio:
        est, var = np.log(p), (1.0 - p) / ((n + 2.0) * p)
    else:
        est, var = p, p * (1.0 - p) / (n + 2.0)
    gap = np.abs(est[..., gi, :] - est[..., hi_idx, :])                   # (..., U, C)
    se = np.sqrt(var[..., gi, :] + var[..., hi_idx, :])
    ok = valid[..., gi, :] & valid[..., hi_idx, :]
    pairs = ok.sum(axis=(-1, -2))
    alpha = 1.0 - level
    z = _z(1.0 - alpha / 2)
    c = _z(1.0 - alpha / (4.0 * np.maximum(pairs, 1)))                  # 2 directions x pairs, alpha/2 in all

    def flat(a):
        return a.reshape(a.shape[:-2] + (-1,))

    upper = np.where(flat(ok), flat(gap + z * se), -np.inf)
    lower = np.where(flat(ok), flat(gap) - np.asarray(c)[..., None] * flat(se), -np.inf)
    arg_hi, arg_lo = upper.argmax(-1), lower.argmax(-1)
    top, bottom = upper.max(-1), np.maximum(lower.max(-1), 0.0)
    none = pairs == 0
    top, bottom = np.where(none, np.nan, top), np.where(none, np.nan, bottom)
    n_cols = gap.shape[-1]

    def pair_of(arg):
        return np.stack([gi[arg // n_cols], hi_idx[arg // n_cols]], -1)

    if ratio:     # the gap is |log ratio|: the ratio's interval is exp(-gap), ends swapped
        return {"lo": np.exp(-top), "hi": np.exp(-bottom), "pair_lo": pair_of(arg_hi), "pair_hi": pair_of(arg_lo),
                "pairs": pairs}
    return {"lo": bottom, "hi": top, "pair_lo": pair_of(arg_lo), "pair_hi": pair_of(arg_hi), "pairs": pairs}


def bias_corrected(point, resampled, lo, hi) -> np.ndarray:
    """2 * point - mean over resamples (last axis), kept inside [lo, hi]."""
    mean = _quietly(np.nanmean, np.where(np.isfinite(resampled), resampled, np.nan), axis=-1)
    return np.clip(2 * np.asarray(point, float) - mean, lo, hi)


def paired_counts(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, codes: np.ndarray, g: int, classes,
                  w=None) -> dict:
    """Per group and class, (only_a, only_b, trials) for every rate source: rows where the rate's event holds
    for model a and not b, for b and not a, and the rows the rate is over. Same rows, so the change is paired.
    w: rows each entry stands for (None: one)."""
    from .stats import wcount

    out = {}
    for source in ("selection", "tpr", "fpr", "accuracy"):
        cols = [None] if source == "accuracy" else classes
        a_only, b_only, trials = [], [], []
        for c in cols:
            rows = {"selection": np.ones_like(y, bool), "tpr": y == c, "fpr": y != c,
                    "accuracy": np.ones_like(y, bool)}[source]
            ea, eb = (pred_a == y, pred_b == y) if source == "accuracy" else (pred_a == c, pred_b == c)

            def count(mask, rows=rows):
                keep = rows & mask
                return wcount(codes[keep], g, None if w is None else w[keep])

            a_only.append(count(ea & ~eb))
            b_only.append(count(eb & ~ea))
            trials.append(count(np.ones_like(y, bool)))
        out[source] = tuple(np.stack(v, -1).astype(float) for v in (a_only, b_only, trials))
    return out


def paired_change_upper(a_only, b_only, trials, valid, level: float) -> dict:
    """Upper confidence bound of max over pairs of groups of |(a_g - b_g) - (a_h - b_h)|: how much a pairwise
    gap can have changed from model b to model a, on the same rows.

    Per group the change a_g - b_g is a paired difference of proportions, smoothed by half a row in each
    discordant cell (Agresti-Min); groups are independent. As for `pairwise_interval`'s upper end, one pair's
    bound suffices (intersection-union), and D(a) - D(b) <= max over pairs of that change, so it bounds the
    change of the max - min disparity itself from above."""
    a_only, b_only, trials = (np.asarray(v, float) for v in (a_only, b_only, trials))
    n = trials + 2.0
    change = (a_only - b_only) / n
    var = ((a_only + b_only + 1.0) / n - change ** 2) / n
    g_count = change.shape[-2]
    gi, hi_idx = np.triu_indices(g_count, 1)
    ok = np.asarray(valid, bool)[..., gi, :] & np.asarray(valid, bool)[..., hi_idx, :]
    z = _z(1.0 - (1.0 - level) / 2)
    bound = np.abs(change[..., gi, :] - change[..., hi_idx, :]) + z * np.sqrt(var[..., gi, :] + var[..., hi_idx, :])
    flat = np.where(ok, bound, -np.inf).reshape(bound.shape[:-2] + (-1,))
    arg = flat.argmax(-1)
    n_cols = bound.shape[-1]
    top = np.where(ok.sum(axis=(-1, -2)) > 0, flat.max(-1), np.nan)
    return {"hi": top, "pair_hi": np.stack([gi[arg // n_cols], hi_idx[arg // n_cols]], -1)}


def disparity_change_interval(role_a: tuple, role_b: tuple, paired: tuple, level: float, ratio: bool = False) -> dict:
    """Interval for D(a) - D(b), the change of a max - min disparity between two models on the same rows.

    role_a, role_b: (x, n, valid) of each model (`stacked`); paired: (only_a, only_b, trials, valid).
    Lower end: D(a)'s corrected lower bound minus D(b)'s upper bound, each at alpha/4 (Bonferroni over the two);
    upper end: the paired bound of the largest change of a pairwise gap at alpha/2."""
    wide = 1.0 - (1.0 - level) / 2
    a, b = pairwise_interval(*role_a, wide, ratio), pairwise_interval(*role_b, wide, ratio)
    up = paired_change_upper(*paired, level)
    lo = np.fmin(a["lo"] - b["hi"], up["hi"])        # two valid bounds that cross: the data say little
    return {"lo": lo, "hi": up["hi"], "pair_hi": up["pair_hi"], "pair_lo": a["pair_lo"]}
