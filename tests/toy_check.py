"""A toy check used by the contract test: everything a new check needs is this one module plus one registry
entry. It measures the share of rows each model role predicts as the positive class."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transfer_audit.options import option
from transfer_audit.results import CheckResult, Measurement, Status
from transfer_audit.stats import wilson_ci

NAME = "toy"
METRICS = ("toy.positive_share",)


@dataclass(frozen=True)
class ToyConfig:
    split: str = option("current", "split to measure", choices=("current", "reference"))
    min_rows: int = option(10, "fewer rows than this gives INSUFFICIENT_DATA", lo=1)


def run(evidence, config: ToyConfig, stats) -> CheckResult:
    out = []
    positive = evidence.dataset.positive if evidence.dataset.positive is not None else 0
    for role in evidence.roles(config.split):
        pred = evidence.pred(role, config.split)
        n = int(pred.size)
        if n < config.min_rows:
            out.append(Measurement(NAME, "toy.positive_share", role, None, None, n, Status.INSUFFICIENT_DATA, None,
                                   {"reason": f"n={n} < {config.min_rows}"}))
            continue
        x = int(np.sum(pred == positive))
        out.append(Measurement(NAME, "toy.positive_share", role, x / n, wilson_ci(x, n, stats.ci_level), n))
    return CheckResult(NAME, Status.MEASURED, tuple(out), notes=("A toy check.",))
