"""Turn results.json into the plain view data every template reads (no library objects, no HTML)."""
from __future__ import annotations

from collections import OrderedDict

from ..presentation import attention, group_label, is_blocking

ROLE_LABELS = {"adapted": "adapted (M2)", "base_probe": "base + probe (M1)", "no_transfer": "no transfer (M0)",
               "no_transfer_text": "TF-IDF + LR", "no_transfer_tabular": "trees on raw columns",
               "base": "base encoder"}
ROLE_ORDER = list(ROLE_LABELS)
CHECK_TITLES = {"performance": "Performance", "bias": "Bias and fairness", "drift": "Drift",
                "transfer": "Transfer: is fine-tuning worth it?", "attribution": "Attribution: what the model relies on",
                "slices": "Slices: where did fine-tuning hurt?"}
ADVICE = {
    "performance": "Check the training data and recipe; compare with the no-transfer control before shipping.",
    "bias.counterfactual": "The prediction changes when only identity terms change: inspect the flipped examples, "
                           "augment training data with counterfactual pairs, or remove identity tokens.",
    "bias.introduced": "Fine-tuning widened the gap relative to the frozen base: revisit the fine-tuning data balance "
                       "or add a fairness constraint during fine-tuning.",
    "bias": "Look at the group table for the groups driving the gap; collect more data for small groups; consider "
            "threshold post-processing (fairlearn ThresholdOptimizer) or reweighting.",
    "drift": "The current data differs from the reference: confirm the shift is expected, re-validate on recent "
             "data, and watch the prediction drift of the adapted model.",
    "transfer.gain_vs_no_transfer": "The adapted model is worse than a model without pre-training: ship the "
                                    "simpler control, or revisit the base model and recipe.",
    "transfer.group_gain": "Transfer helps on average but this group does worse than under the no-transfer "
                           "control: check its share of the fine-tuning data and its error cases before shipping.",
    "transfer.forgetting": "The adapted encoder lost source-task ability: lower the learning rate, fine-tune fewer "
                           "layers (lora, head) or mix source data into fine-tuning.",
    "transfer": "Fine-tuning did not clearly beat the frozen base with a probe: a cheaper probe may do.",
    "attribution.converged": "Integrated-gradients did not converge: raise attribution.max_steps before trusting "
                             "the explanations.",
    "attribution": "The model leans on sensitive tokens: check whether those words should decide the label.",
    "slices": "Fine-tuning made some slices worse than both the frozen base and the no-transfer control: look at "
              "the top slices, check their share and labels in the fine-tuning data, and consider the base probe "
              "or the control for them.",
}
MISSING_ADVICE = "Provide the missing evidence (run the check, declare the sensitive columns, enable the " \
                 "counterfactual test), or opt the rule out with when_missing: skip and say why in the policy."
INSUFFICIENT_ADVICE = "Too few examples to judge: collect more data for the groups listed, or lower min_group_n " \
                      "in the policy with a documented reason."


def advice_for(rule: dict) -> str:
    reason = rule.get("reason") or ""
    if rule["status"] == "INCONCLUSIVE" and reason.startswith("missing evidence"):
        return MISSING_ADVICE
    if rule["status"] == "INCONCLUSIVE" and ("insufficient" in reason or "too small" in reason):
        return INSUFFICIENT_ADVICE
    metric = rule["metric"]
    best = max((k for k in ADVICE if metric.startswith(k)), key=len, default=None)
    return ADVICE.get(best, "Review the measurement and its confidence interval.")


def to_decide_text(rule: dict) -> str:
    """What would decide an INCONCLUSIVE rule (the gate's rows estimate, or what evidence is missing)."""
    to = rule.get("n_to_decide") or {}
    return to.get("text") or ("n/a" if rule["status"] != "INCONCLUSIVE" else "no estimate recorded")


