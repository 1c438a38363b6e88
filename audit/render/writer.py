"""Write every artifact from results.json alone (so `transfer-audit render` needs no models or data)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..fileio import atomic_write_text
from ..presentation import attention, is_blocking
from .context import build_context
from .environment import Raw, html_env, md_env

ARTIFACTS = {
    "report.html": ("report.html.j2", "html"),
    "model_card.md": ("model_card.md.j2", "md"),
    "junit.xml": ("junit.xml.j2", "html"),
    "summary.md": ("summary.md.j2", "md"),
    "compliance.md": ("compliance.md.j2", "md"),
}


# Characters XML 1.0 forbids anywhere (even escaped): C0 controls but tab, newline and return; surrogates; FFFE/FFFF.
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """A group or feature name with a control character must not make junit.xml unparseable for CI."""
    return XML_FORBIDDEN.sub("\ufffd", text)


def render_one(name: str, results: dict, timings: dict | None = None) -> str:
    template, kind = ARTIFACTS[name]
    context = build_context(results, timings)
    if name == "model_card.md":
        from .card import front_matter

        context["front_matter"] = Raw(front_matter(results))
    if name == "compliance.md":
        from .compliance import compliance_sections

        context["compliance"] = compliance_sections(results)
    env = html_env() if kind == "html" else md_env()
    text = env.get_template(template).render(**context)
    return xml_safe(text) if name == "junit.xml" else text


def render_all(results: dict, out_dir: Path, timings: dict | None = None) -> list[str]:
    written = []
    for name in ARTIFACTS:
        atomic_write_text(out_dir / name, render_one(name, results, timings))
        written.append(name)
    from .card import EVAL_RESULTS, eval_results

    atomic_write_text(out_dir / EVAL_RESULTS, eval_results(results))
    written.append(EVAL_RESULTS)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(render_one("summary.md", results, timings) + "\n")
    return written


def github_annotations(results: dict, limit: int = 10) -> list[str]:
    """'::error'/'::warning' lines for the worst rules, for GitHub Actions logs."""
    lines = []
    for r in attention(results["gate"]["rules"])[:limit]:
        level = "error" if is_blocking(r) else "warning"
        msg = f"{r['id']}: {r['metric']} ({r['model']}) {r['status']}: {r['reason']}"
        msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        lines.append(f"::{level} title=transfer-audit::{msg}")
    return lines
