"""Performance of every model role on the current split: accuracy, macro F1, ROC AUC, with bootstrap CIs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import option
from ..results import CheckResult, Measurement, Status
from ..stats import auc_bootstrap, auc_from_weights, percentile_ci
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
    for role in evidence.roles(split):
        probs = evidence.probs[role][split]
        pred = probs.argmax(axis=1)
        n = int(y.size)
        acc = accuracy_samples(y, pred, cells)
        out.append(Measurement(NAME, "performance.accuracy", role, float(np.mean(y == pred)),
                               percentile_ci(acc, stats.ci_level), n))
        out.append(Measurement(NAME, "performance.macro_f1", role, macro_f1(y, pred, k),
                               percentile_ci(macro_f1_samples(y, pred, k, cells), stats.ci_level), n))
        if pos is not None:
            score, positive = probs[:, pos], y == pos
            point = float(auc_from_weights(score, positive, np.ones((1, n)))[0])
            ci, method = auc_bootstrap(score, positive, stats.n_boot, stats.seed, stats.ci_level)
            out.append(Measurement(NAME, "performance.roc_auc", role, point, ci, n, Status.MEASURED, None,
                                   {"interval": method}))
    control = evidence.info.get("controls", {}).get("chosen")
    notes = (f"no_transfer is {control}, the stronger control on the reference split.",) if control else ()
    return CheckResult(NAME, Status.MEASURED, tuple(out), notes=notes)
