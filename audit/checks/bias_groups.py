"""Which groups can be measured, and a record for every group of every sensitive feature.

A group below the policy's minimum (min_group_n rows; min_pos positives for a TPR, min_neg negatives for an
FPR) still gets its record, as INSUFFICIENT_DATA with its n and the rows it lacks, so a rule over the groups
never passes by not seeing one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..results import Measurement, Status
from ..stats import holm, wilson_ci

NAME = "bias"


@dataclass(frozen=True)
class GroupCounts:
    """Counts of one sensitive feature (or intersection) on the evaluated split."""

    names: list
    n: np.ndarray          # (G,) rows per group
    pos: np.ndarray        # (G, C) rows of each audited class per group
    classes: list
    stats: object

    @property
    def neg(self) -> np.ndarray:
        return self.n[:, None] - self.pos

    def masks(self) -> dict:
        s = self.stats
        big = self.n >= s.min_group_n
        tpr = big & (self.pos.min(-1) >= max(s.min_pos, 1))
        fpr = big & (self.neg.min(-1) >= max(s.min_neg, 1))
        return {"big": big, "tpr": tpr, "fpr": fpr, "labelled": tpr & fpr}

    def shortfall(self, i: int, kind: str) -> int:
        """Rows group i lacks to be measured for `kind` (at least; positives/negatives at the group's share)."""
        s, n = self.stats, int(self.n[i])
        need = max(s.min_group_n - n, 0)
        total = max(int(self.n.sum()), 1)
        for want, have, overall, applies in (
                (max(s.min_pos, 1), self.pos[i].min(), self.pos.sum(0).min() / total, kind in ("tpr", "labelled")),
                (max(s.min_neg, 1), self.neg[i].min(), self.neg.sum(0).min() / total, kind in ("fpr", "labelled"))):
            if applies and have < want:
                share = max(have / n if n else 0.0, overall, 1e-6)
                need = max(need, math.ceil((want - have) / share))
        return int(need)

    def short_groups(self, mask: np.ndarray, kind: str) -> dict:
        return {self.names[i]: self.shortfall(i, kind) for i in range(len(self.names)) if not mask[i]}


def _insufficient(metric, role, n, grp, reason, label, short, extra=None) -> Measurement:
    return Measurement(NAME, metric, role, None, None, n, Status.INSUFFICIENT_DATA, grp,
                       dict(extra or {}, reason=reason, missing_rows={label: short}))


def group_records(role: str, conf: np.ndarray, counts: GroupCounts, feature: str, level: float):
    """(measurement, interval_at) for every group x per-group metric; conf is (G, K, K) [true, pred]."""
    s, names, masks = counts.stats, counts.names, counts.masks()
    c = counts.classes[-1]          # binary: the positive class; TPR/FPR are for this class
    n_g = counts.n
    sel_x = conf[:, :, c].sum(-1)
    p_raw = [_two_prop_p(sel_x[i], n_g[i], sel_x.sum() - sel_x[i], n_g.sum() - n_g[i]) for i in range(len(names))]
    p_adj = holm(p_raw)
    out = []
    for i, name in enumerate(names):
        grp = {"feature": feature, "value": name}
        n = int(n_g[i])
        small = f"n={n} < min_group_n={s.min_group_n}"

        def measured(metric, x, k, det=None, grp=grp, name=name, n=n):
            out.append((
                Measurement(NAME, metric, role, x / k, wilson_ci(x, k, level), k, Status.MEASURED, grp,
                            dict(det or {}, rows={name: n})),      # the group's rows drive its interval
                lambda lv, x=x, k=k: wilson_ci(x, k, lv)))

        for cls in counts.classes:
            det = {"p_vs_rest": p_raw[i], "p_holm": p_adj[i]} if cls == c else {}
            if len(counts.classes) > 1:
                det["class"] = int(cls)
            if not masks["big"][i]:
                extra = {"class": int(cls)} if len(counts.classes) > 1 else None
                out.append((_insufficient("bias.group_selection_rate", role, n, grp, small, name,
                                          counts.shortfall(i, "big"), extra), None))
            else:
                measured("bias.group_selection_rate", int(conf[i, :, cls].sum()), n, det)
        if not masks["big"][i]:
            out.append((_insufficient("bias.group_accuracy", role, n, grp, small, name, counts.shortfall(i, "big")),
                        None))
        else:
            measured("bias.group_accuracy", int(np.trace(conf[i])), n)
        k = counts.classes.index(c)
        pos, neg = int(counts.pos[i, k]), int(counts.neg[i, k])
        tp = int(conf[i, c, c])
        fp = int(conf[i, :, c].sum()) - tp
        for metric, kind, x, k_n, need, what in (("bias.group_tpr", "tpr", tp, pos, s.min_pos, "positives"),
                                                 ("bias.group_fpr", "fpr", fp, neg, s.min_neg, "negatives")):
            if masks[kind][i]:
                measured(metric, x, k_n)
            else:
                why = small if not masks["big"][i] else f"{k_n} {what}; need {max(need, 1)}"
                out.append((_insufficient(metric, role, k_n, grp, why, name, counts.shortfall(i, kind)), None))
    return out


def _two_prop_p(x1, n1, x2, n2) -> float:
    """Two-sided pooled z-test p-value, 2 * sf(|z|) = erfc(|z| / sqrt 2)."""
    if n1 == 0 or n2 == 0:
        return float("nan")
    p = (x1 + x2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return float(math.erfc(abs(x1 / n1 - x2 / n2) / se / math.sqrt(2)))
