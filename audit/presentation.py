"""How results are presented, decided once for every output (CLI, report, CI files, diff): which rule outcomes
need attention and in what order, which block the release, and how a group is named. Reads results.json
dicts only."""
from __future__ import annotations

# Statuses that need a person's attention, worst first.
ATTENTION_ORDER = {"FAIL": 0, "ERROR": 1, "INCONCLUSIVE": 2, "WARN": 3}
BLOCKING_STATUSES = ("FAIL", "INCONCLUSIVE", "ERROR")


def needs_attention(rule: dict) -> bool:
    return rule["status"] in ATTENTION_ORDER and not rule.get("waived")


def is_blocking(rule: dict) -> bool:
    """A rule outcome that holds the release back (before `allow_inconclusive` is applied)."""
    return rule["severity"] == "block" and rule["status"] in BLOCKING_STATUSES and not rule.get("waived")


def attention_key(rule: dict) -> tuple:
    return ATTENTION_ORDER[rule["status"]], rule["severity"] != "block", rule["id"]


def attention(rules) -> list[dict]:
    """The rule outcomes that need attention, worst first, blocking before warning."""
    return sorted((r for r in rules if needs_attention(r)), key=attention_key)


def group_label(group) -> str:
    """'sex=Female' for one group, 'feature=sex' or 'axis=names by gender' for a family, 'all' for none."""
    if not group:
        return "all"
    if "value" in group:
        return f"{group.get('feature', '')}={group['value']}"
    return ", ".join(f"{k}={v}" for k, v in sorted(group.items()))
