"""The gate: the only place where measurements become verdicts. Pure: no I/O, no clock (today is passed in).

A PASS is evidence, never absence of evidence: by default a bound is decided three ways on the interval, a
rule with nothing to decide on is INCONCLUSIVE, a family of measurements is decided on simultaneous
intervals, and a point estimate past the bound never passes (policies/README.md).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .errors import ExitCode
from .policy import Condition, DecideOn, Mode, OnInsufficient, Op, Policy, Rule, Severity, WhenMissing
from .results import Measurement, Status, clean
from .simultaneous import bonferroni_level, family_key, family_sizes
from .to_decide import no_estimate, rows_to_decide, rows_to_measure


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    status: Status
    value: float | None               # the estimate decided on (bias-corrected where the check gives one)
    ci: tuple[float, float] | None    # the interval decided on (simultaneous where the rule covers a family)
    bound: float | None
    n: int | None
    group: dict | None
    reason: str
    waived: str | None = None
    family_size: int | None = None    # measurements of this family the rule decides at once
    level: float | None = None        # confidence level of `ci` (Bonferroni-adjusted for a family)
    basis: str | None = None          # "as measured" | "bias-corrected"
    measured: float | None = None     # the plain point estimate, where a corrected one was decided on
    to_decide: dict | None = None     # rows that would decide an INCONCLUSIVE outcome (to_decide.py)

    def to_dict(self) -> dict:
        r = self.rule
        return clean({
            "id": r.id, "metric": r.metric, "model": r.model, "condition": str(r.condition),
            "bound": self.bound, "value": self.value, "ci": list(self.ci) if self.ci else None, "n": self.n,
            "group": self.group, "status": self.status, "severity": r.severity, "decide_on": r.decide_on,
            "mode": r.mode, "when_missing": r.when_missing, "family_size": self.family_size,
            "level": self.level, "basis": self.basis, "measured_value": self.measured,
            "n_to_decide": self.to_decide, "refs": list(r.refs), "description": r.description,
            "reason": self.reason, "waived": self.waived,
        })


@dataclass(frozen=True)
class GateDecision:
    verdict: Status
    outcomes: tuple[RuleOutcome, ...]

    @property
    def exit_code(self) -> ExitCode:
        return {Status.FAIL: ExitCode.POLICY_FAILED,
                Status.INCONCLUSIVE: ExitCode.INCONCLUSIVE}.get(self.verdict, ExitCode.PASS)

    def to_dict(self) -> dict:
        counts = {}
        for o in self.outcomes:
            counts[o.status.value] = counts.get(o.status.value, 0) + 1
        opted_out = sorted({o.rule.id for o in self.outcomes if o.status is Status.SKIPPED
                            and o.rule.when_missing is WhenMissing.SKIP})
        return {"verdict": self.verdict.value, "counts": counts, "opted_out": opted_out,
                "rules": [o.to_dict() for o in self.outcomes]}


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def decide(rule: Rule, value, ci, bound, plain=None) -> tuple[Status, str]:
    """PASS/FAIL/INCONCLUSIVE for one estimate against one bound, before severity is applied.

    plain: the measurement's own point estimate where `value` is a corrected one; neither may be past the
    bound for a PASS.
    """
    if value is None or bound is None:
        return Status.INCONCLUSIVE, "no value to compare"
    op, holds = rule.condition.op, Condition.holds_for
    cond = f"{op.value} {_fmt(bound)}"
    past = [p for p in (value, plain) if p is not None and not holds(op, p, bound)]
    if rule.decide_on is DecideOn.POINT:
        if past:
            return Status.FAIL, f"point estimate {_fmt(past[0])} violates {cond} (decided on the point estimate)"
        return Status.PASS, f"point estimate {_fmt(value)} meets {cond} (decided on the point estimate alone)"
    if ci is None:
        return Status.INCONCLUSIVE, "the rule decides on the interval, and this measurement has none"
    lo, hi = ci
    worst, best = (hi, lo) if op is Op.LE else (lo, hi)
    span = f"[{_fmt(lo)}, {_fmt(hi)}]"
    if not holds(op, best, bound):
        return Status.FAIL, f"the whole interval {span} violates {cond}"
    if holds(op, worst, bound):
        if past:
            return Status.INCONCLUSIVE, (f"the interval {span} meets {cond}, but the point estimate "
                                         f"{_fmt(past[0])} does not: never a pass")
        return Status.PASS, f"the whole interval {span} meets {cond}"
    if rule.mode is Mode.HARM and not past:
        return Status.PASS, f"interval {span} straddles {_fmt(bound)}, estimate inside: no evidence of harm (harm mode)"
    if rule.mode is Mode.HARM:
        return Status.INCONCLUSIVE, (f"interval {span} straddles {_fmt(bound)} and the estimate {_fmt(past[0])} "
                                     "is past it: neither harm nor its absence shown (harm mode)")
    return Status.INCONCLUSIVE, f"interval {span} straddles {_fmt(bound)}: neither side shown"


def _matches(rule: Rule, m: Measurement, model: str) -> bool:
    if m.metric != rule.metric or m.model != model:
        return False
    if rule.group is None:
        return True
    return bool(m.group) and rule.group in (m.group.get("feature"), m.group.get("axis"))


def _why_missing(rule: Rule, ran_checks: set[str], missing: Mapping[str, str]) -> str:
    check = rule.metric.split(".", 1)[0]
    if rule.metric in missing:
        return missing[rule.metric]
    if check in missing:
        return missing[check]
    if check not in ran_checks:
        return f"check {check!r} did not run (it is not in the spec's checks): {rule.metric} cannot be decided"
    scope = f" for group {rule.group!r}" if rule.group else ""
    return f"check {check!r} produced no {rule.metric} for {rule.model}{scope}"


def _missing(rule: Rule, why: str, m: Measurement | None = None) -> RuleOutcome:
    n, group = (m.n, m.group) if m is not None else (None, None)
    if rule.when_missing is WhenMissing.SKIP:
        return RuleOutcome(rule, Status.SKIPPED, None, None, None, n, group, f"opted out (when_missing: skip): {why}")
    return RuleOutcome(rule, Status.INCONCLUSIVE, None, None, None, n, group,
                       f"missing evidence is not a pass: {why}", to_decide=no_estimate(why))


def _basis(m: Measurement, size: int, level: float):
    """(value, ci, level, family size, basis) the rule decides on for one measurement."""
    d = m.details or {}
    corrected = d.get("corrected")
    if corrected:
        value, ci, basis = corrected.get("value"), corrected.get("ci"), "bias-corrected"
    else:
        value, ci, basis = m.value, m.ci, "as measured"
    if size > 1:
        sim = d.get("simultaneous")
        if sim and sim.get("family_size", 0) >= size and sim.get("ci"):
            return value, tuple(sim["ci"]), sim["level"], sim["family_size"], basis
        return value, None, bonferroni_level(level, size), size, basis
    return value, (tuple(ci) if ci is not None else None), level, 1, basis


def _rows_for(m: Measurement, value, bound) -> tuple[dict | None, str]:
    """The rows that drive the side of the interval that must move (checks name them in details.rows)."""
    d = m.details or {}
    rows = d.get("rows")
    if isinstance(rows, dict) and ("lower" in rows or "upper" in rows):
        rows = rows.get("upper" if value < bound else "lower")
    return rows, d.get("rows_unit", "rows")


def _decide_measured(rule: Rule, m: Measurement, bound, size: int, policy: Policy) -> RuleOutcome:
    value, ci, level, fam, basis = _basis(m, size, policy.defaults.ci_level)
    plain = m.value if basis == "bias-corrected" else None
    if rule.decide_on is DecideOn.CI and ci is None and fam > 1:
        status, why = Status.INCONCLUSIVE, f"no simultaneous interval for a family of {fam} measurements"
    else:
        status, why = decide(rule, value, ci, bound, plain)
    d = m.details or {}
    to_decide = None
    if status is Status.INCONCLUSIVE and ci is not None and value is not None and bound is not None:
        rows, unit = _rows_for(m, value, bound)
        to_decide = rows_to_decide(value, ci, bound, m.n, rows, unit)
    small = d.get("insufficient_groups")
    if small and status is not Status.FAIL and policy.defaults.on_insufficient is OnInsufficient.INCONCLUSIVE:
        why += f"; groups too small to judge, never a pass: {', '.join(map(str, small))}"
        status = Status.INCONCLUSIVE
        to_decide = rows_to_measure(d.get("missing_rows") or {}, d.get("rows_unit", "rows"), then=to_decide)
    return RuleOutcome(rule, status, value, ci, bound, m.n, m.group, why, family_size=fam, level=level,
                       basis=basis, measured=plain, to_decide=to_decide)


def evaluate_rule(rule: Rule, measurements, ran_checks: set[str], policy: Policy,
                  missing: Mapping[str, str] | None = None) -> list[RuleOutcome]:
    missing = missing or {}
    mine = [m for m in measurements if _matches(rule, m, rule.model)]
    if not mine:
        return [_missing(rule, _why_missing(rule, ran_checks, missing))]
    sizes = family_sizes(mine)
    out = []
    for m in mine:
        def lookup(model, m=m):
            twins = [x for x in measurements if x.metric == m.metric and x.model == model and x.group == m.group]
            return twins[0].value if twins else None

        bound = rule.condition.resolve(lookup)
        reason = (m.details or {}).get("reason", m.status.value.lower())
        if m.status is Status.SKIPPED:
            o = _missing(rule, reason, m)
        elif m.status is Status.ERROR:
            o = RuleOutcome(rule, Status.ERROR, None, None, bound, m.n, m.group, reason,
                            to_decide=no_estimate(f"the measurement failed: {reason}"))
        elif m.status is Status.INSUFFICIENT_DATA:
            if policy.defaults.on_insufficient is OnInsufficient.IGNORE:
                o = RuleOutcome(rule, Status.SKIPPED, None, None, bound, m.n, m.group,
                                "insufficient data, ignored by the policy (on_insufficient: ignore)")
            else:
                d = m.details or {}
                to = (rows_to_measure(d["missing_rows"], d.get("rows_unit", "rows")) if d.get("missing_rows")
                      else no_estimate(reason))
                o = RuleOutcome(rule, Status.INCONCLUSIVE, None, None, bound, m.n, m.group,
                                f"insufficient data: {reason}", to_decide=to)
        else:
            o = _decide_measured(rule, m, bound, sizes.get(family_key(m), 1), policy)
        if o.status is Status.FAIL and rule.severity is Severity.WARN:
            o = replace(o, status=Status.WARN)
        out.append(o)
    return out


def gate(measurements, ran_checks, policy: Policy, today: dt.date | None = None,
         missing: Mapping[str, str] | None = None) -> GateDecision:
    """missing: why a check (by name) or a metric (by full name) has no measurements, for the reasons."""
    today = today or dt.date.today()
    waivers = {w.rule: w for w in policy.waivers if w.active(today)}
    outcomes = []
    for rule in policy.rules:
        for o in evaluate_rule(rule, measurements, set(ran_checks), policy, missing):
            w = waivers.get(rule.id)
            if w and o.status in (Status.FAIL, Status.INCONCLUSIVE, Status.WARN, Status.ERROR):
                o = replace(o, waived=f"{w.reason} (until {w.expires.isoformat()})")
            outcomes.append(o)
    blocking = [o for o in outcomes if o.rule.severity is Severity.BLOCK and not o.waived]
    if any(o.status is Status.FAIL for o in blocking):
        verdict = Status.FAIL
    elif any(o.status in (Status.INCONCLUSIVE, Status.ERROR) for o in blocking) \
            and not policy.defaults.allow_inconclusive:
        verdict = Status.INCONCLUSIVE
    elif any(o.status in (Status.WARN, Status.INCONCLUSIVE, Status.ERROR) for o in outcomes):
        verdict = Status.WARN
    else:
        verdict = Status.PASS
    return GateDecision(verdict, tuple(outcomes))
