"""Policy: rules made of small Condition objects. Building one is cheap and needs no models or data."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import MSG_BAD_VALUE, MSG_UNKNOWN_METRIC, InputError, did_you_mean
from .options import option, option_names, parse_into
from .results import ModelRole
from .stats import StatsConfig
from .validate import Section
from .yamlio import load_yaml_file


class Op(str, Enum):
    LE = "<="
    GE = ">="


class Severity(str, Enum):
    BLOCK = "block"
    WARN = "warn"


class DecideOn(str, Enum):
    CI = "ci"           # the interval decides (the default)
    POINT = "point"     # the point estimate alone decides: only for measurements that are themselves tests


class Mode(str, Enum):
    """How an interval is read against a bound (policies/README.md, "Decision modes")."""

    THREE_WAY = "three_way"   # PASS: whole CI inside; FAIL: whole CI outside; otherwise INCONCLUSIVE (default)
    HARM = "harm"             # FAIL on evidence of harm; a straddling CI passes only if the estimate is inside


# The earlier name of the three-way reading, still read so existing policies keep their meaning.
MODE_ALIASES = {"safety": Mode.THREE_WAY}


class WhenMissing(str, Enum):
    INCONCLUSIVE = "inconclusive"   # no evidence is not a pass (the default)
    SKIP = "skip"                   # an explicit opt-out: listed in the report, left out of the verdict


class OnInsufficient(str, Enum):
    INCONCLUSIVE = "inconclusive"
    IGNORE = "ignore"


@dataclass(frozen=True)
class Relative:
    """A bound taken from another model's value of the same metric: 'at least no_transfer - 0.01'."""

    model: str
    offset: float = 0.0

    def __str__(self) -> str:
        sign = "+" if self.offset >= 0 else "-"
        return f"{self.model}{f' {sign} {abs(self.offset):g}' if self.offset else ''}"


@dataclass(frozen=True)
class Condition:
    op: Op
    bound: float | Relative

    def resolve(self, lookup) -> float | None:
        """The numeric bound; lookup(model) gives the other model's value for a Relative bound."""
        if isinstance(self.bound, Relative):
            other = lookup(self.bound.model)
            return None if other is None else other + self.bound.offset
        return self.bound

    @staticmethod
    def holds_for(op: Op, value: float, bound: float) -> bool:
        return value <= bound if op is Op.LE else value >= bound

    def __str__(self) -> str:
        bound = f"{self.bound:g}" if isinstance(self.bound, float) else str(self.bound)
        return f"{self.op.value} {bound}"

    def __repr__(self) -> str:
        return f"Condition({self})"


@dataclass(frozen=True)
class Rule:
    id: str
    metric: str
    model: str
    condition: Condition
    severity: Severity = Severity.BLOCK
    decide_on: DecideOn = DecideOn.CI
    mode: Mode = Mode.THREE_WAY
    when_missing: WhenMissing = WhenMissing.INCONCLUSIVE
    group: str | None = None           # restrict to records of one sensitive feature (e.g. "sex")
    refs: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Waiver:
    rule: str
    reason: str
    expires: dt.date
    owner: str | None = None           # who accepted the risk (recorded in results.json and the attestation)

    def active(self, today: dt.date) -> bool:
        return today <= self.expires


@dataclass(frozen=True)
class Defaults(StatsConfig):
    """The policy's `defaults` block: the statistics settings (StatsConfig) plus how the gate treats gaps."""

    on_insufficient: OnInsufficient = option(
        OnInsufficient.INCONCLUSIVE, "`inconclusive`: a rule touching a too-small group is INCONCLUSIVE; "
        "`ignore`: skip it")
    allow_inconclusive: bool = option(False, "when false, an INCONCLUSIVE blocking rule makes the run INCONCLUSIVE "
                                             "(exit 4)")
    inconclusive_in_junit: str = option("error", "how INCONCLUSIVE block rules appear in junit.xml (an INCONCLUSIVE "
                                        "warn rule is reported like a WARN)", choices=("error", "skipped"))

    @property
    def stats(self) -> StatsConfig:
        return StatsConfig(**{name: getattr(self, name) for name in option_names(StatsConfig)})


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...]
    defaults: Defaults = field(default_factory=Defaults)
    waivers: tuple[Waiver, ...] = ()
    source: str | None = None
    sha256: str | None = None


