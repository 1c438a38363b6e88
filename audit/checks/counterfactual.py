"""Counterfactual identity swaps: change only an identity attribute of each input and see what flips.

The modality builds the swapped inputs (tasks/text_counterfactual.py for text: sensitive values, gendered words,
names); the originals' predictions come from Evidence, so only the swapped inputs need new forward passes.
"""
from __future__ import annotations

import numpy as np

from ..results import Measurement, ModelRole, Status
from ..stats import percentile_ci, wilson_ci

NAME = "bias"
ROLES = (ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value)


def _axis_records(role, grp, axis, flips, change, pos, stats):
    """(measurement, interval_at) for one axis and role; fewer than min_group_n swapped rows decide nothing."""
    n = int(flips.size)
    label, unit = f"the axis {axis!r}", "swapped rows"
    if n < stats.min_group_n:
        details = {"reason": f"{n} swapped rows < min_group_n={stats.min_group_n}",
                   "missing_rows": {label: stats.min_group_n - n}, "rows_unit": unit}
        return [(Measurement(NAME, metric, role, None, None, n, Status.INSUFFICIENT_DATA, grp, details), None)
                for metric in ("bias.counterfactual_flip_rate", "bias.counterfactual_prob_change")]
    x = int(flips.sum())
    means = _bootstrap_means(change, stats.n_boot, stats.seed)
    measure = "mean |change in P(positive)|" if pos is not None else "mean total variation"
    return [(Measurement(NAME, "bias.counterfactual_flip_rate", role, float(flips.mean()), wilson_ci(x, n, stats.ci_level),
                         n, Status.MEASURED, grp, {"rows": {label: n}, "rows_unit": unit}), lambda lv: wilson_ci(x, n, lv)),
            (Measurement(NAME, "bias.counterfactual_prob_change", role, float(change.mean()),
                         percentile_ci(means, stats.ci_level), n, Status.MEASURED, grp,
                         {"measure": measure, "rows": {label: n}, "rows_unit": unit}), lambda lv: percentile_ci(means, lv))]


def not_measured(why: str) -> list:
    """SKIPPED records, so a rule on the counterfactual metrics says why it has no evidence."""
    return [(Measurement(NAME, metric, role, None, None, 0, Status.SKIPPED, None, {"reason": why}), None)
            for metric in ("bias.counterfactual_flip_rate", "bias.counterfactual_prob_change") for role in ROLES]


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    from ..stats import bootstrap_indices

    return values[bootstrap_indices(values.size, n_boot, seed)].mean(axis=1)


def counterfactual_measurements(evidence, models, config, stats):
    """(measurements, table of the largest changes, notes, forward rows spent on the swapped inputs)."""
    split = evidence.dataset.splits[config.split]
    rng = np.random.default_rng(stats.seed)
    axes = models.modality.counterfactual_axes(evidence.dataset, split, rng)
    if not axes:
        why = "no identity terms (sensitive values, gendered words, lexicon names) occur in the evaluation texts"
        return not_measured(why), None, [f"Counterfactual test skipped: {why}."], 0
    pos = evidence.dataset.positive
    for axis, (rows, new) in list(axes.items()):
        if len(rows) > config.counterfactual_samples:
            keep = np.sort(rng.choice(len(rows), config.counterfactual_samples, replace=False))
            axes[axis] = ([rows[i] for i in keep], [new[i] for i in keep])
    # One bucketed pass over every axis's swapped inputs, then split back per axis.
    all_new = [t for _, new in axes.values() for t in new]
    scored = models.score(all_new, f"counterfactual swaps ({len(axes)} axes)")
    out, examples, offset = [], [], 0
    for axis, (rows, new) in axes.items():
        rows = np.asarray(rows)
        n = len(rows)
        swapped = {role: p[offset:offset + n] for role, p in scored.items()}
        offset += n
        for role in ROLES:
            before = evidence.probs[role][config.split][rows]
            after = swapped[role]
            flips = before.argmax(1) != after.argmax(1)
            change = np.abs(after[:, pos] - before[:, pos]) if pos is not None else 0.5 * np.abs(after - before).sum(1)
            grp = {"axis": axis}
            out.extend(_axis_records(role, grp, axis, flips, change, pos, stats))
            if role == ModelRole.ADAPTED.value:
                for j in np.argsort(-change, kind="stable")[:3]:
                    examples.append([axis, split.inputs[rows[j]], new[j], float(before[j, pos if pos is not None else 0]),
                                     float(after[j, pos if pos is not None else 0]), bool(flips[j])])
    table = {"title": "Counterfactual pairs with the largest change (adapted model)",
             "columns": ["axis", "original text", "swapped text", "P(positive) before", "P(positive) after", "flipped"],
             "rows": examples}
    return out, table, [], 2 * len(all_new)
