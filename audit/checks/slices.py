"""Slices: where did fine-tuning hurt? A paired scan for slices where the adapted model (M2) is worse than both
the frozen base with a probe (M1) and the no-pretraining control (M0).

Candidates: every value of each sensitive column and declared feature (numeric ones binned, slice_stats.bin_column)
and their intersections up to `depth` columns, each with at least min_group_n rows. Per slice: the paired gains
M2 - M1 and M2 - M0 of the metric inside the slice, and M2's selection-rate and error-rate gaps against the rest,
all on the split's shared bootstrap refined by the slice columns (slice_stats.RefinedDraw), so they are paired
with every other check. The test of "M2 worse than both" is an intersection-union test: the larger of the two
one-sided exact McNemar p-values; Benjamini-Hochberg across all slices tested controls the false discovery rate.
Slices are ranked by the upper end of the interval of gain_vs_both = max(M2 - M1, M2 - M0), M2 minus the weaker
reference, negative only where M2 is worse than both: first the slice where the data most surely show a large
loss, not the one with the smallest p-value. docs/slices.md has the details and measured cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..errors import InputError
from ..results import CheckResult, Measurement, ModelRole, Status, skipped
from ..slice_stats import RefinedDraw, benjamini_hochberg, bin_column, candidate_slices, mcnemar_worse, membership

NAME = "slices"
METRICS = ("slices.harmful_count", "slices.gain_vs_both")
OPTIONS = frozenset({"split", "columns", "depth", "bins", "metric", "fdr", "top"})
A, M1, M0 = ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value, ModelRole.NO_TRANSFER.value
TEST = "intersection-union: max of the one-sided exact McNemar p-values vs base_probe and vs no_transfer"


class SliceMetric(str, Enum):
    ACCURACY = "accuracy"      # all rows of the slice
    TPR = "tpr"                # accuracy on the slice's positives (binary tasks)
    TNR = "tnr"                # accuracy on the slice's negatives (binary tasks)


@dataclass(frozen=True)
class SlicesConfig:
    split: str = "current"
    columns: tuple[str, ...] | None = None      # None: the spec's sensitive columns and features
    depth: int = 2
    bins: int = 4
    metric: SliceMetric = SliceMetric.ACCURACY
    fdr: float = 0.10
    top: int = 10


def parse_config(section) -> SlicesConfig:
    columns = section.str_list("columns")
    return SlicesConfig(split=section.str("split", "current", choices={"current", "reference"}),
                        columns=tuple(dict.fromkeys(columns)) if columns else None,
                        depth=section.int("depth", 2, lo=1, hi=3), bins=section.int("bins", 4, lo=2, hi=20),
                        metric=SliceMetric(section.str("metric", "accuracy", choices={m.value for m in SliceMetric})),
                        fdr=section.float("fdr", 0.10, lo=1e-6, hi=0.5), top=section.int("top", 10, lo=1, hi=1000))


# A row's scan cell: code = metric_row*16 + m2_right*8 + m1_right*4 + m0_right*2 + m2_selected. Every statistic
# below is a linear function of the counts of these 32 cells, so a slice is summarised by COEF (32 x 7).
_BITS = np.array([[(c >> s) & 1 for s in (4, 3, 2, 1, 0)] for c in range(32)])
_E, _R2, _R1, _R0, _SEL = _BITS.T
COLUMNS = ("n", "n_metric", "right_adapted", "right_base_probe", "right_no_transfer", "selected", "wrong")
COEF = np.stack([np.ones(32), _E, _E * _R2, _E * _R1, _E * _R0, _SEL, 1 - _R2], axis=1).astype(float)


def scan_codes(y, pred2, pred1, pred0, positive, metric: SliceMetric) -> np.ndarray:
    if metric is SliceMetric.ACCURACY:
        elig = np.ones(y.size, dtype=np.int64)
    else:
        elig = (y == positive) if metric is SliceMetric.TPR else (y != positive)
    sel = (pred2 == positive) if positive is not None else np.zeros(y.size, dtype=bool)
    return (elig.astype(np.int64) * 16 + (pred2 == y) * 8 + (pred1 == y) * 4 + (pred0 == y) * 2 + sel).astype(np.int64)


def slice_statistics(x: np.ndarray, total: np.ndarray, coef: np.ndarray = COEF) -> dict:
    """Gains and gaps from cell counts x (..., S, cells) of the slices and total (..., cells) of the whole split;
    coef holds the rows of COEF for the cells present."""
    v = (x.reshape(-1, x.shape[-1]) @ coef).reshape(*x.shape[:-1], coef.shape[1])
    t = (total @ coef)[..., None, :]
    rest = t - v
    with np.errstate(invalid="ignore", divide="ignore"):
        d1 = (v[..., 2] - v[..., 3]) / v[..., 1]
        d0 = (v[..., 2] - v[..., 4]) / v[..., 1]
        return {"gain_vs_both": np.maximum(d1, d0), "gain_vs_base_probe": d1, "gain_vs_no_transfer": d0,
                "selection_rate_gap": v[..., 5] / v[..., 0] - rest[..., 5] / rest[..., 0],
                "error_rate_gap": v[..., 6] / v[..., 0] - rest[..., 6] / rest[..., 0]}


@dataclass(frozen=True)
class Scan:
    """Every tested slice, in candidate order; arrays have one entry per slice."""

    labels: list[tuple[str, str]]          # (feature, value), e.g. ("occupation x age", "Sales & [28, 37)")
    n: np.ndarray
    n_metric: np.ndarray
    point: dict
    ci: dict                               # name -> (S, 2) array of interval ends
    p_vs: dict                             # role -> one-sided McNemar p-values
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray
    order: np.ndarray                      # slice indices, most surely harmful first
    redundant: int
    overall: dict


def scan(frame, y, preds: dict, columns, cells, positive, config: SlicesConfig, stats, seed: int) -> Scan:
    """The paired slice scan on one split; cells is the split's shared stats.CellBootstrap."""
    binned = [bin_column(frame[c], config.bins) for c in columns]
    codes = [b[0] for b in binned]
    slices = candidate_slices(codes, [len(b[1]) for b in binned], config.depth, stats.min_group_n)
    present, code = np.unique(scan_codes(y, preds[A], preds[M1], preds[M0], positive, config.metric),
                              return_inverse=True)
    coef, bits, k = COEF[present], _BITS[present], present.size        # only the scan cells that occur
    draw = RefinedDraw(cells, codes, seed)
    point_counts, samples = _slice_counts(slices, codes, code.reshape(-1), k, coef, draw)
    point = slice_statistics(point_counts, np.bincount(code.reshape(-1), minlength=k), coef)
    ci = {name: _intervals(v, stats.ci_level) for name, v in samples.items()}
    metric_rows, right2 = bits[:, 0] == 1, bits[:, 1] == 1
    p_vs = {}
    for role, bit in ((M1, 2), (M0, 3)):
        right_other = bits[:, bit] == 1
        p_vs[role] = mcnemar_worse(point_counts[:, metric_rows & ~right2 & right_other].sum(1),
                                   point_counts[:, metric_rows & right2 & ~right_other].sum(1))
    p = np.maximum(p_vs[M1], p_vs[M0])                       # intersection-union test of "worse than both"
    q, significant = benjamini_hochberg(p, config.fdr)
    upper = ci["gain_vs_both"][:, 1]
    order = np.lexsort((point["gain_vs_both"], np.where(np.isfinite(upper), upper, np.inf)))
    labels = [(" x ".join(columns[c] for c in fam), " & ".join(binned[c][1][v] for c, v in zip(fam, val)))
              for fam, val in zip(slices.columns, slices.values)]
    t = np.bincount(code.reshape(-1), minlength=k) @ coef
    overall = {"gain_vs_base_probe": float((t[2] - t[3]) / t[1]) if t[1] else None,
               "gain_vs_no_transfer": float((t[2] - t[4]) / t[1]) if t[1] else None}
    return Scan(labels, slices.n, (point_counts @ coef)[:, 1].astype(np.int64), point, ci, p_vs, p, q,
                significant, order, slices.redundant, overall)


