"""Counterfactual identity swaps: change only an identity attribute of each input and see what flips.

The modality builds the swapped inputs (tasks/text_counterfactual.py for text: sensitive values, gendered words,
names); the originals' predictions come from Evidence, so only the swapped inputs need new forward passes.
"""
from __future__ import annotations

import numpy as np

from ..results import Measurement, ModelRole, Status
from ..stats import bootstrap_mean_ci, wilson_ci

NAME = "bias"
ROLES = (ModelRole.ADAPTED.value, ModelRole.BASE_PROBE.value)


def counterfactual_measurements(evidence, models, config, stats):
    """(measurements, table of the largest changes, notes, forward rows spent on the swapped inputs)."""
    split = evidence.dataset.splits[config.split]
    rng = np.random.default_rng(stats.seed)
    axes = models.modality.counterfactual_axes(evidence.dataset, split, rng)
    if not axes:
        return [], None, ["Counterfactual test skipped: the inputs offer nothing to change (for text: no sensitive "
                          "values, gendered words or lexicon names occur in the evaluation texts)."], 0
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
            out.append(Measurement(NAME, "bias.counterfactual_flip_rate", role, float(flips.mean()),
                                   wilson_ci(int(flips.sum()), n, stats.ci_level), n, Status.MEASURED, grp))
            out.append(Measurement(NAME, "bias.counterfactual_prob_change", role, float(change.mean()),
                                   bootstrap_mean_ci(change, stats.n_boot, stats.seed, stats.ci_level), n, Status.MEASURED, grp,
                                   {"measure": "mean |change in P(positive)|" if pos is not None else "mean total variation"}))
            if role == ModelRole.ADAPTED.value:
                for j in np.argsort(-change, kind="stable")[:3]:
                    examples.append([axis, str(split.inputs[rows[j]]), str(new[j]),
                                     float(before[j, pos if pos is not None else 0]),
                                     float(after[j, pos if pos is not None else 0]), bool(flips[j])])
    table = {"title": "Counterfactual pairs with the largest change (adapted model)",
             "columns": ["axis", "original input", "changed input", "P(positive) before", "P(positive) after",
                         "flipped"],
             "rows": examples}
    return out, table, [], 2 * len(all_new)
