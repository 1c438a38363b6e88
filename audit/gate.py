"""The gate: the only place where measurements become verdicts. Pure: no I/O, no clock (today is passed in)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .errors import ExitCode
from .policy import DecideOn, Mode, OnInsufficient, Op, Policy, Rule, Severity
from .results import Measurement, Status, clean


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    status: Status
    value: float | None
    ci: tuple[float, float] | None
    bound: float | None
    n: int | None
    group: dict | None
    reason: str
    waived: str | None = None

    def to_dict(self) -> dict:
        r = self.rule
        return clean({
            "id": r.id, "metric": r.metric, "model": r.model, "condition": str(r.condition),
            "bound": self.bound, "value": self.value, "ci": list(self.ci) if self.ci else None, "n": self.n,
            "group": self.group, "status": self.status, "severity": r.severity, "decide_on": r.decide_on,
            "mode": r.mode, "refs": list(r.refs), "description": r.description, "reason": self.reason,
            "waived": self.waived,
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
        return {"verdict": self.verdict.value, "counts": counts, "rules": [o.to_dict() for o in self.outcomes]}


def decide(rule: Rule, value, ci, bound) -> tuple[Status, str]:
    """PASS/FAIL/INCONCLUSIVE for one value against one bound, before severity is applied."""
    if value is None or bound is None:
        return Status.INCONCLUSIVE, "no value to compare"
    holds = rule.condition.holds_for
    if rule.decide_on is DecideOn.POINT:
        ok = holds(rule.condition.op, value, bound)
        return (Status.PASS if ok else Status.FAIL), f"point estimate {value:.4g} {'meets' if ok else 'violates'} {rule.condition.op.value} {bound:.4g}"
    if ci is None:
        return Status.INCONCLUSIVE, "the rule decides on the CI, and this measurement has none"
    lo, hi = ci
    # The CI end that is most favourable / least favourable for the condition.
    worst, best = (hi, lo) if rule.condition.op is Op.LE else (lo, hi)
    if not holds(rule.condition.op, best, bound):
        return Status.FAIL, f"the whole CI [{lo:.4g}, {hi:.4g}] violates {rule.condition.op.value} {bound:.4g}"
    if holds(rule.condition.op, worst, bound):
        return Status.PASS, f"the whole CI [{lo:.4g}, {hi:.4g}] meets {rule.condition.op.value} {bound:.4g}"
    if rule.mode is Mode.HARM:
        return Status.PASS, f"CI [{lo:.4g}, {hi:.4g}] straddles {bound:.4g}: no evidence of harm (harm mode)"
    return Status.INCONCLUSIVE, f"CI [{lo:.4g}, {hi:.4g}] straddles {bound:.4g}: safety not shown (safety mode)"


def _matches(rule: Rule, m: Measurement, model: str) -> bool:
    if m.metric != rule.metric or m.model != model:
        return False
    if rule.group is None:
        return True
    return bool(m.group) and rule.group in (m.group.get("feature"), m.group.get("axis"))


def evaluate_rule(rule: Rule, measurements, ran_checks: set[str], policy: Policy) -> list[RuleOutcome]:
    check = rule.metric.split(".", 1)[0]
    mine = [m for m in measurements if _matches(rule, m, rule.model)]
    if not mine:
        status = Status.SKIPPED if check not in ran_checks else Status.INCONCLUSIVE
        why = (f"check {check!r} was not run" if status is Status.SKIPPED
               else f"check {check!r} produced no {rule.metric} for {rule.model}")
        return [RuleOutcome(rule, status, None, None, None, None, None, why)]
    out = []
    for m in mine:
        def lookup(model, m=m):
            twins = [x for x in measurements if x.metric == m.metric and x.model == model and x.group == m.group]
            return twins[0].value if twins else None

        bound = rule.condition.resolve(lookup)
        if m.status in (Status.SKIPPED, Status.ERROR):
            status, why = m.status, (m.details or {}).get("reason", m.status.value.lower())
        elif m.status is Status.INSUFFICIENT_DATA:
            if policy.defaults.on_insufficient is OnInsufficient.IGNORE:
                status, why = Status.SKIPPED, "insufficient data, ignored by the policy"
            else:
                status, why = Status.INCONCLUSIVE, (m.details or {}).get("reason", "insufficient data")
        else:
            status, why = decide(rule, m.value, m.ci, bound)
            small = (m.details or {}).get("insufficient_groups")
            if status is Status.PASS and small and policy.defaults.on_insufficient is OnInsufficient.INCONCLUSIVE:
                status = Status.INCONCLUSIVE
                why += f"; groups too small to judge: {', '.join(map(str, small))}"
        if status is Status.FAIL and rule.severity is Severity.WARN:
            status = Status.WARN
        out.append(RuleOutcome(rule, status, m.value, m.ci, bound, m.n, m.group, why))
    return out


def gate(measurements, ran_checks, policy: Policy, today: dt.date | None = None) -> GateDecision:
    today = today or dt.date.today()
    waivers = {w.rule: w for w in policy.waivers if w.active(today)}
    outcomes = []
    for rule in policy.rules:
        for o in evaluate_rule(rule, measurements, set(ran_checks), policy):
            w = waivers.get(rule.id)
            if w and o.status in (Status.FAIL, Status.INCONCLUSIVE, Status.WARN):
                o = RuleOutcome(o.rule, o.status, o.value, o.ci, o.bound, o.n, o.group, o.reason,
                                waived=f"{w.reason} (until {w.expires.isoformat()})")
            outcomes.append(o)
    blocking = [o for o in outcomes if o.rule.severity is Severity.BLOCK and not o.waived]
    if any(o.status is Status.FAIL for o in blocking):
        verdict = Status.FAIL
    elif any(o.status is Status.INCONCLUSIVE for o in blocking) and not policy.defaults.allow_inconclusive:
        verdict = Status.INCONCLUSIVE
    elif any(o.status in (Status.WARN, Status.INCONCLUSIVE) for o in outcomes):
        verdict = Status.WARN
    else:
        verdict = Status.PASS
    return GateDecision(verdict, tuple(outcomes))