def _slice_counts(slices, codes, code, k: int, coef, draw: RefinedDraw):
    """Point cell counts (S, k) of every slice, and every statistic on every resample of the refined draw.

    A sparse matrix maps each fine cell of the draw to (slice, scan cell) for every slice it lies in, so one
    sparse product per chunk of resamples gives all slices' cell counts at once."""
    from scipy.sparse import csr_matrix

    s_total = len(slices)
    fine_code = code[draw.representative]
    rows, members = membership(slices, codes, draw.representative)
    z = csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, members * k + fine_code[rows])),
                   shape=(draw.n_fine, s_total * k))
    onehot = np.eye(k, dtype=np.float32)[fine_code]
    point = np.asarray(draw.sizes.astype(np.float32) @ z).reshape(s_total, k).astype(np.int64)
    samples = {name: np.empty((draw.n_boot, s_total), dtype=np.float32)
               for name in slice_statistics(point[:0], np.zeros(k), coef)}
    for start, w in draw.chunks():
        w = w.astype(np.float32)          # counts are below 2**24, so float32 holds them exactly
        got = slice_statistics(np.asarray(w @ z).reshape(w.shape[0], s_total, k), w @ onehot, coef)
        for name, v in got.items():
            samples[name][start:start + w.shape[0]] = v
    return point, samples


