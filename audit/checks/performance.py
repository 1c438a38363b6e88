"""Performance of every model role on the current split: accuracy, macro F1, ROC AUC, with bootstrap CIs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from ..results import CheckResult, Measurement, Status
from ..stats import auc_bootstrap, auc_from_weights, binned_auc, hanley_mcneil, percentile_ci
from .common import accuracy_samples, macro_f1, macro_f1_samples

NAME = "performance"
METRICS = ("performance.accuracy", "performance.macro_f1", "performance.roc_auc")


@dataclass(frozen=True)
class PerformanceConfig:
    split: str = option("current", "split the models are scored on", choices=("current", "reference"))


def run(evidence, config: PerformanceConfig, stats) -> CheckResult:
    split = config.split
    y = evidence.y(split)
    k = evidence.dataset.n_classes
    cells = evidence.cells(split, stats.n_boot)
    pos = evidence.dataset.positive
    out = []
    w, n = evidence.w(split), evidence.n(split)
    for role in evidence.roles(split):
        probs = evidence.probs[role][split]
        pred = probs.argmax(axis=1)
        acc = accuracy_samples(y, pred, cells)
        correct = float(np.sum((y == pred) if w is None else w * (y == pred)))
        out.append(Measurement(NAME, "performance.accuracy", role, correct / max(n, 1),
                               percentile_ci(acc, stats.ci_level), n))
        out.append(Measurement(NAME, "performance.macro_f1", role, macro_f1(y, pred, k, w),
                               percentile_ci(macro_f1_samples(y, pred, k, cells), stats.ci_level), n))
        if pos is not None and w is not None:
            out.append(_binned_auc(evidence.score_hist[role][split], pos, role, n, stats.ci_level))
        elif pos is not None:
            score, positive = probs[:, pos], y == pos
            point = float(auc_from_weights(score, positive, np.ones((1, n)))[0])
            ci, method = auc_bootstrap(score, positive, stats.n_boot, stats.seed, stats.ci_level)
            out.append(Measurement(NAME, "performance.roc_auc", role, point, ci, n, Status.MEASURED, None,
                                   {"interval": method}))
    return _result(evidence, out)


def _binned_auc(hist: np.ndarray, pos: int, role: str, n: int, level: float) -> Measurement:
    """A streamed split's AUC from its score histogram: the interval widened by the binning's error bound."""
    point, bound = binned_auc(hist, pos)
    n1 = int(hist[pos].sum())
    lo, hi = hanley_mcneil(point, n1, n - n1, level)
    ci = (max(0.0, float(lo) - bound), min(1.0, float(hi) + bound))
    return Measurement(NAME, "performance.roc_auc", role, point, ci, n, Status.MEASURED, None,
                       {"interval": "Hanley-McNeil, widened by the score grid's bound", "grid_bound": bound})


def _result(evidence, out: list) -> CheckResult:
    control = evidence.info.get("controls", {}).get("chosen")
    notes = (f"no_transfer is {control}, the stronger control on the reference split.",) if control else ()
    return CheckResult(NAME, Status.MEASURED, tuple(out), notes=notes)
