"""Bias: group and intersectional fairness with paired-bootstrap CIs, and inherited vs introduced bias.

Point estimates follow fairlearn's definitions (demographic_parity_difference/ratio, equalized_odds_difference,
equal_opportunity_difference, MetricFrame(accuracy).difference()); tests pin them to fairlearn. Intervals come
from one matrix of bootstrap resamples per split: per-group confusion counts are computed once per resample
and shared by every metric and model role, which is what makes the decomposition paired.

Multiclass: fairlearn's binary metrics are undefined there, so each class is treated one-vs-rest and the worst
class is reported (selection-rate and TPR/FPR ranges: max over classes; ratio: min over classes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import fairness_stats as fs
from ..fairness_stats import rate_counts
from ..options import option
from ..results import MAIN_ROLES, CheckResult, Measurement, ModelRole, Status
from ..simultaneous import with_simultaneous
from ..stats import percentile_ci, wcount
from .bias_groups import GroupCounts, group_records
from .common import DISPARITIES, NEEDS_LABELS, group_codes

NAME = "bias"
HARM_DIFFERENCES = ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference",
                    "accuracy_difference")
GROUP_METRICS = ("selection_rate", "accuracy", "tpr", "fpr")
METRICS = tuple(f"bias.{d}" for d in DISPARITIES) + tuple(f"bias.group_{g}" for g in GROUP_METRICS) + (
    "bias.inherited", "bias.introduced", "bias.counterfactual_flip_rate", "bias.counterfactual_prob_change")


@dataclass(frozen=True)
class BiasConfig:
    split: str = option("current", "split the groups are measured on", choices=("current", "reference"))
    intersections: bool = option(True, "also audit pairwise intersections of the sensitive columns (sex x race)")
    counterfactual: bool = option(True, "run counterfactual identity swaps (needs the models)")
    # 0 flips in 200 rows decides a 5% bound at the Bonferroni level of 3+ axes; in 100 it never can
    counterfactual_samples: int = option(200, "source texts per counterfactual axis at most (each keeps all its "
                                              "swaps)", lo=10, hi=100000)
    counterfactual_links: tuple[str, ...] = option((), "columns that change with a swapped sensitive value in "
                                                       "templated rows, as 'sex: relationship Husband=Wife' (added to "
                                                       "the built-in links)")


# ---- disparities of one feature: plain (fairlearn) and corrected (fairness_stats), vectorised --------------

# TPR/FPR-based disparities compare groups with enough positives and negatives (as the slices check does).
MASK_OF = dict.fromkeys(NEEDS_LABELS, "labelled")
CORRECTION = "pairwise gaps of smoothed rates (small-group corrected); point: bootstrap bias-corrected"
CHANGE_METHOD = ("lower: corrected lower bound of one disparity minus the other's upper bound (alpha/4 each); "
                 "upper: paired bound of the largest change of a pairwise gap; point: bootstrap bias-corrected")


def disparity_stats(conf: np.ndarray, boot: np.ndarray, classes, masks: dict, level: float,
                    which=DISPARITIES) -> dict:
    """Every disparity for counts (..., G, K, K) and their resamples (..., B, G, K, K); any leading axes.

    {disparity: {value, samples, lo, hi, corrected, pair_lo, pair_hi}}: value is fairlearn's max - min (or
    min / max) over the groups in the disparity's mask, [lo, hi] the corrected interval it is decided on.
    """
    counts, resampled = rate_counts(conf, classes), rate_counts(boot, classes)
    out = {}
    for d in which:
        mask = np.asarray(masks[MASK_OF.get(d, "big")], bool)
        ratio = d in fs.RATIOS
        x, n, valid = fs.stacked(counts, d, mask)
        point = fs.plain(x, n, valid, ratio)
        samples = fs.plain(*fs.stacked(resampled, d, mask[..., None, :]), ratio)
        iv = fs.pairwise_interval(x, n, valid, level, ratio)
        out[d] = {"value": point, "samples": samples, "lo": iv["lo"], "hi": iv["hi"], "pair_lo": iv["pair_lo"],
                  "pair_hi": iv["pair_hi"], "corrected": fs.bias_corrected(point, samples, iv["lo"], iv["hi"])}
    return out


def disparity_record(role: str, d: str, st: dict, counts: GroupCounts, masks: dict, feature: str, n: int,
                     level: float) -> Measurement:
    """One disparity's measurement from its disparity_stats entry (scalars: one data set)."""
    kind = MASK_OF.get(d, "big")
    mask = masks[kind]
    short = counts.short_groups(mask, kind)
    grp = {"feature": feature}
    if mask.sum() < 2:
        need = f"at least {counts.stats.min_group_n} rows" + (
            " and enough positives/negatives" if kind != "big" else "")
        return Measurement(NAME, f"bias.{d}", role, None, None, n, Status.INSUFFICIENT_DATA, grp,
                           {"reason": f"fewer than 2 groups with {need}", "insufficient_groups": list(short),
                            "missing_rows": short})
    if not np.isfinite(st["value"]):
        # e.g. a ratio of selection rates when no group has a positive prediction: undefined, not a number
        return Measurement(NAME, f"bias.{d}", role, None, None, n, Status.INSUFFICIENT_DATA, grp,
                           {"reason": "undefined on these predictions (0/0)", "groups_compared": int(mask.sum())})
    def name_n(pair):
        return {counts.names[int(i)]: int(counts.n[int(i)]) for i in pair}

    details = {"groups_compared": int(mask.sum()),
               "corrected": {"value": float(st["corrected"]), "ci": [float(st["lo"]), float(st["hi"])],
                             "method": CORRECTION},
               "rows": {"lower": name_n(st["pair_lo"]), "upper": name_n(st["pair_hi"])}}
    if short:
        details.update(insufficient_groups=list(short), missing_rows=short)
    return Measurement(NAME, f"bias.{d}", role, float(st["value"]), percentile_ci(st["samples"], level), n,
                       Status.MEASURED, grp, details)


