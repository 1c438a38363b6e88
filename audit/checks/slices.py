"""Slices: where did fine-tuning hurt? A paired scan for slices where the adapted model (M2) is worse than both
the frozen base with a probe (M1) and the no-pretraining control (M0), and what drives each disparity.

Candidates: every value of each sensitive column and declared feature (numeric ones binned, slice_stats.bin_column)
and their intersections up to `depth` columns, each with at least min_group_n rows. Per slice (slice_scan.scan):
the paired gains M2 - M1 and M2 - M0 of the metric inside the slice, and M2's selection-rate and error-rate gaps
against the rest, all on the split's shared bootstrap refined by the slice columns (slice_stats.RefinedDraw), so
they are paired with every other check. "M2 worse than both" is an intersection-union test: the larger of the two
one-sided exact McNemar p-values; Benjamini-Hochberg across all slices tested controls the false discovery rate.
Slices are ranked by the upper end of the interval of gain_vs_both = max(M2 - M1, M2 - M0), M2 minus the weaker
reference, negative only where M2 is worse than both: first the slice where the data most surely show a large
loss, not the one with the smallest p-value.

Drivers: for each sensitive feature (and pair) and disparity, how much each group's rates move the disparity: it is
recomputed with that group's rates set to the whole split's (its confusion counts replaced by the split's, scaled
to its size, per true class for TPR/FPR); "moves" is how much smaller (for the four-fifths ratio: larger) it gets,
also for bias.introduced. The check cannot see the gate, so every feature and disparity gets a table
(`drivers:<feature>`) for the report to show next to a failing or inconclusive bias rule. docs/slices.md has the
details and the measured cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MSG_BAD_VALUE, MSG_MISSING_COLUMN, InputError
from ..options import option
from ..results import CheckResult, Measurement, ModelRole, Status, skipped
from ..slice_scan import Scan, SliceMetric, scan
from ..stats import percentile_ci
from .common import DISPARITIES, NEEDS_LABELS, confusion_rates, disparities, group_codes

NAME = "slices"
METRICS = ("slices.harmful_count", "slices.gain_vs_both")
A, M1, M0 = ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value, ModelRole.NO_TRANSFER.value
TEST = "intersection-union: max of the one-sided exact McNemar p-values vs base_probe and vs no_transfer"
RATE_OF = {"demographic_parity_difference": ("selection rate", "selection_rate"),
           "demographic_parity_ratio": ("selection rate", "selection_rate"),
           "equal_opportunity_difference": ("TPR", "tpr"), "accuracy_difference": ("accuracy", "accuracy")}
HIGHER_IS_FAIRER = {"demographic_parity_ratio"}


@dataclass(frozen=True)
class SlicesConfig:
    split: str = option("current", "split the slices are cut from", choices=("current", "reference"))
    columns: tuple[str, ...] | None = option(None, "columns to slice (none: data.sensitive, then data.features)")
    depth: int = option(2, "1: single values; 2: also pairwise intersections; 3: also three-way", lo=1, hi=3)
    bins: int = option(4, "quantile bins per numeric column (a value holding 1/bins of the rows is its own bin)",
                       lo=2, hi=20)
    metric: SliceMetric = option(SliceMetric.ACCURACY, "paired metric: accuracy; tpr / tnr: accuracy on the "
                                 "slice's positives / negatives (binary tasks)")
    fdr: float = option(0.10, "Benjamini-Hochberg false discovery rate across all slices tested", lo=1e-6, hi=0.5)
    top: int = option(10, "slices reported as measurements and in the table, most surely harmed first",
                      lo=1, hi=1000)


def run(evidence, config: SlicesConfig, stats) -> CheckResult:
    ds = evidence.dataset
    split = ds.splits[config.split]
    missing = [r for r in (A, M1, M0) if r not in evidence.probs or config.split not in evidence.probs[r]]
    if missing:
        return skipped(NAME, f"the scan compares three model roles; {', '.join(missing)} has no predictions on "
                             f"the {config.split} split")
    columns = list(dict.fromkeys(config.columns or [*ds.sensitive, *ds.features]))
    if not columns:
        return skipped(NAME, "no columns to slice: the spec declares no sensitive columns or features "
                             "(data.sensitive, data.features) and checks.slices.columns is not set")
    absent = [c for c in columns if c not in split.frame.columns]
    if absent:
        raise InputError.make(MSG_MISSING_COLUMN, where="audit spec", field="checks.slices.columns",
                              value=absent[0], source=f"the {config.split} split ({split.source})",
                              columns=", ".join(map(str, split.frame.columns)))
    if config.metric is not SliceMetric.ACCURACY and (ds.positive is None or ds.n_classes != 2):
        raise InputError.make(MSG_BAD_VALUE, where="audit spec", field="checks.slices.metric",
                              expected="accuracy for a task without a binary positive class (data.positive_label)",
                              value=config.metric.value)
    preds = {r: evidence.pred(r, config.split) for r in (A, M1, M0)}
    cells = evidence.cells(config.split, stats.n_boot)
    result = scan(split.frame, split.y, preds, columns, cells, ds.positive, seed=evidence.seed,
                  min_n=stats.min_group_n, min_metric=_metric_minimum(config.metric, stats), depth=config.depth,
                  bins=config.bins, metric=config.metric, fdr=config.fdr, ci_level=stats.ci_level)
    out = [_count_measurement(result, config, int(split.y.size), stats)]
    out += [_slice_measurement(result, i, rank) for rank, i in enumerate(result.order[:config.top], 1)]
    tables = {"top_slices": _top_table(result, config, stats.ci_level)}
    tables.update(driver_tables(evidence, config.split, stats))
    tested = len(result.n)
    notes = ((f"{tested} slices tested over {len(columns)} columns ({', '.join(columns)}), depth {config.depth}, "
              f"at least {stats.min_group_n} rows each; {result.redundant} intersections equal to one of their "
              f"parents were not tested twice. Numeric columns are cut into {config.bins} quantile bins on the "
              f"audited split (a value holding 1/{config.bins} of the rows is a bin of its own)."),
             (f"Test of 'adapted worse than both base_probe and no_transfer' in a slice: {TEST}; Benjamini-Hochberg "
              f"across all {tested} slices at FDR {config.fdr:g}. {int(result.significant.sum())} significant."),
             ("Slices are ranked by the upper end of the interval of gain_vs_both = max(gain vs base_probe, gain "
              "vs no_transfer): first the slice where the data most surely show that fine-tuning lost to both."))
    return CheckResult(NAME, Status.MEASURED, tuple(out), tables=tables, notes=notes)


def _metric_minimum(metric: SliceMetric, stats) -> int:
    """Positives (tpr) or negatives (tnr) a slice needs, as a group needs them for its TPR / FPR."""
    return {SliceMetric.TPR: max(stats.min_pos, 1), SliceMetric.TNR: max(stats.min_neg, 1)}.get(metric, 0)


def _count_measurement(result: Scan, config: SlicesConfig, n_rows: int, stats) -> Measurement:
    details = {"slices_tested": len(result.n), "fdr": config.fdr, "test": TEST, "metric": config.metric.value,
               "depth": config.depth, "overall_gain_vs_base_probe": result.overall["gain_vs_base_probe"],
               "overall_gain_vs_no_transfer": result.overall["gain_vs_no_transfer"]}
    if len(result.n) == 0:                  # nothing tested is no evidence that nothing is wrong
        return Measurement(NAME, "slices.harmful_count", A, None, None, n_rows, Status.INSUFFICIENT_DATA, None,
                           {**details, "reason": f"no slice has at least min_group_n={stats.min_group_n} rows"})
    details["significant_slices"] = [f"{f}={v}" for (f, v), s in zip(result.labels, result.significant) if s][:20]
    return Measurement(NAME, "slices.harmful_count", A, float(result.significant.sum()), None, n_rows,
                       Status.MEASURED, None, details)


def _ci(result: Scan, name: str, i: int):
    lo, hi = result.ci[name][i]
    return None if not np.isfinite(lo) else (float(lo), float(hi))


def contradicts(result: Scan, i: int) -> list[str]:
    """The references whose paired gain has its whole interval below 0 in this slice."""
    return [role for role, name in ((M1, "gain_vs_base_probe"), (M0, "gain_vs_no_transfer"))
            if (ci := _ci(result, name, i)) is not None and ci[1] < 0]


def _slice_measurement(result: Scan, i: int, rank: int) -> Measurement:
    feature, value = result.labels[i]
    point = {k: (float(v[i]) if np.isfinite(v[i]) else None) for k, v in result.point.items()}
    details = {"rank": rank, "p_value": float(result.p[i]), "q_value": float(result.q[i]),
               "significant": bool(result.significant[i]), "contradicts": contradicts(result, i),
               "metric_rows": int(result.n_metric[i]),
               "p_vs_base_probe": float(result.p_vs[M1][i]), "p_vs_no_transfer": float(result.p_vs[M0][i])}
    for name in ("gain_vs_base_probe", "gain_vs_no_transfer", "selection_rate_gap", "error_rate_gap"):
        details[name] = point[name]
        details[f"{name}_ci"] = _ci(result, name, i)
    return Measurement(NAME, "slices.gain_vs_both", A, point["gain_vs_both"], _ci(result, "gain_vs_both", i),
                       int(result.n[i]), Status.MEASURED, {"feature": feature, "value": value}, details)


def _top_table(result: Scan, config: SlicesConfig, level: float) -> dict:
    rows = []
    for rank, i in enumerate(result.order[:config.top], 1):
        row = [rank, f"{result.labels[i][0]} = {result.labels[i][1]}", int(result.n[i])]
        for name in ("gain_vs_both", "gain_vs_base_probe", "gain_vs_no_transfer", "selection_rate_gap",
                     "error_rate_gap"):
            ci = _ci(result, name, i)
            v = result.point[name][i]
            row += [float(v) if np.isfinite(v) else None, ci[0] if ci else None, ci[1] if ci else None]
        row += [float(result.p[i]), float(result.q[i]), "yes" if result.significant[i] else "no",
                ", ".join(contradicts(result, i)) or "neither"]
        rows.append(row)
    columns = ["rank", "slice", "n"]
    for name in ("gain vs both", "gain vs base probe", "gain vs no transfer", "selection-rate gap", "error-rate gap"):
        columns += [name, "low", "high"]
    return {"title": f"Slices where fine-tuning did worst ({len(result.n)} tested, "
                     f"{int(result.significant.sum())} significant at FDR {config.fdr:g})",
            "note": f"Paired {config.metric.value} gains of the adapted model inside each slice, with "
                    f"{round(level * 100)}% paired bootstrap intervals; gaps are the adapted model's rate inside "
                    "minus outside the slice; "
                    "q is the Benjamini-Hochberg adjusted p-value; 'contradicts' lists the references the "
                    "adapted model is surely worse than there.",
            "columns": columns + ["p", "q", "significant", "contradicts"], "rows": rows}


# ---- drivers of each disparity ----------------------------------------------------------------------------------

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
    """The bias check's group masks (as in bias.audit_feature): big enough, with enough positives/negatives."""
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
    rates = {role: _shown_rates(conf[role], classes) for role in preds}
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
                mp, mb = matched_d[r, d in NEEDS_LABELS]      # TPR/FPR matched per true class
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


def _shown_rates(conf: np.ndarray, classes) -> dict:
    """Per-group rates for the rate columns (binary: the positive class; multiclass: the last class)."""
    return {key: (v[..., -1] if key != "accuracy" else v) for key, v in confusion_rates(conf, classes).items()}


def _rate_for(d: str, rates: dict, mask) -> tuple[str, str]:
    """The rate a disparity compares; equalized odds: TPR or FPR, whichever spreads more."""
    if d in RATE_OF:
        return RATE_OF[d]
    spread = {key: np.nanmax(rates[key][mask]) - np.nanmin(rates[key][mask]) for key in ("tpr", "fpr")}
    return ("TPR", "tpr") if spread["tpr"] >= spread["fpr"] else ("FPR", "fpr")


def _f(v):
    return float(v) if v is not None and np.isfinite(v) else None


DRIVER_COLUMNS = ["disparity", "group", "n", "rate", "adapted", "base probe", "disparity (all groups)",
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
                                        "note": note, "columns": DRIVER_COLUMNS, "rows": rows}
    return tables