def interval_label(rule: dict) -> str:
    """'98.3% simultaneous, family of 3' where the rule decided a family; '95%' otherwise; '' with no interval."""
    level, size = rule.get("level"), rule.get("family_size") or 1
    if level is None or not rule.get("ci"):
        return ""
    pct = f"{100 * level:.3g}%"
    label = f"{pct} simultaneous, family of {size}" if size > 1 else pct
    return f"{label}, bias-corrected" if rule.get("basis") == "bias-corrected" else label


def _chart(rows, bound=None):
    """Coordinates for an interval chart drawn by the template as inline SVG."""
    pts = [r for r in rows if r["value"] is not None]
    if not pts:
        return None
    lows = [r["ci"][0] if r["ci"] else r["value"] for r in pts]
    highs = [r["ci"][1] if r["ci"] else r["value"] for r in pts]
    lo, hi = min(lows + ([bound] if bound is not None else [])), max(highs + ([bound] if bound is not None else []))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    left, width = 230, 330

    def x(v):
        return round(left + (v - lo) / (hi - lo) * width, 1)

    items = []
    for i, r in enumerate(pts):
        ci = r["ci"] or [r["value"], r["value"]]
        items.append({"label": f"{r['group']} · {r['role_label']}", "y": 18 + i * 18, "x1": x(ci[0]),
                      "x2": x(ci[1]), "xv": x(r["value"]), "value": r["value"]})
    return {"items": items, "height": 30 + len(items) * 18, "width": left + width + 20, "left": left,
            "right": left + width, "lo": lo, "hi": hi, "bound_x": x(bound) if bound is not None else None}


def build_context(results: dict, timings: dict | None = None) -> dict:
    gate = results["gate"]
    rules = gate["rules"]
    needing = [dict(r, advice=advice_for(r), to_decide=to_decide_text(r), interval=interval_label(r))
               for r in attention(rules)]
    opted_out = [r for r in rules if r["status"] == "SKIPPED" and r.get("when_missing") == "skip"]
    headline = {}
    for r in needing:
        if is_blocking(r):
            h = headline.setdefault((r["status"], r["id"]), {"status": r["status"], "id": r["id"], "where": []})
            h["where"].append(group_label(r.get("group")))
    bounds = {(r["metric"], r["model"]): r["bound"] for r in rules if r.get("bound") is not None}
    sections = []
    by_check = OrderedDict((c["check"], c) for c in results["checks"])
    for name, check in by_check.items():
        metrics = OrderedDict()
        for m in results["measurements"]:
            if m["check"] != name:
                continue
            metrics.setdefault(m["metric"], []).append({
                "group": group_label(m.get("group")), "role": m["model"],
                "role_label": ROLE_LABELS.get(m["model"], m["model"]), "value": m["value"], "ci": m["ci"],
                "n": m["n"], "status": m["status"], "details": m.get("details") or {}})
        blocks = []
        for metric, rows in metrics.items():
            rows.sort(key=lambda r: (r["group"], ROLE_ORDER.index(r["role"]) if r["role"] in ROLE_ORDER else 99))
            bound = next((bounds[(metric, r["role"])] for r in rows if (metric, r["role"]) in bounds), None)
            chart = _chart(rows, bound) if len(rows) <= 30 and any(r["ci"] for r in rows) else None
            blocks.append({"metric": metric, "rows": rows, "chart": chart})
        tables = [dict(t, key=k) for k, t in (check.get("tables") or {}).items()
                  if isinstance(t, dict) and "columns" in t]
        sections.append({"check": name, "title": CHECK_TITLES.get(name, name), "status": check["status"],
                         "notes": check.get("notes") or [], "metrics": blocks, "tables": tables})
    return {"results": results, "audit": results["audit"], "models": results["models"], "data": results["data"],
            "policy": results["policy"], "verdict": gate["verdict"], "counts": gate.get("counts", {}),
            "rules": rules, "attention": needing, "opted_out": opted_out, "headline": list(headline.values()),
            "sections": sections, "role_labels": ROLE_LABELS,
            "timings": timings or {}, "tool": results["tool"]}
