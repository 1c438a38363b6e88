"""`diff`: regressions across a lineage of audits, the exit code of --fail-on regression, and the Markdown table
(parsed by markdown-it-py, a CommonMark renderer with GitHub's table extension)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from transfer_audit.cli import main
from transfer_audit.diff import Change, Tolerance, compare, markdown, step

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"


def fx(name: str) -> str:
    return str(FIXTURES / f"{name}.json")


def tables(md: str) -> list[list[list[str]]]:
    """Every table as rows of cell texts, from the renderer's token stream."""
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    out, rows, row = [], None, None
    for t in tokens:
        if t.type == "table_open":
            rows = []
        elif t.type == "tr_open":
            row = []
        elif t.type == "inline" and row is not None:
            row.append(t.content)
        elif t.type == "tr_close":
            rows.append(row)
            row = None
        elif t.type == "table_close":
            out.append(rows)
    return out


def test_fail_on_regression_exit_codes(capsys):
    assert main(["diff", fx("pass"), fx("fail"), "--fail-on", "regression"]) == 1
    out = capsys.readouterr().out
    assert "regressed dp [adapted feature=sex]: PASS 0.03 -> FAIL 0.25" in out
    assert main(["diff", fx("pass"), fx("pass"), "--fail-on", "regression"]) == 0
    assert main(["diff", fx("pass"), fx("fail")]) == 0                     # reporting only, without --fail-on
    assert main(["diff", fx("fail"), fx("pass"), "--fail-on", "regression"]) == 0   # improvements only
    # same verdict and statuses; accuracy 0.90 -> 0.85 with CI [0.82, 0.88]: a regression only past a tolerance
    assert main(["diff", fx("pass"), fx("multiclass"), "--fail-on", "regression"]) == 0
    assert main(["diff", fx("pass"), fx("multiclass"), "--fail-on", "regression", "--tolerance", "0.01"]) == 1
    assert main(["diff", fx("pass"), fx("multiclass"), "--fail-on", "regression",
                 "--tolerance", "performance.accuracy=0.05"]) == 0


def test_identical_real_runs_do_not_regress(tiny_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "again"
    shutil.copytree(tiny_run.run_dir, copy)
    assert main(["diff", str(tiny_run.run_dir), str(copy), "--fail-on", "regression", "--tolerance", "0"]) == 0
    assert "no rule changed" in capsys.readouterr().out


def _cached_run(tiny_run, tiny_bert, folder: Path, policy: Path | None = None) -> Path:
    """The tiny audit's model and data, performance check only, fine-tuning and inference from its cache."""
    from conftest import adult_spec, write_spec

    out = tiny_run.run_dir.parent
    spec = write_spec(folder, adult_spec(str(tiny_bert), out, checks={"performance": {}}))
    before = set(out.iterdir())
    main(["run", str(spec)] + (["--policy", str(policy)] if policy else []))
    return next(iter(set(out.iterdir()) - before))


def test_real_pair_where_a_rule_regresses(tiny_run, tiny_bert, tmp_path, capsys):
    """Two audits of the tiny model; the second under a policy that tightens a rule the first passed."""
    import yaml
    from conftest import ROOT

    old = _cached_run(tiny_run, tiny_bert, tmp_path / "old")
    rules = json.loads((old / "results.json").read_text())["gate"]["rules"]
    rule = next(r for r in rules if r["status"] == "PASS" and r["severity"] == "block"
                and r["condition"].startswith(">="))
    policy = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text())
    next(r for r in policy["rules"] if r["id"] == rule["id"])["min"] = 1.01      # no value can reach it
    tight = tmp_path / "tight.yaml"
    tight.write_text(yaml.safe_dump(policy))
    new = _cached_run(tiny_run, tiny_bert, tmp_path / "new", tight)
    capsys.readouterr()
    assert main(["diff", str(old), str(new), "--fail-on", "regression"]) == 1
    out = capsys.readouterr().out
    assert f"regressed {rule['id']} [{rule['model']}]: PASS" in out
    assert main(["diff", str(old), str(old), "--fail-on", "regression"]) == 0


