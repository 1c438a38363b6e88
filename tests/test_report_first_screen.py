"""report.html's first screen and pictures, read from fixture results.json: the verdict sentence, the three-role
matrix (values and colours from results.json), the first actions with what decides them, the slope charts, the
top slices, insufficient groups once per table, self-contained and small."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from markupsafe import escape

from transfer_audit.render import render_one
from transfer_audit.render.environment import fmt, fmt_ci

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"


def load(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def between(html: str, start: str, end: str) -> str:
    return html[html.index(start):html.index(end, html.index(start))]


def matrix_rows(html: str) -> dict[str, list[str]]:
    """{row label: [cell html, ...]} of the matrix table."""
    table = between(html, '<table class="matrix">', "</table>")
    rows = {}
    for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]:
        cells = re.findall(r"<td[^>]*>.*?</td>", tr, re.S)
        rows[re.sub(r"<[^>]+>", "", cells[0])] = cells[1:]
    return rows


def measured(results, metric, role, group=None):
    return next(m for m in results["measurements"] if m["metric"] == metric and m["model"] == role
                and (m.get("group") or None) == group)


def test_matrix_shows_the_three_roles_with_their_values_and_intervals():
    results = load("fail")
    html = render_one("report.html", results)
    header = between(html, '<table class="matrix">', "</tr>")
    assert header.index("M0") < header.index("M1") < header.index("M2")
    rows = matrix_rows(html)
    assert list(rows)[:3] == ["accuracy", "macro F1", "worst-group selection-rate gap · sex"]
    for label, metric, group in (("accuracy", "performance.accuracy", None),
                                 ("macro F1", "performance.macro_f1", None),
                                 ("worst-group selection-rate gap · sex", "bias.demographic_parity_difference",
                                  {"feature": "sex"})):
        for cell, role in zip(rows[label], ("no_transfer", "base_probe", "adapted"), strict=True):
            m = measured(results, metric, role, group)
            assert f'<span class="v">{fmt(m["value"])}</span>' in cell, (label, role)
            assert fmt_ci(m["ci"]) in cell and "<svg" in cell, (label, role)
    assert "not measured" in rows["attribution sensitive share"][0]          # M0 has no attribution


def test_matrix_shows_the_worst_counterfactual_axis():
    results = load("fail")
    for axis, role, flips in (("names", "adapted", 0.01), ("sex values", "adapted", 0.2),
                              ("sex values", "base_probe", 0.05)):
        results["measurements"].append({"check": "bias", "metric": "bias.counterfactual_flip_rate", "model": role,
                                        "value": flips, "ci": [0.0, flips + 0.03], "n": 100, "status": "MEASURED",
                                        "group": {"axis": axis}, "details": None})
    cells = matrix_rows(render_one("report.html", results))["counterfactual flip rate · sex values (worst of 2 axes)"]
    assert "not measured" in cells[0] and '<span class="v">0.050</span>' in cells[1]
    assert '<span class="v">0.200</span>' in cells[2]


def test_matrix_cells_are_coloured_by_the_rule_that_judges_them():
    html = render_one("report.html", load("fail"))
    rows = matrix_rows(html)
    acc, gap = rows["accuracy"], rows["worst-group selection-rate gap · sex"]
    assert "st-PASS" in acc[2] and "st-FAIL" in gap[2]                   # rules acc (PASS) and dp (FAIL) judge M2
    assert all("st-none" in c for c in acc[:2] + gap[:2])                 # no rule judges M0 or M1
    assert "st-WARN" in rows["attribution sensitive share"][2]


def test_interval_bar_spans_the_interval_on_the_rows_scale():
    results = load("fail")
    gap = matrix_rows(render_one("report.html", results))["worst-group selection-rate gap · sex"]
    pairs = []                                                           # (value on the data scale, x in px)
    for cell, role in zip(gap, ("no_transfer", "base_probe", "adapted"), strict=True):
        m = measured(results, "bias.demographic_parity_difference", role, {"feature": "sex"})
        x1, x2 = map(float, re.search(r'<line x1="([\d.]+)" y1="6" x2="([\d.]+)" y2="6" stroke="currentColor"',
                                      cell).groups())
        xv = float(re.search(r'<circle cx="([\d.]+)"', cell).group(1))
        pairs += [(m["ci"][0], x1), (m["value"], xv), (m["ci"][1], x2)]
    (v0, x0), (v1, x1) = min(pairs), max(pairs)
    slope = (x1 - x0) / (v1 - v0)
    assert slope > 0
    for v, x in pairs:                                                    # one linear scale along the row
        assert abs(x0 + (v - v0) * slope - x) < 0.2, (v, x)


def test_first_screen_elements_come_in_order():
    html = render_one("report.html", load("fail"))
    order = ['class="verdict FAIL"', 'class="why"', 'id="matrix"', 'id="actions"', 'id="inherited"',
             'id="top-slices"', 'id="attention"', 'id="models"', 'id="check-performance"']
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "FAIL because 2 blocking rules failed (dp, nt); 1 warning rule tripped." in html


def test_first_actions_are_the_worst_rules_with_what_would_decide_them():
    results = load("inconclusive")
    html = render_one("report.html", results)
    actions = between(html, '<ol class="actions">', "</ol>")
    items = re.findall(r"<li>(.*?)</li>", actions, re.S)
    assert len(items) == 3
    assert [re.search(r"<strong>(.*?)</strong>", i).group(1) for i in items] == ["acc", "dp", "nt"]
    for item, rid in zip(items, ("acc", "dp", "nt"), strict=True):
        rule = next(r for r in results["gate"]["rules"] if r["id"] == rid)
        assert str(escape(rule["n_to_decide"]["text"])) in item
    assert "≈ 1,300 more rows would decide this" in items[0]


def test_a_passing_audit_has_nothing_to_do():
    results = load("pass")
    for r in results["gate"]["rules"]:
        r["status"] = "PASS"
    results["gate"]["verdict"] = "PASS"
    html = render_one("report.html", results)
    assert 'class="actions"' not in html and "Nothing: every rule of the policy passed." in html
    assert "PASS: every rule of policy fixture passed." in html


def test_slope_chart_puts_the_three_roles_in_order_with_higher_gaps_higher():
    results = load("fail")
    html = render_one("report.html", results)
    chart = between(html, 'id="inherited"', "</section>")
    assert chart.count("<svg") == 1                                      # one picture per sensitive feature
    ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', chart)]
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', chart)]
    assert xs == sorted(xs) and len(xs) == 3
    assert ys[0] > ys[1] > ys[2]                                         # 0.175 < 0.2 < 0.25: SVG y grows down
    step = measured(results, "bias.introduced", "adapted", {"feature": "sex",
                                                             "disparity": "demographic_parity_difference"})
    assert f"introduced (M2 − M1): <strong>{fmt(step['value'])}</strong>" in chart


def test_top_slices_table_in_rank_order_with_harm_in_red():
    html = render_one("report.html", load("fail"))
    table = between(html, 'id="top-slices"', "</section>")
    assert "12 slices tested; 1 where" in table
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>(.*?)</td>", table)
    assert [r[0] for r in rows] == ["1", "2"]
    first, second = table.split('<tr><td class="num">2</td>')
    assert "#cf222e" in first and "#cf222e" not in second                # only rank 1's intervals lie below 0


def test_insufficient_groups_are_listed_once_per_table():
    html = render_one("report.html", load("empty_group"))
    block = between(html, "<strong>bias.demographic_parity_difference</strong>", "</details>")
    assert block.count("c (+30 rows)") == 1 and "Too few rows to measure" in block
    assert "insufficient_groups" not in html and "missing_rows" not in html


def test_no_script_and_no_external_url():
    html = render_one("report.html", load("hostile"))
    assert "<script" not in html.lower()
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>]*", html)) - {"http://www.w3.org/2000/svg"}
    assert urls == set()
    # no tag loads anything but an inline data: URI (the CSP allows img-src data: only)
    assert not re.search(r"<[a-zA-Z][^<>]*\s(?:src|href)\s*=\s*[\"']?(?!data:)", html)


def _scaled(groups: int) -> dict:
    """The fail fixture with `groups` extra groups per sensitive feature, each measured for three roles and
    five group metrics (a demo-sized audit has ~200 group rows)."""
    results = copy.deepcopy(load("fail"))
    template = next(m for m in results["measurements"] if m["metric"] == "bias.group_selection_rate")
    for g in range(groups):
        for metric in ("selection_rate", "accuracy", "tpr", "fpr", "precision"):
            for role in ("adapted", "base_probe", "no_transfer"):
                m = copy.deepcopy(template)
                m.update(metric=f"bias.group_{metric}", model=role,
                         group={"feature": "sex", "value": f"group number {g}"})
                results["measurements"].append(m)
    return results


def test_report_stays_small_for_a_large_audit():
    small = len(render_one("report.html", _scaled(0)).encode())
    large = len(render_one("report.html", _scaled(100)).encode())       # 1,500 more group rows
    per_row = (large - small) / 1500
    assert large < 1_000_000 and per_row < 400, (large, per_row)


def test_long_tables_are_collapsed_and_short_ones_open():
    html = render_one("report.html", _scaled(10))
    long_block = between(html, "<strong>bias.group_accuracy</strong>", "</details>")
    opening = html[html.rindex("<details", 0, html.index("<strong>bias.group_accuracy</strong>")):]
    assert opening.startswith('<details class="metric">') and long_block.count("group number") >= 30
    short = html[html.rindex("<details", 0, html.index("<strong>performance.accuracy</strong>")):]
    assert short.startswith('<details open class="metric">')


@pytest.mark.parametrize("case", ["pass", "inconclusive", "empty_group", "multiclass"])
def test_every_fixture_renders_a_first_screen(case):
    html = render_one("report.html", load(case))
    assert 'id="verdict"' in html and 'class="why"' in html and 'id="matrix"' in html and 'id="actions"' in html
