"""View data for the report's first screen and its pictures, from results.json alone: the verdict in one sentence,
the three-role matrix (M0 / M1 / M2 side by side, each cell coloured by the rule that judges it), the top things
to do, the inherited-vs-introduced slope charts and the top slices. Plain dicts with pixel coordinates; the
template draws them as inline SVG (no JavaScript)."""
from __future__ import annotations

from ..presentation import attention, group_label, is_blocking

ROLES = (("no_transfer", "M0", "no transfer"), ("base_probe", "M1", "base + probe"), ("adapted", "M2", "adapted"))
GAP_METRICS = ("bias.demographic_parity_difference", "bias.equalized_odds_difference", "bias.accuracy_difference")
GAP_NAMES = {"bias.demographic_parity_difference": "selection-rate gap", "bias.equalized_odds_difference":
             "equalized-odds gap", "bias.accuracy_difference": "accuracy gap"}
STATUS_RANK = {"FAIL": 0, "ERROR": 0, "INCONCLUSIVE": 1, "WARN": 2, "PASS": 3}
BAR_W = 110          # px of a matrix cell's interval bar
TOP_ACTIONS = 3
TOP_SLICES = 5


def _same_group(a, b) -> bool:
    return (a or None) == (b or None)


def _worst(statuses):
    ranked = [s for s in statuses if s in STATUS_RANK]
    return min(ranked, key=STATUS_RANK.__getitem__) if ranked else None


def _scale(points, width: float, left: float = 0.0):
    """x(v) mapping the span of points (padded 5%) onto [left, left + width]."""
    lo, hi = min(points), max(points)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    return lambda v: round(left + (v - lo) / (hi - lo) * width, 1)


def gap_metric(measurements) -> str | None:
    """The disparity the matrix and slope charts show: the first of GAP_METRICS measured per feature."""
    present = {m["metric"] for m in measurements if (m.get("group") or {}).get("feature") is not None}
    return next((g for g in GAP_METRICS if g in present), None)


def _find(measurements, metric, role, group=None):
    return next((m for m in measurements if m["metric"] == metric and m["model"] == role
                 and _same_group(m.get("group"), group)), None)


def _rule_status(rules, metric, role, group=None):
    return _worst(r["status"] for r in rules if r["metric"] == metric and r["model"] == role
                  and _same_group(r.get("group"), group) and not r.get("waived"))


def _matrix_row(label, metric, group, measurements, rules):
    found = {role: _find(measurements, metric, role, group) for role, _, _ in ROLES}
    if not any(m and m["value"] is not None for m in found.values()):
        return None
    bounds = [r["bound"] for r in rules if r["metric"] == metric and r.get("bound") is not None
              and _same_group(r.get("group"), group)]
    points = [v for m in found.values() if m and m["value"] is not None for v in (m["ci"] or [m["value"]])]
    x = _scale(points + bounds[:1], BAR_W)
    cells = []
    for role, _, _ in ROLES:
        m = found[role]
        if m is None or m["value"] is None:
            reason = (m or {}).get("details", {}) or {}
            cells.append({"role": role, "value": None, "status": None,
                          "note": "too few rows" if m else "not measured", "title": reason.get("reason", "")})
            continue
        ci = m["ci"] or [m["value"], m["value"]]
        cells.append({"role": role, "value": m["value"], "ci": m["ci"], "n": m["n"],
                      "status": _rule_status(rules, metric, role, group),
                      "x1": x(ci[0]), "x2": x(ci[1]), "xv": x(m["value"])})
    return {"label": label, "metric": metric, "group": group_label(group), "cells": cells,
            "bound_x": x(bounds[0]) if bounds else None, "bound": bounds[0] if bounds else None}


def _flip_axis(measurements, rules):
    """The counterfactual axis to show: the worst-judged one, then the largest adapted flip rate."""
    axes = [m for m in measurements if m["metric"] == "bias.counterfactual_flip_rate" and m["model"] == "adapted"]
    if not axes:
        return None, 0
    key = [(STATUS_RANK.get(_rule_status(rules, m["metric"], "adapted", m.get("group")), 9),
            -(m["value"] if m["value"] is not None else -1)) for m in axes]
    return axes[min(range(len(axes)), key=key.__getitem__)].get("group"), len(axes)


