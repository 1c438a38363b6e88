"""Compliance sections (EU AI Act Annex IV, NIST AI RMF MEASURE) filled from the evidence.

The mapping of checks to clauses is data (reports/compliance_map.yaml); users point
TRANSFER_AUDIT_COMPLIANCE_MAP at their own copy to override it.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..packaged import compliance_map


def load_map() -> list[dict]:
    from ..yamlio import load_yaml_file

    path = Path(os.environ.get("TRANSFER_AUDIT_COMPLIANCE_MAP") or compliance_map())
    data = load_yaml_file(path, "compliance map")
    return data.get("sections", [])


def compliance_sections(results: dict) -> list[dict]:
    rules = results["gate"]["rules"]
    out = []
    for sec in load_map():
        prefixes = tuple(sec.get("metrics", []))
        evidence = [r for r in rules if prefixes and r["metric"].startswith(prefixes)]
        facts = [_fact(results, key) for key in sec.get("facts", [])]
        facts = [f for f in facts if f]
        filled = bool(evidence or facts)
        out.append({"framework": sec["framework"], "clause": sec["clause"], "title": sec["title"],
                    "rules": evidence, "facts": facts, "filled": filled,
                    "human": sec.get("human", "A responsible person must complete this section.")})
    return out


def _fact(results: dict, key: str) -> str | None:
    m, a, d = results["models"], results["audit"], results["data"]
    if key == "base_model":
        b = m.get("base", {})
        return f"Pre-trained base: {b.get('name')} (sha256 {str(b.get('sha256'))[:16]}…)"
    if key == "adaptation":
        ad = m.get("adapted", {})
        recipe = ad.get("recipe")
        how = ", ".join(f"{k}={v}" for k, v in recipe.items()) if recipe else "provided by the user"
        return f"Adaptation: {ad.get('relation')} ({ad.get('source')}; {how}); sha256 {str(ad.get('sha256'))[:16]}…"
    if key == "data":
        return "; ".join(f"{k}: {v['source']} (n={v['n']})" for k, v in d.items())
    if key == "task":
        return f"Task: {a['task']} with classes {', '.join(a['classes'])}; sensitive features: " \
               f"{', '.join(a['sensitive']) or 'none declared'}"
    if key == "policy":
        p = results["policy"]
        return (f"Policy {p['name']} (sha256 {str(p.get('sha256'))[:16]}…), "
                f"{len(results['gate']['rules'])} rule outcomes")
    if key == "verdict":
        return f"Gate verdict: {results['gate']['verdict']}"
    return None