def feature_counts(y, codes, names, k: int, classes, stats, w=None) -> GroupCounts:
    """w: rows each entry stands for (a streamed split's cells), None: one row each."""
    g = len(names)
    true_counts = np.stack([wcount(codes[y == c], g, None if w is None else w[y == c]) for c in range(k)], -1)
    return GroupCounts(list(names), wcount(codes, g, w), true_counts[:, classes], list(classes), stats)


def audit_feature(y, preds: dict, codes, names, k: int, classes, cells, stats, feature: str, w=None):
    """(measurement, interval_at) pairs for one sensitive feature (or intersection) across model roles."""
    g = len(names)
    counts = feature_counts(y, codes, names, k, classes, stats, w)
    n = int(counts.n.sum())
    masks = counts.masks()
    out, samples = [], {}
    for role, pred in preds.items():
        codes_full = (codes * k + y) * k + pred
        conf = wcount(codes_full, g * k * k, w).reshape(g, k, k)
        boot = cells.counts_of(codes_full, g * k * k).reshape(-1, g, k, k)
        st = disparity_stats(conf, boot, classes, masks, stats.ci_level)
        samples[role] = {d: st[d]["samples"] for d in DISPARITIES}
        for d in DISPARITIES:
            out.append((disparity_record(role, d, st[d], counts, masks, feature, n, stats.ci_level), None))
        out.extend(group_records(role, conf, counts, feature, stats.ci_level))
    small = [names[i] for i in range(g) if not masks["big"][i]]
    records = [m for m, _ in out if m.group and "value" not in m.group]
    out.extend(decomposition(y, preds, codes, counts, masks, samples, records, feature, k, classes, stats, w))
    return out, samples, small