def _drift_row(measurements, rules):
    m = next((m for m in measurements if m["metric"] == "drift.detected"), None)
    if m is None:
        return None
    where = (m.get("details") or {}).get("detected_in") or []
    text = ("yes, in " + ", ".join(map(str, where))) if m["value"] else "no"
    if m["value"] is None:
        text = "not measured"
    status = _worst(r["status"] for r in rules if r["metric"].startswith("drift.") and not r.get("waived"))
    return {"label": "drift detected", "metric": "drift.detected", "group": "data", "span": text,
            "status": status}


def matrix(results: dict) -> list[dict]:
    ms, rules = results["measurements"], results["gate"]["rules"]
    rows = [_matrix_row("accuracy", "performance.accuracy", None, ms, rules),
            _matrix_row("macro F1", "performance.macro_f1", None, ms, rules)]
    gap = gap_metric(ms)
    features = list(dict.fromkeys(m["group"]["feature"] for m in ms
                                  if m["metric"] == gap and (m.get("group") or {}).get("feature") is not None))
    for f in features:
        rows.append(_matrix_row(f"worst-group {GAP_NAMES[gap]} · {f}", gap, {"feature": f}, ms, rules))
    axis, n_axes = _flip_axis(ms, rules)
    if n_axes:
        extra = f" (worst of {n_axes} axes)" if n_axes > 1 else ""
        rows.append(_matrix_row(f"counterfactual flip rate · {group_label(axis).split('=', 1)[-1]}{extra}",
                                "bias.counterfactual_flip_rate", axis, ms, rules))
    rows.append(_drift_row(ms, rules))
    rows.append(_matrix_row("attribution sensitive share", "attribution.sensitive_share", None, ms, rules))
    return [r for r in rows if r is not None]


def verdict_sentence(results: dict) -> str:
    """The verdict and why, in one sentence."""
    gate = results["gate"]
    rules = [r for r in gate["rules"] if not r.get("waived")]
    verdict = gate["verdict"]

    def names(status, blocking=True):
        ids = list(dict.fromkeys(r["id"] for r in rules if r["status"] == status
                                 and (is_blocking(r) if blocking else r["severity"] == "warn")))
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        return ids, shown

    fail, fail_s = names("FAIL")
    inc, inc_s = names("INCONCLUSIVE")
    warn, warn_s = names("WARN", blocking=False)
    # Only the worst kind is named, so the sentence stays one line or two; the others are counted.
    kinds = [(fail, fail_s, "blocking rule{s} failed"), (inc, inc_s, "blocking rule{s} could not be decided"),
             (warn, warn_s, "warning rule{s} tripped")]
    parts = []
    for ids, shown, what in kinds:
        if ids:
            text = f"{len(ids)} {what.format(s='s' if len(ids) > 1 else '')}"
            parts.append(f"{text} ({shown})" if not parts else text)
    if not parts:
        return f"{verdict}: every rule of policy {results['policy']['name']} passed."
    return f"{verdict} because " + "; ".join(parts) + "."


def actions(results: dict, advice_for, to_decide_text) -> list[dict]:
    """The first things to do: one per rule that needs attention, worst first, with where and what decides it."""
    out = {}
    for r in attention(results["gate"]["rules"]):
        a = out.get(r["id"])
        if a is None:
            if len(out) == TOP_ACTIONS:
                continue
            a = out[r["id"]] = {"id": r["id"], "status": r["status"], "metric": r["metric"], "where": [],
                                "advice": advice_for(r), "to_decide": []}
        if r["status"] != a["status"]:
            continue
        a["where"].append(group_label(r.get("group")))
        if r["status"] == "INCONCLUSIVE" and r.get("n_to_decide"):
            a["to_decide"].append((group_label(r.get("group")), to_decide_text(r)))
    for a in out.values():
        a["where"] = ", ".join(w for w in a["where"] if w != "all")
        decide = a["to_decide"]
        if len(decide) > 1:       # one figure per group: the first here, the others in the attention table
            a["to_decide"] = f"({decide[0][0]}) {decide[0][1]}; {len(decide) - 1} more in the table below"
        else:
            a["to_decide"] = decide[0][1] if decide else ""
    return list(out.values())