RULE_KEYS = {"id", "metric", "model", "min", "max", "severity", "decide_on", "mode", "when_missing", "group", "refs",
             "description"}
ROLES = {r.value for r in ModelRole}


def known_metrics() -> set[str]:
    from .checks import available_metrics

    return set(available_metrics())


def _bound(s: Section, key: str):
    value = s.data[key]
    if isinstance(value, dict):
        b = Section(value, s.file, s.field(key), {"model", "offset"}, {"model"})
        return Relative(b.str("model", choices=ROLES), b.float("offset", 0.0))
    return s.float(key)


def _mode(s: Section) -> Mode:
    name = s.str("mode", Mode.THREE_WAY.value, choices={x.value for x in Mode} | set(MODE_ALIASES))
    return MODE_ALIASES.get(name) or Mode(name)


def parse_policy_data(raw: dict, file: str, metrics: set[str] | None = None) -> Policy:
    metrics = known_metrics() if metrics is None else metrics
    top = Section(raw, file, "", {"name", "version", "description", "defaults", "rules", "waivers"}, {"rules"})
    if top.data.get("version", 1) != 1:
        raise top.fail("version", "1 (the only policy format version)")
    defaults = parse_into(top.child("defaults", option_names(Defaults)), Defaults)
    raw_rules = top.data["rules"]
    if not isinstance(raw_rules, list):
        raise top.fail("rules", "a list of rules")
    rules, seen = [], set()
    for i, item in enumerate(raw_rules):
        s = Section(item, file, f"rules[{i}]", RULE_KEYS, {"id", "metric"})
        rid = s.str("id")
        if rid in seen:
            raise s.fail("id", "unique across rules", rid)
        seen.add(rid)
        metric = s.str("metric")
        if metric not in metrics:
            raise InputError.make(MSG_UNKNOWN_METRIC, where=file, field=f"rules[{i}].metric", value=metric,
                                  hint=did_you_mean(metric, metrics))
        if ("min" in s.data) == ("max" in s.data):
            raise s.fail("max", "exactly one of 'min' or 'max'", {k: s.data.get(k) for k in ("min", "max")})
        key = "min" if "min" in s.data else "max"
        cond = Condition(Op.GE if key == "min" else Op.LE, _bound(s, key))
        rules.append(Rule(
            id=rid, metric=metric, model=s.str("model", "adapted", choices=ROLES), condition=cond,
            severity=Severity(s.str("severity", "block", choices={x.value for x in Severity})),
            decide_on=DecideOn(s.str("decide_on", DecideOn.CI.value, choices={x.value for x in DecideOn})),
            mode=_mode(s), when_missing=WhenMissing(s.str("when_missing", WhenMissing.INCONCLUSIVE.value,
                                                         choices={x.value for x in WhenMissing})),
            group=s.str("group"),
            refs=tuple(s.str_list("refs", []) or []), description=s.str("description") or "",
        ))
    waivers = []
    raw_waivers = top.data.get("waivers") or []
    if not isinstance(raw_waivers, list):
        raise top.fail("waivers", "a list of {rule, reason, expires, owner}")
    for i, item in enumerate(raw_waivers):
        w = Section(item, file, f"waivers[{i}]", {"rule", "reason", "expires", "owner"}, {"rule", "reason", "expires"})
        rule = w.str("rule")
        if rule not in seen:
            raise InputError(f"{file}: waivers[{i}].rule is {rule!r}, which is not a rule id"
                             f"{did_you_mean(rule, seen)}.")
        expires = w.data["expires"]
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                expires = None
        if not isinstance(expires, dt.date):
            raise InputError.make(MSG_BAD_VALUE, where=file, field=f"waivers[{i}].expires",
                                  expected="a date (YYYY-MM-DD)", value=w.data["expires"])
        waivers.append(Waiver(rule, w.str("reason"), expires, w.str("owner")))
    return Policy(name=top.str("name", Path(file).stem), rules=tuple(rules), defaults=defaults,
                  waivers=tuple(waivers), source=file)


def load_policy(path: str | Path) -> Policy:
    from .fileio import sha256_file

    path = Path(path)
    raw = load_yaml_file(path, "policy")
    policy = parse_policy_data(raw, str(path))
    return Policy(policy.name, policy.rules, policy.defaults, policy.waivers, str(path), sha256_file(path))
