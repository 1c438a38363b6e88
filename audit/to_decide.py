"""Rows needed to decide an INCONCLUSIVE rule, estimated from the interval the gate decided on.

An interval's half-width shrinks as 1/sqrt(n). If the estimate stayed where it is, the interval would clear
the bound once the half-width on the bound's side fell below the distance from the estimate to the bound:
n' = n * (half-width / distance)^2. Where groups drive the interval, each of them would need that factor more
rows (the estimate assumes they grow in proportion). It is an estimate at the observed effect, not a promise:
a new sample moves the estimate too. Pure functions; the gate calls them.
"""
from __future__ import annotations

import math

MAX_FACTOR = 100.0      # beyond this the estimate sits on the bound: no practical sample decides it


def _round_up(x: float) -> int:
    """Two significant figures, rounded up, so the figure never claims more precision than it has."""
    if x <= 0:
        return 0
    digits = max(int(math.floor(math.log10(x))) - 1, 0)
    step = 10 ** digits
    return int(math.ceil(x / step) * step)


def _rows_text(rows: dict, unit: str) -> str:
    parts = [f"{more:,} more {unit} of {label}" for label, more in rows.items()]
    return " and ".join(parts) if parts else f"more {unit}"


def rows_to_decide(value: float, ci, bound: float, n: int | None, rows: dict | None = None,
                   unit: str = "rows") -> dict:
    """{'factor', 'rows', 'text'} for a straddling interval [lo, hi] around value against bound."""
    lo, hi = ci
    if value < bound:
        half, gap = hi - value, bound - value
    elif value > bound:
        half, gap = value - lo, value - bound
    else:
        half, gap = 1.0, 0.0
    if gap <= 0 or gap < 1e-12 * max(abs(half), 1.0):
        return {"factor": None, "rows": None,
                "text": "the estimate sits on the bound: no sample size decides it at the observed effect"}
    if half <= gap:         # the interval ends exactly on the bound
        return {"factor": 1.0, "rows": None,
                "text": f"the interval ends on the bound: a few more {unit} would decide it"}
    factor = (half / gap) ** 2
    if factor > MAX_FACTOR:
        return {"factor": round(factor, 1), "rows": None,
                "text": f"more than {MAX_FACTOR:.0f}x the current {unit} would be needed at the observed effect "
                        "(the estimate is close to the bound)"}
    base = rows or ({"all": n} if n else {})
    more = {label: max(_round_up(count * (factor - 1.0)), 1) for label, count in base.items() if count}
    if list(more) == ["all"]:
        text = f"≈ {more['all']:,} more {unit} would decide this"
    else:
        text = "≈ " + _rows_text(more, unit) + " would decide this"
    text += f" (x{factor:.2g} the current {unit}, at the observed effect)"
    return {"factor": round(factor, 3), "rows": more or None, "text": text}


def rows_to_measure(missing: dict, unit: str = "rows", then: dict | None = None) -> dict:
    """Groups too small to be measured at all: the rows each needs to reach the policy's minimum."""
    more = {label: int(k) for label, k in missing.items() if k and k > 0}
    text = "at least " + _rows_text(more, unit) + " before every group can be measured"
    if then and then.get("rows"):
        text += f"; then {then['text']}"
    return {"factor": None, "rows": more or None, "text": text}


def no_estimate(why: str) -> dict:
    return {"factor": None, "rows": None, "text": f"provide the missing evidence first: {why}"}