def slopes(results: dict) -> list[dict]:
    """Inherited vs introduced: per sensitive feature, the gap of M0 -> M1 -> M2 with intervals."""
    ms, rules = results["measurements"], results["gate"]["rules"]
    gap = gap_metric(ms)
    if gap is None:
        return []
    disparity = gap.split(".", 1)[1]
    out = []
    features = list(dict.fromkeys(m["group"]["feature"] for m in ms
                                  if m["metric"] == gap and (m.get("group") or {}).get("feature") is not None))
    width, height, top, bottom, left = 350, 170, 18, 30, 40
    for f in features:
        pts = []
        for i, (role, short, name) in enumerate(ROLES):
            m = _find(ms, gap, role, {"feature": f})
            if m and m["value"] is not None:
                pts.append({"role": role, "short": short, "name": name, "value": m["value"], "ci": m["ci"],
                            "xi": i})
        if len(pts) < 2:
            continue
        values = [v for p in pts for v in (p["ci"] or [p["value"]])] + [0.0]
        inner = height - top - bottom
        y = _scale(values, inner)

        def yy(v, y=y, inner=inner):
            return round(top + inner - y(v), 1)

        for p in pts:
            ci = p["ci"] or [p["value"], p["value"]]
            p.update(x=left + 30 + p["xi"] * 110, y=yy(p["value"]), y1=yy(ci[0]), y2=yy(ci[1]))
        steps = []
        for metric, label in (("bias.inherited", "inherited (M1 − M0)"), ("bias.introduced", "introduced (M2 − M1)")):
            role = "base_probe" if metric == "bias.inherited" else "adapted"
            group = {"feature": f, "disparity": disparity}
            m = _find(ms, metric, role, group)
            if m is not None:
                steps.append({"label": label, "value": m["value"], "ci": m["ci"],
                              "status": _rule_status(rules, metric, role, group)})
        out.append({"feature": f, "metric": gap, "name": GAP_NAMES[gap], "points": pts, "steps": steps,
                    "width": width, "height": height, "zero_y": yy(0.0), "left": left,
                    "gap_status": _rule_status(rules, gap, "adapted", {"feature": f})})
    return out


def top_slices(results: dict) -> dict | None:
    """The scan's top slices with their paired gains, scaled on one axis with 0 marked."""
    ms = sorted((m for m in results["measurements"] if m["metric"] == "slices.gain_vs_both"),
                key=lambda m: (m.get("details") or {}).get("rank", 0))[:TOP_SLICES]
    if not ms:
        return None
    keys = ("gain_vs_both", "gain_vs_base_probe", "gain_vs_no_transfer")
    points = [0.0]
    for m in ms:
        d = m.get("details") or {}
        points += [v for k in keys for v in (d.get(f"{k}_ci") or [d.get(k)]) if v is not None]
    x = _scale(points, BAR_W)
    rows = []
    for m in ms:
        d = m.get("details") or {}
        bars = []
        for k in keys:
            v = m["value"] if k == "gain_vs_both" else d.get(k)
            ci = (m["ci"] if k == "gain_vs_both" else d.get(f"{k}_ci")) or ([v, v] if v is not None else None)
            bars.append(None if v is None else {"value": v, "ci": ci, "x1": x(ci[0]), "x2": x(ci[1]), "xv": x(v),
                                                "harm": ci[1] < 0})
        rows.append({"rank": d.get("rank"), "slice": group_label(m.get("group")), "n": m["n"], "bars": bars,
                     "q": d.get("q_value"), "significant": d.get("significant"),
                     "contradicts": ", ".join(d.get("contradicts") or []) or "none"})
    count = next((m for m in results["measurements"] if m["metric"] == "slices.harmful_count"), None)
    return {"rows": rows, "zero_x": x(0.0), "tested": ((count or {}).get("details") or {}).get("slices_tested"),
            "harmful": (count or {}).get("value")}