def test_status_ranks_and_metric_tolerance():
    def rule(status, value, ci=None, cond=">= 0.7"):
        return {"status": status, "value": value, "ci": ci, "condition": cond, "metric": "performance.accuracy"}

    none = Tolerance()
    for old, new in [("PASS", "WARN"), ("PASS", "INCONCLUSIVE"), ("PASS", "FAIL"), ("WARN", "FAIL"),
                     ("INCONCLUSIVE", "FAIL"), ("PASS", "SKIPPED")]:
        assert step(rule(old, 0.9), rule(new, 0.9), none)[0] is Change.REGRESSED, (old, new)
        assert step(rule(new, 0.9), rule(old, 0.9), none)[0] is Change.IMPROVED, (new, old)
    assert step(rule("FAIL", 0.9), rule("ERROR", None), none)[0] is Change.CHANGED
    assert step(None, rule("FAIL", 0.1), none)[0] is Change.ADDED
    assert step(rule("PASS", 0.9), None, none)[0] is Change.REMOVED
    old, new = rule("PASS", 0.9, [0.87, 0.93]), rule("PASS", 0.8, [0.77, 0.83])
    assert step(old, new, none)[0] is Change.UNCHANGED                   # no tolerance declared: status only
    assert step(old, new, Tolerance(0.05))[0] is Change.REGRESSED         # whole CI below 0.9 - 0.05
    assert step(old, new, Tolerance(0.1))[0] is Change.UNCHANGED          # 0.83 is not below 0.9 - 0.1
    assert step(old, new, Tolerance(0.1, {"performance.accuracy": 0.05}))[0] is Change.REGRESSED
    straddles = rule("PASS", 0.8, [0.7, 0.95])
    assert step(old, straddles, Tolerance(0.0))[0] is Change.UNCHANGED    # the interval decides, not the point
    # a max rule: higher is worse
    lo, hi = rule("PASS", 0.03, [0.0, 0.06], "<= 0.1"), rule("PASS", 0.09, [0.08, 0.095], "<= 0.1")
    assert step(lo, hi, Tolerance(0.01))[0] is Change.REGRESSED
    assert step(hi, lo, Tolerance(0.01))[0] is Change.IMPROVED


def test_markdown_is_one_table_changed_rules_first():
    md = markdown(compare([fx("pass"), fx("fail")]))
    found = tables(md)
    assert len(found) == 1
    header, *rows = found[0]
    assert header == ["rule", "model", "group", "pass", "fail", "change"]
    assert [r[0] for r in rows] == ["dp", "nt", "acc", "sens", "psi", "cf"]  # the two regressions come first
    assert rows[0][3].startswith("PASS 0.030") and rows[0][4].startswith("FAIL 0.250")
    assert "regressed" in rows[0][5] and rows[2][5] == "unchanged"
    assert all(len(r) == 6 for r in rows)
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert html.count("<table>") == 1 and html.count("<tr>") == 7


def test_lineage_renders_as_one_table(capsys):
    assert main(["diff", fx("pass"), fx("inconclusive"), fx("fail"), "--format", "md", "--fail-on", "regression"]) == 1
    found = tables(capsys.readouterr().out)
    assert len(found) == 1
    header, *rows = found[0]
    assert header == ["rule", "model", "group", "pass", "inconclusive", "fail", "change"]
    dp = next(r for r in rows if r[0] == "dp")
    assert [c.split()[0] for c in dp[3:6]] == ["PASS", "INCONCLUSIVE", "FAIL"]


def test_hostile_values_do_not_break_the_table(tmp_path):
    hostile = json.loads((FIXTURES / "hostile.json").read_text())
    for r in hostile["gate"]["rules"]:
        r["id"] = f"{r['id']} | injected | cells"
        r["group"] = {"feature": "a|b\n| x | y |"}
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(hostile))
    md = markdown(compare([str(path), fx("pass")]))
    found = tables(md)
    assert len(found) == 1
    header, *rows = found[0]
    pass_rules = len(json.loads((FIXTURES / "pass.json").read_text())["gate"]["rules"])
    assert len(rows) == len(hostile["gate"]["rules"]) + pass_rules and all(len(r) == len(header) for r in rows)
    assert any(r[0] == "acc | injected | cells" for r in rows)          # escaped pipes stay inside the cell
    assert "<img" not in MarkdownIt("commonmark").enable("table").render(md)


def test_bad_tolerance_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["diff", fx("pass"), fx("fail"), "--tolerance", "-1"])
    assert e.value.code == 2
    assert main(["diff", fx("pass"), fx("fail"), "--tolerance", "performance.acuracy=0.1"]) == 2
    assert "no check measures" in capsys.readouterr().err