def _intervals(samples: np.ndarray, level: float) -> np.ndarray:
    """(S, 2) percentile intervals of samples (B, S) with numpy's default (linear) quantile, non-finite
    resamples left out as in stats.percentile_ci; NaN where a slice has none. One sort for all slices."""
    a = (1 - level) / 2
    x = np.sort(np.where(np.isfinite(samples), samples, np.nan).astype(float), axis=0)   # NaN sorts last
    k = np.isfinite(x).sum(axis=0)
    out = np.full((x.shape[1], 2), np.nan)
    cols = np.flatnonzero(k > 0)
    for j, q in enumerate((a, 1 - a)):
        pos = q * (k[cols] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, k[cols] - 1)
        frac = pos - lo
        out[cols, j] = x[lo, cols] + frac * (x[hi, cols] - x[lo, cols])
    return out


def run(evidence, config: SlicesConfig, stats) -> CheckResult:
    from .slice_drivers import driver_tables

    ds = evidence.dataset
    split = ds.splits[config.split]
    missing = [r for r in (A, M1, M0) if r not in evidence.probs or config.split not in evidence.probs[r]]
    if missing:
        return skipped(NAME, f"the scan compares three model roles; {', '.join(missing)} has no predictions on "
                             f"the {config.split} split")
    columns = list(config.columns) if config.columns else list(dict.fromkeys([*ds.sensitive, *ds.features]))
    if not columns:
        return skipped(NAME, "no columns to slice: the spec declares no sensitive columns or features "
                             "(data.sensitive, data.features) and checks.slices.columns is not set")
    absent = [c for c in columns if c not in split.frame.columns]
    if absent:
        raise InputError(f"checks.slices.columns names column {absent[0]!r}, which the {config.split} split does "
                         f"not have. Columns: {', '.join(map(str, split.frame.columns))}.")
    if config.metric is not SliceMetric.ACCURACY and (ds.positive is None or ds.n_classes != 2):
        raise InputError(f"checks.slices.metric must be accuracy for a task without a binary positive class "
                         f"(data.positive_label). Got {config.metric.value!r} instead.")
    preds = {r: evidence.pred(r, config.split) for r in (A, M1, M0)}
    cells = evidence.cells(config.split, stats.n_boot)
    result = scan(split.frame, split.y, preds, columns, cells, ds.positive, config, stats, evidence.seed)
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