def decomposition(y, preds: dict, codes, counts: GroupCounts, masks: dict, samples: dict, records: list, feature: str,
                  k: int, classes, stats, w=None):
    """inherited = B(M1) - B(M0), introduced = B(M2) - B(M1), on the same rows (descriptive, not causal).

    Decided on fs.disparity_change_interval: the plain difference of two max - min disparities inherits their
    small-group bias, which need not cancel (a fair model's noise inflates its disparity more than an unfair
    model's), so a bootstrap interval of the difference can pass a real increase."""
    by = {(m.model, m.metric.split(".", 1)[1]): m for m in records}
    g, n = len(counts.names), int(counts.n.sum())
    out = []
    for metric, a, b in (("bias.inherited", ModelRole.BASE_PROBE.value, ModelRole.NO_TRANSFER.value),
                         ("bias.introduced", ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value)):
        if a not in preds or b not in preds:
            continue
        conf = {r: wcount((codes * k + y) * k + preds[r], g * k * k, w).reshape(g, k, k) for r in (a, b)}
        paired = fs.paired_counts(y, preds[a], preds[b], codes, g, classes, w)
        for d in HARM_DIFFERENCES:
            ma, mb = by.get((a, d)), by.get((b, d))
            grp = {"feature": feature, "disparity": d}
            short = dict((ma.details or {}).get("missing_rows") or {}) if ma is not None else {}
            if ma is None or mb is None or ma.value is None or mb.value is None:
                out.append((Measurement(NAME, metric, a, None, None, n, Status.INSUFFICIENT_DATA, grp,
                                        {"reason": "a disparity it needs could not be measured",
                                         "insufficient_groups": list(short), "missing_rows": short}), None))
                continue
            mask = np.asarray(masks[MASK_OF.get(d, "big")], bool)
            side = {r: fs.stacked(rate_counts(conf[r], classes), d, mask) for r in (a, b)}
            only_a, only_b, trials = (np.concatenate([paired[src][i] for src in fs.sources(d)], -1) for i in range(3))

            def interval(level, sa=side[a], sb=side[b], p=(only_a, only_b, trials, side[a][2])):
                return fs.disparity_change_interval(sa, sb, p, level)

            diff = samples[a][d] - samples[b][d]
            point = ma.value - mb.value
            iv = interval(stats.ci_level)

            def name_n(pair):
                return {counts.names[int(i)]: int(counts.n[int(i)]) for i in pair}

            details = {"reading": "descriptive, not causal", "minus": b,
                       "corrected": {"value": float(fs.bias_corrected(point, diff, iv["lo"], iv["hi"])),
                                     "ci": [float(iv["lo"]), float(iv["hi"])], "method": CHANGE_METHOD},
                       "rows": {"lower": name_n(iv["pair_lo"]), "upper": name_n(iv["pair_hi"])}}
            if short:
                details.update(insufficient_groups=list(short), missing_rows=short)
            out.append((Measurement(NAME, metric, a, point, percentile_ci(diff, stats.ci_level), n, Status.MEASURED,
                                    grp, details),
                        lambda level, interval=interval: _ends(interval(level))))
    return out


def _ends(iv: dict) -> tuple[float, float]:
    return float(iv["lo"]), float(iv["hi"])


NO_SENSITIVE = "no sensitive column declared (data.sensitive): bias rules cannot be decided"
METHOD_NOTE = ("Disparities are decided on a small-group-corrected interval, not on the plain max - min, which "
               "small groups bias upward (Lum et al. 2022): pairwise gaps of smoothed rates (x+1)/(n+2), the "
               "upper end per pair (intersection-union), the lower end Bonferroni-adjusted over every pair; ratios "
               "on log smoothed rates. 'corrected' shows that interval and the bootstrap bias-corrected estimate "
               "next to the plain one. Per-group rates use Wilson intervals at the Bonferroni level of their "
               "feature's family of groups ('simultaneous'). bias.inherited / bias.introduced are decided on an "
               "interval of the change: paired per group for the upper end, corrected bounds of each disparity for "
               "the lower.")


def check_config(section, config: BiasConfig) -> None:
    """The links' format, checked when the spec is read (an input error names the file, field and value)."""
    from .counterfactual import parse_link

    for entry in config.counterfactual_links:
        if parse_link(entry) is None:
            raise section.fail("counterfactual_links", "entries like 'sex: relationship Husband=Wife'", entry)


