"""Which rules changed verdict between two audits (a model lineage: base -> v1 -> v2)."""
from __future__ import annotations

from pathlib import Path

from .presentation import group_label
from .results import read_results


def _key(rule: dict) -> tuple:
    return rule["id"], rule["model"], group_label(rule.get("group"))


def diff_results(old: Path, new: Path) -> list[str]:
    a, b = read_results(old), read_results(new)
    ra = {_key(r): r for r in a["gate"]["rules"]}
    rb = {_key(r): r for r in b["gate"]["rules"]}
    lines = [f"verdict: {a['gate']['verdict']} -> {b['gate']['verdict']}"]
    for key in sorted(set(ra) | set(rb)):
        x, y = ra.get(key), rb.get(key)
        label = f"{key[0]} [{key[1]} {key[2]}]"
        if x is None:
            lines.append(f"  added    {label}: {y['status']}")
        elif y is None:
            lines.append(f"  removed  {label}: was {x['status']}")
        elif x["status"] != y["status"]:
            fmt = lambda v: "n/a" if v is None else f"{v:.4g}"
            lines.append(f"  changed  {label}: {x['status']} -> {y['status']} "
                         f"(value {fmt(x['value'])} -> {fmt(y['value'])})")
    if len(lines) == 1:
        lines.append("  no rule changed verdict")
    return lines
