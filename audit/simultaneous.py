"""Simultaneous decisions: which measurements form one family, and their Bonferroni-adjusted intervals.

A rule that matches m measurements of one family (same metric and model, and the same sensitive feature, or
every counterfactual axis) makes m decisions at once. Deciding each on its own 95% interval would let the
chance of a wrong statement somewhere in the family grow with m, so each is decided on its interval at the
Bonferroni level 1 - (1 - level) / m: every PASS and FAIL in the family then holds jointly at `level`.

Bonferroni rather than Holm: Holm is more powerful as a test, but it yields adjusted p-values against the
bound, and the bound lives in the policy (a relative bound is known only to the gate), so the check could not
compute them without shipping its whole bootstrap distribution; and Holm gives no intervals. Bonferroni gives
intervals that the check computes once, the report draws and the rows-to-decide estimate reads, and it
controls the family-wise error under any dependence between the measurements.

Checks compute the intervals (they hold the bootstrap resamples and counts); the gate only reads them, so it
stays pure and cheap. Both sides use `family_key`, so they agree on what a family is.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace

from .results import Measurement, Status


def family_key(m: Measurement) -> tuple:
    """(metric, model, scope): scope is the sensitive feature, 'axes' for counterfactual axes, else None."""
    group = m.group or {}
    if "feature" in group:
        scope = ("feature", group["feature"])
    elif "axis" in group:
        scope = ("axes",)
    else:
        scope = None
    return m.metric, m.model, scope


def decidable(m: Measurement) -> bool:
    """A measurement with a number and an interval: the only kind a family's adjustment is about."""
    return m.status is Status.MEASURED and m.value is not None and m.ci is not None


def family_sizes(measurements: Iterable[Measurement]) -> Counter:
    return Counter(family_key(m) for m in measurements if decidable(m))


def bonferroni_level(level: float, m: int) -> float:
    return 1.0 - (1.0 - level) / max(int(m), 1)


def with_simultaneous(items: list[tuple[Measurement, Callable | None]], level: float) -> list[Measurement]:
    """Measurements with `details.simultaneous` = {family_size, level, ci} where their family has m > 1.

    items pairs each measurement with interval_at(level) -> (lo, hi) | None, which gives its decision interval
    (the bias-corrected one where the measurement has one) at another level.
    """
    sizes = family_sizes(m for m, _ in items)
    out = []
    for m, interval_at in items:
        size = sizes.get(family_key(m), 0)
        if decidable(m) and size > 1 and interval_at is not None:
            adjusted = bonferroni_level(level, size)
            ci = interval_at(adjusted)
            if ci is not None:
                details = dict(m.details or {})
                details["simultaneous"] = {"family_size": size, "level": adjusted, "ci": [float(ci[0]), float(ci[1])]}
                m = replace(m, details=details)
        out.append(m)
    return out
