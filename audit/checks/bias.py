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

from ..options import option
from ..results import MAIN_ROLES, CheckResult, Measurement, ModelRole, Status
from ..stats import holm, percentile_ci, wilson_ci
from .common import DISPARITIES, NEEDS_LABELS, confusion_rates, disparities, group_codes

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
    counterfactual_samples: int = option(100, "swapped rows per axis at most", lo=10, hi=100000)


def _two_prop_p(x1, n1, x2, n2) -> float:
    from scipy.stats import norm

    if n1 == 0 or n2 == 0:
        return float("nan")
    p = (x1 + x2) / (n1 + n2)
    se = np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return float(2 * norm.sf(abs(x1 / n1 - x2 / n2) / se))


def audit_feature(y, preds: dict, codes, names, k: int, classes, cells, stats, feature: str):
    """Measurements for one sensitive feature (or intersection) across model roles."""
    g = len(names)
    n_g = np.bincount(codes, minlength=g)
    true_counts = np.stack([np.bincount(codes[y == c], minlength=g) for c in range(k)], -1)
    big = n_g >= stats.min_group_n
    # TPR/FPR need positives and negatives in the group: at least the policy's minimum, and never zero.
    labelled = big & (true_counts[:, classes].min(-1) >= max(stats.min_pos, 1)) & \
        ((n_g[:, None] - true_counts[:, classes]).min(-1) >= max(stats.min_neg, 1))
    small = [names[i] for i in range(g) if not big[i]]
    out, samples = [], {}
    for role, pred in preds.items():
        codes_full = (codes * k + y) * k + pred
        conf = np.bincount(codes_full, minlength=g * k * k).reshape(g, k, k)
        boot = cells.counts_of(codes_full, g * k * k).reshape(-1, g, k, k)
        point, dist = disparities(conf, classes, big, labelled), disparities(boot, classes, big, labelled)
        samples[role] = dist
        rates = confusion_rates(conf, classes)
        for d in DISPARITIES:
            mask = labelled if d in NEEDS_LABELS else big
            if mask.sum() < 2:
                out.append(Measurement(NAME, f"bias.{d}", role, None, None, int(y.size), Status.INSUFFICIENT_DATA,
                                       {"feature": feature}, {"reason": f"fewer than 2 groups with at least "
                                                              f"{stats.min_group_n} rows" + (" and enough positives/negatives" if d in NEEDS_LABELS else ""),
                                                              "insufficient_groups": [names[i] for i in range(g) if not mask[i]]}))
                continue
            left_out = [names[i] for i in range(g) if not mask[i]]
            if not np.isfinite(point[d]):
                # e.g. a ratio of selection rates when no group has a positive prediction: undefined, not a number
                out.append(Measurement(NAME, f"bias.{d}", role, None, None, int(y.size), Status.INSUFFICIENT_DATA,
                                       {"feature": feature}, {"reason": "undefined on these predictions (0/0)",
                                                              "groups_compared": int(mask.sum())}))
                continue
            out.append(Measurement(NAME, f"bias.{d}", role, float(point[d]), percentile_ci(dist[d], stats.ci_level),
                                   int(y.size), Status.MEASURED, {"feature": feature},
                                   {"groups_compared": int(mask.sum()), "insufficient_groups": left_out} if left_out
                                   else {"groups_compared": int(mask.sum())}))
        out.extend(_group_records(role, rates, conf, n_g, true_counts, classes, names, big, labelled, feature, stats))
    return out, samples, small


def _group_records(role, rates, conf, n_g, true_counts, classes, names, big, labelled, feature, stats):
    out = []
    c = classes[-1]      # binary: the positive class; multiclass: reported per class below
    sel_x = conf[:, :, c].sum(-1)
    p_raw = [_two_prop_p(sel_x[i], n_g[i], sel_x.sum() - sel_x[i], n_g.sum() - n_g[i]) for i in range(len(names))]
    p_adj = holm(p_raw)
    for i, name in enumerate(names):
        grp = {"feature": feature, "value": name}
        n = int(n_g[i])
        if not big[i]:
            out.append(Measurement(NAME, "bias.group_selection_rate", role, None, None, n, Status.INSUFFICIENT_DATA,
                                   grp, {"reason": f"n={n} < min_group_n={stats.min_group_n}"}))
            continue
        for ci_, cls in enumerate(classes):
            x = int(conf[i, :, cls].sum())
            det = {"p_vs_rest": p_raw[i], "p_holm": p_adj[i]} if cls == c else {}
            if len(classes) > 1:
                det["class"] = int(cls)
            out.append(Measurement(NAME, "bias.group_selection_rate", role, x / n, wilson_ci(x, n, stats.ci_level),
                                   n, Status.MEASURED, grp, det or None))
        correct = int(np.trace(conf[i]))
        out.append(Measurement(NAME, "bias.group_accuracy", role, correct / n, wilson_ci(correct, n, stats.ci_level),
                               n, Status.MEASURED, grp))
        pos, neg = int(true_counts[i, c]), n - int(true_counts[i, c])
        if not labelled[i]:
            out.append(Measurement(NAME, "bias.group_tpr", role, None, None, n, Status.INSUFFICIENT_DATA, grp,
                                   {"reason": f"{pos} positives / {neg} negatives; need {stats.min_pos} / {stats.min_neg}"}))
            continue
        tp = int(conf[i, c, c])
        fp = int(conf[i, :, c].sum()) - tp
        out.append(Measurement(NAME, "bias.group_tpr", role, tp / pos, wilson_ci(tp, pos, stats.ci_level), pos,
                               Status.MEASURED, grp))
        out.append(Measurement(NAME, "bias.group_fpr", role, fp / neg, wilson_ci(fp, neg, stats.ci_level), neg,
                               Status.MEASURED, grp))
    return out


