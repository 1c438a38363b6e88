"""Counterfactual identity swaps: change only an identity attribute of each input and see what flips.

The modality builds the swapped inputs (tasks/text_counterfactual.py for text: sensitive values, gendered words,
names); the originals' predictions come from Evidence, so only the swapped inputs need new forward passes.
"""
from __future__ import annotations

import re

import numpy as np

from ..results import Measurement, ModelRole, Status
from ..stats import percentile_ci

NAME = "bias"
LINK_FORMAT = re.compile(r"^\s*([^:\s]+)\s*:\s*([^\s=]+)\s+([^=]+?)\s*=\s*([^=]+?)\s*$")


def parse_link(entry: str) -> tuple[str, str, str, str] | None:
    """'sex: relationship Husband=Wife' -> ('sex', 'relationship', 'Husband', 'Wife'); None if malformed."""
    m = LINK_FORMAT.match(entry)
    return m.groups() if m else None
ROLES = (ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value)


INTERVAL = ("flip rate decided on Wilson's interval at the effective sample size n / design effect; the design "
            "effect comes from a cluster bootstrap over source texts (each keeps all its swapped pairs), "
            "Bonferroni-adjusted over the axes; prob change: percentile interval of the same cluster bootstrap")


def _axis_records(role, grp, axis, flips, change, cluster, pos, stats):
    """(measurement, interval_at) for one axis and role; fewer than min_group_n swapped rows decide nothing.

    Pairs from one source text are correlated (cluster_stats): the intervals resample source texts."""
    from ..cluster_stats import cluster_sums, cluster_weights, clustered_proportion, ratio_resamples

    n = int(flips.size)
    label, unit = f"the axis {axis!r}", "swapped rows"
    if n < stats.min_group_n:
        details = {"reason": f"{n} swapped rows < min_group_n={stats.min_group_n}",
                   "missing_rows": {label: stats.min_group_n - n}, "rows_unit": unit}
        return [(Measurement(NAME, metric, role, None, None, n, Status.INSUFFICIENT_DATA, grp, details), None)
                for metric in ("bias.counterfactual_flip_rate", "bias.counterfactual_prob_change")]
    rate, deff, flip_at = clustered_proportion(flips, cluster, stats.n_boot, stats.seed)
    sums, sizes = cluster_sums(cluster, change)
    means = ratio_resamples(sums, sizes, cluster_weights(sizes.size, stats.n_boot, stats.seed))
    measure = "mean |change in P(positive)|" if pos is not None else "mean total variation"
    common = {"rows": {label: n}, "rows_unit": unit, "source_texts": int(sizes.size), "design_effect": round(deff, 3),
              "effective_n": round(n / deff, 1), "interval": INTERVAL}
    return [(Measurement(NAME, "bias.counterfactual_flip_rate", role, rate, flip_at(stats.ci_level), n,
                         Status.MEASURED, grp, common), flip_at),
            (Measurement(NAME, "bias.counterfactual_prob_change", role, float(change.mean()),
                         percentile_ci(means, stats.ci_level), n, Status.MEASURED, grp,
                         {"measure": measure, **common}), lambda lv: percentile_ci(means, lv))]


def not_measured(why: str) -> list:
    """SKIPPED records, so a rule on the counterfactual metrics says why it has no evidence."""
    return [(Measurement(NAME, metric, role, None, None, 0, Status.SKIPPED, None, {"reason": why}), None)
            for metric in ("bias.counterfactual_flip_rate", "bias.counterfactual_prob_change") for role in ROLES]


def counterfactual_measurements(evidence, models, config, stats):
    """(measurements, table of the largest changes, notes, forward rows spent on the swapped inputs)."""
    split = evidence.dataset.splits[config.split]
    rng = np.random.default_rng(stats.seed)
    links = tuple(parse_link(entry) for entry in config.counterfactual_links)    # checked when the spec was read
    axes = models.modality.counterfactual_axes(evidence.dataset, split, rng, links)
    if not axes:
        why = ("the inputs offer nothing to change (for text: no identity terms, i.e. sensitive values, gendered "
               "words or lexicon names, occur in the evaluation texts)")
        return not_measured(why), None, [f"Counterfactual test skipped: {why}."], 0
    pos = evidence.dataset.positive
    for axis, (rows, new) in list(axes.items()):
        sources = np.unique(rows)
        if sources.size > config.counterfactual_samples:     # sample source texts, each with all its swaps
            keep = set(rng.choice(sources, config.counterfactual_samples, replace=False).tolist())
            pick = [j for j, r in enumerate(rows) if r in keep]
            axes[axis] = ([rows[j] for j in pick], [new[j] for j in pick])
    # One bucketed pass over every axis's swapped inputs, then split back per axis.
    all_new = [t for _, new in axes.values() for t in new]
    scored = models.score(all_new, f"counterfactual swaps ({len(axes)} axes)")
    out, examples, offset = [], [], 0
    for axis, (rows, new) in axes.items():
        rows = np.asarray(rows)
        n = len(rows)
        cluster = np.unique(rows, return_inverse=True)[1].reshape(-1)
        swapped = {role: p[offset:offset + n] for role, p in scored.items()}
        offset += n
        for role in ROLES:
            before = evidence.probs[role][config.split][rows]
            after = swapped[role]
            flips = before.argmax(1) != after.argmax(1)
            change = np.abs(after[:, pos] - before[:, pos]) if pos is not None else 0.5 * np.abs(after - before).sum(1)
            grp = {"axis": axis}
            out.extend(_axis_records(role, grp, axis, flips, change, cluster, pos, stats))
            if role == ModelRole.ADAPTED.value:
                for j in np.argsort(-change, kind="stable")[:3]:
                    shown = pos if pos is not None else 0
                    examples.append([axis, str(split.inputs[rows[j]]), str(new[j]), float(before[j, shown]),
                                     float(after[j, shown]), bool(flips[j])])
    table = {"title": "Counterfactual pairs with the largest change (adapted model)",
             "columns": ["axis", "original input", "changed input", "P(positive) before", "P(positive) after",
                         "flipped"],
             "rows": examples}
    how = ("templated rows: the value is swapped in the row (with the columns linked to it) and the template "
           "rendered again" if getattr(split, "template", None) else "free text: whole tokens only")
    note = (f"Counterfactual swaps ({how}); each source text is swapped to every other value of its axis, so pairs "
            f"are clustered: {INTERVAL}.")
    return out, table, [note], 2 * len(all_new)
