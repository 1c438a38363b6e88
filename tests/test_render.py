"""Renderers: golden files from fixture results, escaping of hostile values, JUnit shape, CI summary."""
from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from transfer_audit.render import ARTIFACTS, render_all, render_one

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = ["pass", "fail", "inconclusive", "empty_group", "multiclass"]


def load(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def normalise(text: str) -> str:
    """Versions and dates out, so golden files only change when the rendering does."""
    text = re.sub(r"transfer-audit \d+\.\d+\.\d+\S*", "transfer-audit X.Y.Z", text)
    return re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\S*", "TIMESTAMP", text)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("artifact", list(ARTIFACTS))
def test_golden(case, artifact):
    got = normalise(render_one(artifact, load(case)))
    path = GOLDEN / case / artifact
    if os.environ.get("REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert got == path.read_text(), f"{path} differs; rerun with REGEN_GOLDEN=1 only if the change is intended"


def test_first_screen_leads_with_the_verdict_and_failed_rules():
    html = render_one("report.html", load("fail"))
    assert html.index('class="verdict FAIL"') < html.index('id="attention"') < html.index('id="check-performance"')
    attention = html[html.index('id="attention"'):html.index('id="models"')]
    assert "dp" in attention and "what to do" in attention.lower()


def test_report_is_self_contained():
    html = render_one("report.html", load("pass"))
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<svg" in html and len(html.encode()) < 2_000_000


def test_hostile_values_are_escaped_everywhere():
    results = load("hostile")
    html = render_one("report.html", results)
    assert "<script>document.title" not in html and "&lt;script&gt;document.title" in html
    assert "<img src=x" not in html and "<svg onload" not in html and "<b onmouseover" not in html
    for md in ("model_card.md", "summary.md", "compliance.md"):
        text = render_one(md, results)
        body = text.split("---", 2)[-1] if md == "model_card.md" else text
        assert "<script>" not in body and "<img" not in body and "<svg" not in body, md
    card = render_one("model_card.md", results)
    import yaml

    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == "<script>document.title='PWNED'</script>"   # data, safely quoted YAML
    ET.fromstring(render_one("junit.xml", results).encode())                   # still well-formed XML


def test_junit_counts_and_cases():
    results = load("fail")
    root = ET.fromstring(render_one("junit.xml", results).encode())
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(results["gate"]["rules"]) == int(suite.get("tests"))
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == sum(r["status"] == "FAIL" for r in results["gate"]["rules"]) == int(suite.get("failures"))
    props = {p.get("name") for p in cases[0].find("properties")}
    assert {"value", "ci", "n", "condition"} <= props


def test_inconclusive_can_be_reported_as_skipped():
    results = load("inconclusive")
    results["policy"]["defaults"]["inconclusive_in_junit"] = "skipped"
    root = ET.fromstring(render_one("junit.xml", results).encode())
    assert root.find("testsuite").get("errors") == "0"
    assert any(c.find("skipped") is not None for c in root.iter("testcase"))


def test_model_card_front_matter_is_hugging_face_shaped():
    import yaml

    card = render_one("model_card.md", load("pass"))
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model_relation"] == "finetune" and front["license"] == "apache-2.0"
    assert front["model-index"][0]["results"][0]["metrics"][0]["type"] == "accuracy"
    assert "[More Information Needed]" in card


def test_step_summary_is_appended_and_annotations_capped(tmp_path, monkeypatch):
    from transfer_audit.render.writer import github_annotations

    summary = tmp_path / "summary.txt"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    render_all(load("fail"), tmp_path / "out")
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "**FAIL**" in text
    results = load("fail")
    results["gate"]["rules"] = results["gate"]["rules"] * 10
    lines = github_annotations(results)
    assert len(lines) == 10 and all(line.startswith(("::error", "::warning")) for line in lines)


def test_compliance_sections_are_filled_or_flagged():
    text = render_one("compliance.md", load("fail"))
    assert "2(a)" in text and "2(g)" in text and "MEASURE 2.11" in text
    assert "Needs a human" in text and "Sign-off" in text


def test_compliance_map_can_be_overridden(tmp_path, monkeypatch):
    custom = tmp_path / "map.yaml"
    custom.write_text("sections:\n  - {framework: ISO 42001, clause: A.6, title: Verification, metrics: [bias.]}\n")
    monkeypatch.setenv("TRANSFER_AUDIT_COMPLIANCE_MAP", str(custom))
    text = render_one("compliance.md", load("fail"))
    assert "ISO 42001 A.6" in text and "Annex IV" not in text.split("## ", 1)[1]


def test_diff_names_changed_rules(tmp_path):
    from transfer_audit.diff import diff_results

    lines = diff_results(FIXTURES / "pass.json", FIXTURES / "fail.json")
    assert lines[0] == "verdict: WARN -> FAIL"
    assert any(line.strip().startswith("regressed dp") for line in lines)


def test_every_inconclusive_rule_shows_what_would_decide_it_and_opt_outs_are_listed():
    from markupsafe import escape

    results = load("inconclusive")
    html = render_one("report.html", results)
    attention = html[html.index('id="attention"'):html.index("<details>")]
    inconclusive = [r for r in results["gate"]["rules"] if r["status"] == "INCONCLUSIVE"]
    assert inconclusive and all(str(escape(r["n_to_decide"]["text"])) in attention for r in inconclusive)
    assert "≈ 1,300 more rows would decide this" in attention
    assert "when_missing: skip" in attention and "<strong>cf</strong>" in attention
    summary = render_one("summary.md", results)
    assert "to decide" in summary and "Opted out of missing evidence" in summary