def decomposition(samples: dict, points: dict, n: int, feature: str, stats) -> list[Measurement]:
    """inherited = B(M1) - B(M0), introduced = B(M2) - B(M1), on the same resamples (descriptive, not causal)."""
    out = []
    pairs = (("bias.inherited", ModelRole.BASE_PROBE.value, ModelRole.NO_TRANSFER.value),
             ("bias.introduced", ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value))
    for metric, a, b in pairs:
        if a not in samples or b not in samples:
            continue
        for d in HARM_DIFFERENCES:
            pa, pb = points.get((a, d)), points.get((b, d))
            grp = {"feature": feature, "disparity": d}
            if pa is None or pb is None:
                out.append(Measurement(NAME, metric, a, None, None, n, Status.INSUFFICIENT_DATA, grp,
                                       {"reason": "a disparity it needs could not be measured"}))
                continue
            diff = samples[a][d] - samples[b][d]
            out.append(Measurement(NAME, metric, a, pa - pb, percentile_ci(diff, stats.ci_level), n, Status.MEASURED,
                                   grp, {"reading": "descriptive, not causal", "minus": b}))
    return out


def run(evidence, config: BiasConfig, stats, models=None) -> CheckResult:
    ds = evidence.dataset
    if not ds.sensitive:
        from ..results import skipped

        return skipped(NAME, "the spec declares no sensitive columns (data.sensitive)")
    split = ds.splits[config.split]
    y = split.y
    k = ds.n_classes
    classes = [ds.positive] if ds.positive is not None else list(range(k))
    cells = evidence.cells(config.split, stats.n_boot)
    preds = {r.value: evidence.pred(r.value, config.split) for r in MAIN_ROLES if r.value in evidence.probs}
    features = [(f,) for f in ds.sensitive]
    if config.intersections and len(ds.sensitive) > 1:
        features += [(a, b) for i, a in enumerate(ds.sensitive) for b in ds.sensitive[i + 1:]]
    out, notes, small_all = [], [], {}
    for cols in features:
        feature = " x ".join(cols)
        codes, names = group_codes(split.frame, cols)
        ms, samples, small = audit_feature(y, preds, codes, names, k, classes, cells, stats, feature)
        out.extend(ms)
        points = {(m.model, m.metric.split(".", 1)[1]): m.value for m in ms if m.group and "value" not in m.group
                  and m.value is not None}
        out.extend(decomposition(samples, points, int(y.size), feature, stats))
        if small:
            small_all[feature] = small
    for feature, names in small_all.items():
        notes.append(f"{feature}: groups below min_group_n={stats.min_group_n} are INSUFFICIENT_DATA and left out "
                     f"of the disparities: {', '.join(names)}.")
    notes.append("bias.inherited / bias.introduced are descriptive differences between model roles on the same "
                 "bootstrap resamples, not causal effects.")
    if k > 2:
        notes.append("Multiclass: each class is treated one-vs-rest; the worst class is reported.")
    tables = {}
    forward_rows = 0
    if config.counterfactual and models is not None:
        from .counterfactual import counterfactual_measurements

        cf, cf_table, cf_notes, forward_rows = counterfactual_measurements(evidence, models, config, stats)
        out.extend(cf)
        notes.extend(cf_notes)
        if cf_table:
            tables["counterfactual_examples"] = cf_table
    tables["disparities"] = _disparity_table(out)
    return CheckResult(NAME, Status.MEASURED, tuple(out), tables=tables, notes=tuple(notes),
                       cost={"forward_rows": forward_rows})


def _disparity_table(ms) -> dict:
    rows = []
    for m in ms:
        if m.metric in (f"bias.{d}" for d in DISPARITIES):
            rows.append([m.group["feature"], m.metric.split(".", 1)[1], m.model, m.value,
                         None if m.ci is None else f"[{m.ci[0]:.3f}, {m.ci[1]:.3f}]", m.status.value])
    return {"title": "Disparities by sensitive feature and model role", "columns":
            ["feature", "disparity", "model", "value", "95% CI", "status"], "rows": rows}
