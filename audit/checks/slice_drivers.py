"""Drivers of each disparity: which groups' rates move it most, for the report to show next to a bias rule that
fails or is inconclusive (a check cannot see the gate, so every feature and disparity gets a table).

For a group g, the disparity is recomputed with g's rates set to those of the whole split, keeping g's size:
its confusion counts become the split's, scaled to g's rows (selection rate, accuracy: demographic parity, the
four-fifths ratio, accuracy difference) or to g's positives and negatives (TPR, FPR: equalized odds, equal
opportunity). "moves" is how much smaller (for the ratio: larger) the disparity gets: the share of the gap that
group g's rates account for. The same for bias.introduced (adapted minus base probe). Disparities come from
bias.disparities on the split's shared bootstrap, so the "all groups" column equals the bias check's number and
every interval is paired with it.
"""
from __future__ import annotations

import numpy as np

from ..results import ModelRole
from ..stats import percentile_ci
from .bias import DISPARITIES, NEEDS_LABELS, disparities, group_codes

A, M1 = ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value
RATE_OF = {"demographic_parity_difference": "selection rate", "demographic_parity_ratio": "selection rate",
           "equalized_odds_difference": "TPR or FPR", "equal_opportunity_difference": "TPR",
           "accuracy_difference": "accuracy"}
BY_LABEL = NEEDS_LABELS                   # matched per true class (TPR/FPR); the others on all rows
HIGHER_IS_FAIRER = {"demographic_parity_ratio"}


def matched(conf: np.ndarray, by_label: bool, groups) -> np.ndarray:
    """Counts (len(groups), ..., G, K, K): entry j is conf (..., G, K, K) with group groups[j]'s rates replaced
    by the whole split's, its size (per true class when by_label) kept."""
    conf = conf.astype(float)
    groups = np.asarray(groups)
    total = conf.sum(axis=-3, keepdims=True)
    axes = (-1,) if by_label else (-1, -2)
    with np.errstate(invalid="ignore", divide="ignore"):
        replaced = np.nan_to_num(total * (conf.sum(axes, keepdims=True) / total.sum(axes, keepdims=True)))
    out = np.broadcast_to(conf, (groups.size,) + conf.shape).copy()
    out[np.arange(groups.size), ..., groups, :, :] = np.moveaxis(replaced[..., groups, :, :], -3, 0)
    return out


def _matched_disparities(conf, classes, big, labelled, by_label: bool, groups, chunk: int = 8) -> dict:
    """Every disparity with each of groups matched in turn: {d: (len(groups), ...)}; chunks bound memory."""
    parts = [disparities(matched(conf, by_label, groups[i:i + chunk]), classes, big, labelled)
             for i in range(0, len(groups), chunk)]
    return {d: np.concatenate([p[d] for p in parts], axis=0) for d in DISPARITIES}


def _masks(codes, y, g: int, k: int, classes, stats):
    """The bias check's group masks (bias.audit_feature): big enough, and with enough positives/negatives."""
    n_g = np.bincount(codes, minlength=g)
    true_counts = np.stack([np.bincount(codes[y == c], minlength=g) for c in range(k)], -1)
    big = n_g >= stats.min_group_n
    labelled = big & (true_counts[:, classes].min(-1) >= max(stats.min_pos, 1)) & \
        ((n_g[:, None] - true_counts[:, classes]).min(-1) >= max(stats.min_neg, 1))
    return n_g, big, labelled