def run(evidence, config: BiasConfig, stats, models=None) -> CheckResult:
    ds = evidence.dataset
    if not ds.sensitive:
        return _counterfactual_only(evidence, config, stats, models)
    split = ds.splits[config.split]
    y = split.y
    k = ds.n_classes
    classes = [ds.positive] if ds.positive is not None else list(range(k))
    cells = evidence.cells(config.split, stats.n_boot)
    preds = {r.value: evidence.pred(r.value, config.split) for r in MAIN_ROLES if r.value in evidence.probs}
    features = [(f,) for f in ds.sensitive]
    if config.intersections and len(ds.sensitive) > 1:
        features += [(a, b) for i, a in enumerate(ds.sensitive) for b in ds.sensitive[i + 1:]]
    items, notes, small_all = [], [], {}
    for cols in features:
        feature = " x ".join(cols)
        codes, names = group_codes(split.frame, cols)
        pairs, _, small = audit_feature(y, preds, codes, names, k, classes, cells, stats, feature,
                                        evidence.w(config.split))
        items.extend(pairs)
        if small:
            small_all[feature] = small
    for feature, names in small_all.items():
        notes.append(f"{feature}: groups below min_group_n={stats.min_group_n} are INSUFFICIENT_DATA (each listed "
                     f"with the rows it lacks) and left out of the disparities: {', '.join(names)}.")
    notes.append(METHOD_NOTE)
    notes.append("bias.inherited / bias.introduced are descriptive differences between model roles on the same "
                 "bootstrap resamples, not causal effects.")
    if k > 2:
        notes.append("Multiclass: each class is treated one-vs-rest; the worst class is reported.")
    tables = {}
    forward_rows = 0
    from .counterfactual import counterfactual_measurements, not_measured

    if config.counterfactual and models is not None:
        # a streamed split's swaps run on its seeded sample of rows: swapping needs the rows' text
        cf, cf_table, cf_notes, forward_rows = counterfactual_measurements(evidence.rows_sample or evidence, models,
                                                                           config, stats)
        items.extend(cf)
        notes.extend(cf_notes)
        if cf_table:
            tables["counterfactual_examples"] = cf_table
    else:
        items.extend(not_measured("the counterfactual test was not run (bias.counterfactual: false, or no models)"))
    out = with_simultaneous(items, stats.ci_level)
    tables["disparities"] = _disparity_table(out)
    return CheckResult(NAME, Status.MEASURED, tuple(out), tables=tables, notes=tuple(notes),
                       cost={"forward_rows": forward_rows})


NO_GROUPS = ("Group metrics (disparities, per-group rates, inherited/introduced) need a declared sensitive column "
             "(data.sensitive); only the counterfactual swaps of gendered words and names ran.")


def _counterfactual_only(evidence, config: BiasConfig, stats, models) -> CheckResult:
    """Free text with no group column: the counterfactual axes need none, so they still run."""
    from ..results import skipped
    from .counterfactual import counterfactual_measurements

    if not config.counterfactual or models is None:
        return skipped(NAME, NO_SENSITIVE)
    items, table, notes, forward_rows = counterfactual_measurements(evidence, models, config, stats)
    group_metrics = [m for m in METRICS if "counterfactual" not in m]
    items += [(Measurement(NAME, metric, role.value, None, None, 0, Status.SKIPPED, None, {"reason": NO_SENSITIVE}),
               None) for metric in group_metrics for role in MAIN_ROLES]
    out = with_simultaneous(items, stats.ci_level)
    return CheckResult(NAME, Status.MEASURED, tuple(out), tables={"counterfactual_examples": table} if table else {},
                       notes=(NO_GROUPS, *notes), cost={"forward_rows": forward_rows})


def _disparity_table(ms) -> dict:
    rows = []
    for m in ms:
        if m.metric in (f"bias.{d}" for d in DISPARITIES):
            c = (m.details or {}).get("corrected") or {}
            def span(ci):
                return None if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"

            rows.append([m.group["feature"], m.metric.split(".", 1)[1], m.model, m.value, span(m.ci),
                         c.get("value"), span(c.get("ci")), m.status.value])
    return {"title": "Disparities by sensitive feature and model role", "columns":
            ["feature", "disparity", "model", "plain value", "plain CI", "corrected value", "corrected CI (decides)",
             "status"], "rows": rows}
