"""The Hub's `.eval_results/` YAML beside the model card: parsed back by huggingface_hub's own reader."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from huggingface_hub import parse_eval_result_entries

from transfer_audit.render import render_all
from transfer_audit.render.card import EVAL_RESULTS, dataset_id, eval_results

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"


def test_eval_results_round_trip_through_huggingface_hub(tmp_path):
    results = json.loads((FIXTURES / "multiclass.json").read_text())
    for m in results["measurements"]:
        if m["metric"] == "performance.accuracy" and m["model"] == "adapted":
            m["value"] = 0.8534567                       # more digits than the card keeps
    written = render_all(results, tmp_path)
    assert EVAL_RESULTS in written and (tmp_path / "model_card.md").is_file()
    data = yaml.safe_load((tmp_path / EVAL_RESULTS).read_text())
    entries = parse_eval_result_entries(data)
    headline = {m["metric"]: m for m in results["measurements"] if m["model"] == "adapted" and not m.get("group")
                and m["metric"] in ("performance.accuracy", "performance.macro_f1", "performance.roc_auc")}
    assert len(entries) == len(headline) >= 1
    for e in entries:
        metric = {"accuracy": "performance.accuracy", "f1": "performance.macro_f1",
                  "roc_auc": "performance.roc_auc"}[e.task_id]
        m = headline[metric]
        assert e.value == round(m["value"], 4) and (metric != "performance.accuracy" or e.value == 0.8535)
        assert e.dataset_id == "adult"
        assert f"n={m['n']}" in e.notes and results["gate"]["verdict"] in e.notes
    # the same metrics as the model card's model-index
    front = yaml.safe_load((tmp_path / "model_card.md").read_text().split("---")[1])
    index = front["model-index"][0]["results"][0]["metrics"]
    assert sorted((m["type"], m["value"]) for m in index) == sorted((e.task_id, e.value) for e in entries)


def test_dataset_ids():
    assert dataset_id("builtin:adult/test") == "adult"
    assert dataset_id("/data/loans/current.csv") == "current"
    assert dataset_id("/data/hf-datasets/imdb") == "imdb"


def test_hostile_source_stays_yaml_data():
    results = json.loads((FIXTURES / "hostile.json").read_text())
    results["data"]["current"]["source"] = "x\n- dataset: {id: injected}\n"
    data = yaml.safe_load(eval_results(results))
    assert all(set(e) == {"dataset", "value", "notes"} for e in data)
    assert len(data) == 2 and len(parse_eval_result_entries(data)) == 2    # accuracy and macro F1, nothing injected
