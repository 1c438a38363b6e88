"""End to end on a tiny BERT: every check, all three roles, the gate, the outputs and the manifest."""
from __future__ import annotations

import json

from conftest import adult_spec, write_spec

from transfer_audit.outputs import verify_run
from transfer_audit.results import SCHEMA_VERSION


def test_results_have_every_role_with_cis(tiny_run):
    results = json.loads((tiny_run.run_dir / "results.json").read_text())
    assert results["schema_version"] == SCHEMA_VERSION
    perf = [m for m in results["measurements"] if m["metric"] == "performance.accuracy"]
    roles = {m["model"] for m in perf}
    assert {"adapted", "base_probe", "no_transfer", "no_transfer_text", "no_transfer_tabular"} <= roles
    for m in perf:
        lo, hi = m["ci"]
        assert lo <= m["value"] <= hi and m["n"] == 200
    assert {c["check"] for c in results["checks"]} == {"performance", "bias", "drift", "transfer", "attribution"}
    assert all(set(r) >= {"id", "metric", "model", "condition", "value", "ci", "status", "severity", "family_size",
                          "level", "n_to_decide"} for r in results["gate"]["rules"])


def _verdict(rules, allow_inconclusive: bool) -> str:
    """The verdict from the rule outcomes alone, written independently of gate.py."""
    live = [r for r in rules if not r.get("waived")]
    block = [r["status"] for r in live if r["severity"] == "block"]
    if "FAIL" in block:
        return "FAIL"
    if ("INCONCLUSIVE" in block or "ERROR" in block) and not allow_inconclusive:
        return "INCONCLUSIVE"
    return "WARN" if any(r["status"] in ("WARN", "INCONCLUSIVE", "ERROR") for r in rules) else "PASS"


def test_verdict_follows_the_rules_and_no_pass_lacks_evidence(tiny_run):
    gate = tiny_run.results["gate"]
    rules = gate["rules"]
    assert gate["verdict"] == _verdict(rules, tiny_run.results["policy"]["defaults"]["allow_inconclusive"])
    assert sum(gate["counts"].values()) == len(rules)
    for r in rules:
        if r["status"] == "PASS" and r["decide_on"] == "ci":
            lo, hi = r["ci"]
            upper = r["condition"].startswith("<=")
            assert r["bound"] is not None and (hi <= r["bound"] if upper else lo >= r["bound"])
            for point in (r["value"], r.get("measured_value")):
                if point is not None:
                    assert point <= r["bound"] if r["condition"].startswith("<=") else point >= r["bound"], r["id"]
        if r["status"] == "INCONCLUSIVE":
            assert r["n_to_decide"] and r["n_to_decide"]["text"], r["id"]
        if r["status"] in ("PASS", "FAIL", "WARN") and r["decide_on"] == "ci":
            assert r["family_size"] >= 1 and 0.95 <= r["level"] < 1, r["id"]


def test_exit_code_matches_verdict(tiny_run):
    verdict = tiny_run.results["gate"]["verdict"]
    assert tiny_run.exit_code == {"FAIL": 1, "INCONCLUSIVE": 4}.get(verdict, 0)


def test_outputs_and_manifest_verify(tiny_run):
    names = {p.name for p in tiny_run.run_dir.iterdir()}
    assert {"results.json", "report.html", "model_card.md", "junit.xml", "summary.md", "compliance.md",
            "manifest.json"} <= names
    assert verify_run(tiny_run.run_dir) == []
    manifest = json.loads((tiny_run.run_dir / "manifest.json").read_text())
    assert set(manifest["outputs"]) >= {"results.json", "report.html"}
    assert manifest["seed"] == 0 and "torch" in manifest["libraries"]


def test_tampering_is_detected(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, copy)
    assert verify_run(copy) == []
    (copy / "results.json").write_text((copy / "results.json").read_text().replace('"PASS"', '"FAIL"', 1) + " ")
    problems = verify_run(copy)
    assert any("results.json" in p for p in problems)


def test_render_rebuilds_the_same_artifacts(tiny_run, tmp_path):
    from transfer_audit.cli import main

    assert main(["render", str(tiny_run.run_dir / "results.json"), "--out", str(tmp_path)]) == 0
    for name in ("report.html", "model_card.md", "junit.xml", "summary.md", "compliance.md"):
        assert (tmp_path / name).read_text() == (tiny_run.run_dir / name).read_text(), name


def test_second_run_reuses_finetune_and_is_byte_identical(tiny_bert, tmp_path, caplog):
    import logging

    from transfer_audit.runner import run_audit

    caplog.set_level(logging.INFO, logger="transfer_audit")      # progress is logged; the CLI shows it
    spec = write_spec(tmp_path, adult_spec(str(tiny_bert), tmp_path / "runs",
                                           checks={"performance": {}, "bias": {"counterfactual": False}}))
    first = run_audit(spec)
    err = caplog.text
    assert "fine-tuning" in err
    caplog.clear()
    second = run_audit(spec)
    err = caplog.text
    assert "found in cache" in err and "fine-tuning (" not in err
    assert (first.run_dir / "results.json").read_bytes() == (second.run_dir / "results.json").read_bytes()
    assert first.run_dir != second.run_dir


def test_results_are_byte_identical_when_recomputed(tiny_bert, tmp_path):
    """No cache shared: fine-tuning, inference and every check run twice from scratch."""
    from transfer_audit.runner import run_audit

    checks = {"performance": {}, "bias": {"counterfactual_samples": 10}, "transfer": {"cv_folds": 3}}
    a = run_audit(write_spec(tmp_path / "a", adult_spec(str(tiny_bert), tmp_path / "a" / "runs", checks=checks)))
    b = run_audit(write_spec(tmp_path / "b", adult_spec(str(tiny_bert), tmp_path / "b" / "runs", checks=checks)))
    ra, rb = (a.run_dir / "results.json").read_bytes(), (b.run_dir / "results.json").read_bytes()
    assert ra == rb


def test_lora_adapter_folder_and_forgetting_with_a_source_set(tiny_bert, tmp_path):
    """LoRA fine-tune, then audit the saved PEFT adapter folder as a given adapted model; a source-task set
    (Rotten Tomatoes) gives a forgetting estimate."""
    from transfer_audit.runner import run_audit

    checks = {"performance": {}, "transfer": {"cv_folds": 3}}
    spec = adult_spec(str(tiny_bert), tmp_path / "runs", checks=checks)
    spec["model"]["finetune"]["method"] = "lora"
    spec["data"]["source_eval"] = {"builtin": "rotten_tomatoes", "split": "test", "sample": 120, "label": "label",
                                   "text": "text"}
    first = run_audit(write_spec(tmp_path, spec))
    adapter = first.results["models"]["adapted"]
    assert adapter["relation"] == "adapter"
    forgetting = [m for m in first.results["measurements"] if m["metric"] == "transfer.forgetting"]
    assert forgetting[0]["status"] == "MEASURED" and forgetting[0]["n"] == 120 and forgetting[0]["ci"] is not None

    import glob

    folder = glob.glob(str(tmp_path / "runs" / ".cache" / "models" / "*"))[0]
    spec2 = dict(spec, model={"base": str(tiny_bert), "adapted": folder, "finetune": spec["model"]["finetune"]})
    second = run_audit(write_spec(tmp_path / "given", spec2))

    def acc(r):
        return [m["value"] for m in r.results["measurements"]
                if m["metric"] == "performance.accuracy" and m["model"] == "adapted"]

    assert acc(first) == acc(second) and second.results["models"]["adapted"]["relation"] == "adapter"
