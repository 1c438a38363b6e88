"""How rule outcomes changed across audits of a model lineage (base -> v1 -> v2), and whether any regressed.

A rule regresses from one run to the next when its status gets worse (PASS -> WARN -> INCONCLUSIVE/SKIPPED ->
FAIL/ERROR), or, where a tolerance is declared for its metric, when the new run's whole interval lies beyond the
old value by more than the tolerance in the rule's bad direction (below for `min` rules, above for `max` rules).
Rules added or removed between runs are listed but are not regressions. Verdicts compare the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from itertools import pairwise
from pathlib import Path

from .presentation import group_label
from .results import read_results

STATUS_RANK = {"PASS": 0, "WARN": 1, "INCONCLUSIVE": 2, "SKIPPED": 2, "FAIL": 3, "ERROR": 3}


class Change(str, Enum):
    """Listed worst first: the order rows appear in, and which step names a row across a lineage."""
    REGRESSED = "regressed"
    CHANGED = "changed"        # same rank, other status (FAIL <-> ERROR, INCONCLUSIVE <-> SKIPPED)
    IMPROVED = "improved"
    ADDED = "added"
    REMOVED = "removed"
    UNCHANGED = "unchanged"


ORDER = list(Change)


@dataclass(frozen=True)
class Tolerance:
    """Metric tolerances for regressions: `default` for every metric, `per_metric` overriding it. No tolerance
    declared means only status changes count."""
    default: float | None = None
    per_metric: dict = field(default_factory=dict)

    def of(self, metric: str) -> float | None:
        return self.per_metric.get(metric, self.default)


@dataclass(frozen=True)
class Row:
    rule: str
    model: str
    group: str
    cells: tuple            # the rule's outcome dict per run, None where the run lacks the rule
    steps: tuple            # Change from each run to the next
    why: str = ""           # what made the worst step (status change or metric move)

    @property
    def change(self) -> Change:
        return min(self.steps, key=ORDER.index) if self.steps else Change.UNCHANGED


@dataclass(frozen=True)
class Lineage:
    labels: tuple
    results: tuple
    rows: tuple

    @property
    def verdicts(self) -> tuple:
        return tuple(r["gate"]["verdict"] for r in self.results)

    @property
    def verdict_regressed(self) -> bool:
        v = self.verdicts
        return any(STATUS_RANK.get(b, 3) > STATUS_RANK.get(a, 3) for a, b in pairwise(v))

    @property
    def regressed(self) -> bool:
        return self.verdict_regressed or any(r.change is Change.REGRESSED for r in self.rows)


def _key(rule: dict) -> tuple:
    return rule["id"], rule["model"], group_label(rule["group"]) if rule.get("group") else ""


def _label(path: Path) -> str:
    path = Path(path)
    return path.name if path.is_dir() else path.parent.name if path.name == "results.json" else path.stem


def _metric_moved(old: dict, new: dict, tol: float | None) -> Change | None:
    """REGRESSED/IMPROVED when the new interval (or value, without one) lies wholly beyond old value -/+ tol."""
    if tol is None or old.get("value") is None or new.get("value") is None:
        return None
    higher_is_better = old["condition"].startswith(">=")
    lo, hi = new["ci"] if new.get("ci") else (new["value"], new["value"])
    worse = hi < old["value"] - tol if higher_is_better else lo > old["value"] + tol
    better = lo > old["value"] + tol if higher_is_better else hi < old["value"] - tol
    return Change.REGRESSED if worse else Change.IMPROVED if better else None


def step(old: dict | None, new: dict | None, tolerance: Tolerance) -> tuple[Change, str]:
    if old is None or new is None:
        return (Change.UNCHANGED, "") if old is new else (Change.ADDED, "") if old is None else (Change.REMOVED, "")
    a, b = STATUS_RANK.get(old["status"], 3), STATUS_RANK.get(new["status"], 3)
    if a != b or old["status"] != new["status"]:
        change = Change.REGRESSED if b > a else Change.IMPROVED if b < a else Change.CHANGED
        return change, f"{old['status']} -> {new['status']}"
    tol = tolerance.of(old["metric"])
    moved = _metric_moved(old, new, tol)
    if moved is not None:
        return moved, f"{old['value']:.4g} -> {new['value']:.4g} beyond tolerance {tol:g}"
    return Change.UNCHANGED, ""


def compare(paths, tolerance: Tolerance = Tolerance()) -> Lineage:
    results = tuple(read_results(p) for p in paths)
    keys: dict = {}
    for res in results:                      # policy order, first appearance
        for r in res["gate"]["rules"]:
            keys.setdefault(_key(r), None)
    rows = []
    for key in keys:
        cells = tuple(next((r for r in res["gate"]["rules"] if _key(r) == key), None) for res in results)
        steps = [step(a, b, tolerance) for a, b in pairwise(cells)]
        worst = min(steps, key=lambda s: ORDER.index(s[0])) if steps else (Change.UNCHANGED, "")
        rows.append(Row(key[0], key[1], key[2], cells, tuple(s[0] for s in steps), worst[1]))
    rows.sort(key=lambda r: ORDER.index(r.change))   # stable: policy order within each kind of change
    return Lineage(tuple(_label(p) for p in paths), results, tuple(rows))


def _cell_text(cell: dict | None) -> str:
    if cell is None:
        return "-"
    value = "n/a" if cell["value"] is None else f"{cell['value']:.4g}"
    return f"{cell['status']}{' (waived)' if cell.get('waived') else ''} {value}"


def text_lines(lineage: Lineage) -> list[str]:
    lines = [f"verdict: {' -> '.join(lineage.verdicts)}"]
    for row in lineage.rows:
        if row.change is Change.UNCHANGED:
            continue
        label = f"{row.rule} [{row.model}{' ' + row.group if row.group else ''}]"
        lines.append(f"  {row.change.value:<9} {label}: {' -> '.join(_cell_text(c) for c in row.cells)}"
                     + (f" ({row.why})" if row.why else ""))
    if len(lines) == 1:
        lines.append("  no rule changed")
    return lines


def markdown(lineage: Lineage) -> str:
    """A pull-request comment: one table, runs as columns, changed rules first."""
    from .render.environment import fmt, fmt_ci, md_env

    def cell(c):
        if c is None:
            return {"status": "-", "value": "", "ci": "", "waived": False}
        return {"status": c["status"], "value": fmt(c["value"]), "ci": fmt_ci(c.get("ci")),
                "waived": bool(c.get("waived"))}

    rows = [{"rule": r.rule, "model": r.model, "group": r.group or "all", "cells": [cell(c) for c in r.cells],
             "change": r.change.value, "why": r.why.replace(" -> ", " → ")} for r in lineage.rows]
    runs = [{"label": label, "verdict": res["gate"]["verdict"], "model": res["models"].get("adapted", {}).get("sha256"),
             "policy": res["policy"].get("sha256")} for label, res in zip(lineage.labels, lineage.results)]
    changed = sum(r.change is not Change.UNCHANGED for r in lineage.rows)
    return md_env().get_template("diff.md.j2").render(runs=runs, rows=rows, changed=changed,
                                                      regressed=lineage.regressed)


def diff_results(old: Path, new: Path) -> list[str]:
    return text_lines(compare([old, new]))