def feature_drivers(y, preds: dict, codes, names, k: int, classes, cells, stats) -> tuple[list, list]:
    """Rows [disparity, group, n, rate, adapted, base probe, all groups, matched, moves, low, high,
    moves introduced, low, high] for one sensitive feature, and the groups left out as too small."""
    g = len(names)
    n_g, big, labelled = _masks(codes, y, g, k, classes, stats)
    small = [names[i] for i in range(g) if not big[i]]
    if big.sum() < 2:                       # no disparity to decompose (the bias check says INSUFFICIENT_DATA)
        return [], small
    conf, boot = {}, {}
    for role, pred in preds.items():
        full = (codes * k + y) * k + pred
        conf[role] = np.bincount(full, minlength=g * k * k).reshape(g, k, k)
        boot[role] = cells.counts_of(full, g * k * k).reshape(-1, g, k, k)
    rates = {role: _group_rates(conf[role], classes) for role in preds}
    whole = {r: (disparities(conf[r], classes, big, labelled), disparities(boot[r], classes, big, labelled))
             for r in preds}
    groups = np.flatnonzero(big)
    position = {int(i): j for j, i in enumerate(groups)}
    # (role, by_label) -> every disparity with each large-enough group matched in turn (leading axis: groups)
    matched_d = {(r, by_label): (_matched_disparities(conf[r], classes, big, labelled, by_label, groups),
                                 _matched_disparities(boot[r], classes, big, labelled, by_label, groups))
                 for r in preds for by_label in (False, True)}
    rows = []
    for d in DISPARITIES:
        mask = labelled if d in NEEDS_LABELS else big
        if mask.sum() < 2:
            continue
        sign = -1.0 if d in HIGHER_IS_FAIRER else 1.0
        rate_name, rate_key = _rate_for(d, rates[A], mask)
        for i in np.flatnonzero(mask):
            moved = {}
            for r in preds:
                mp, mb = matched_d[r, d in BY_LABEL]
                j = position[int(i)]
                moved[r] = (sign * (whole[r][0][d] - mp[d][j]), sign * (whole[r][1][d] - mb[d][j]), mp[d][j])
            ci = percentile_ci(moved[A][1], stats.ci_level) or (None, None)
            row = [d, names[i], int(n_g[i]), rate_name, _f(rates[A][rate_key][i]),
                   _f(rates[M1][rate_key][i]) if M1 in rates else None, _f(whole[A][0][d]), _f(moved[A][2]),
                   _f(moved[A][0]), *ci]
            if M1 in moved:
                intro_ci = percentile_ci(moved[A][1] - moved[M1][1], stats.ci_level) or (None, None)
                row += [_f(moved[A][0] - moved[M1][0]), *intro_ci]
            else:
                row += [None, None, None]
            rows.append(row)
    rows.sort(key=lambda r: (DISPARITIES.index(r[0]), -(r[8] if r[8] is not None else -np.inf)))
    return rows, small


def _group_rates(conf: np.ndarray, classes) -> dict:
    """Per-group rates for the rate columns (binary: the positive class; multiclass: the last class)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        n = conf.sum((-1, -2))
        out = {"accuracy": np.trace(conf, axis1=-2, axis2=-1) / n}
        c = classes[-1]
        true_c, pred_c, tp = conf[:, c, :].sum(-1), conf[:, :, c].sum(-1), conf[:, c, c]
        out["selection_rate"], out["tpr"] = pred_c / n, tp / true_c
        out["fpr"] = (pred_c - tp) / (n - true_c)
    return out


def _rate_for(d: str, rates: dict, mask) -> tuple[str, str]:
    if d in ("demographic_parity_difference", "demographic_parity_ratio"):
        return "selection rate", "selection_rate"
    if d == "accuracy_difference":
        return "accuracy", "accuracy"
    if d == "equal_opportunity_difference":
        return "TPR", "tpr"
    spread = {key: np.nanmax(rates[key][mask]) - np.nanmin(rates[key][mask]) for key in ("tpr", "fpr")}
    return ("TPR", "tpr") if spread["tpr"] >= spread["fpr"] else ("FPR", "fpr")


def _f(v):
    return float(v) if v is not None and np.isfinite(v) else None


COLUMNS = ["disparity", "group", "n", "rate", "adapted", "base probe", "disparity (all groups)",
           "if group matched the split", "moves", "low", "high", "moves introduced", "low", "high"]


def driver_tables(evidence, split_name: str, stats) -> dict:
    """One table per sensitive feature and intersection of two (as the bias check measures them)."""
    ds = evidence.dataset
    if not ds.sensitive:
        return {}
    split = ds.splits[split_name]
    y, k = split.y, ds.n_classes
    classes = [ds.positive] if ds.positive is not None else list(range(k))
    preds = {r: evidence.pred(r, split_name) for r in (A, M1) if split_name in evidence.probs.get(r, {})}
    if A not in preds:
        return {}
    cells = evidence.cells(split_name, stats.n_boot)
    features = [(f,) for f in ds.sensitive]
    features += [(a, b) for i, a in enumerate(ds.sensitive) for b in ds.sensitive[i + 1:]]
    tables = {}
    for cols in features:
        feature = " x ".join(cols)
        codes, names = group_codes(split.frame, cols)
        rows, small = feature_drivers(y, preds, codes, names, k, classes, cells, stats)
        if not rows:
            continue
        note = ("moves: how much the adapted model's disparity shrinks (ratio: grows) when this group's rates are "
                "set to the whole split's; moves introduced: the same for adapted minus base probe; "
                f"{int(stats.ci_level * 100)}% paired bootstrap intervals.")
        if small:
            note += f" Left out (fewer than {stats.min_group_n} rows): {', '.join(small)}."
        tables[f"drivers:{feature}"] = {"title": f"What drives each disparity: {feature}", "feature": feature,
                                        "note": note, "columns": COLUMNS, "rows": rows}
    return tables
