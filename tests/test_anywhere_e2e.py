"""Issue 14 end to end: a spec whose base is a Hub id in an HF-cache layout (symlinked snapshot of the shipped
MiniLM), `learning_rate: 2e-5` and a CSV whose sensitive column holds "NA" runs through the CLI (quiet, JSON);
a snapshot whose link leaves its repo is refused with exit 3; the Python API runs a dict spec on DataFrames."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import minilm_dir
from hf_cache import COMMIT, add_to_cache

from transfer_audit.cli import main

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
SPEC = """\
name: hub-na
task: tabular-classification
seed: 0
data:
  train: {path: data/train.csv}
  reference: {path: data/reference.csv}
  current: {path: data/current.csv}
  template: "{age} year old {sex}, {race}, works as {occupation}, {hours_per_week} h/week"
  label: income
  positive_label: ">50K"
  sensitive: [sex, region]
model:
  base: %s
  adapted: null
  finetune: {method: head, epochs: 1, learning_rate: 2e-5, batch_size: 16, max_length: 32}
checks: {performance: {}, bias: {counterfactual_samples: 10}}
output: runs
"""


def adult_csvs(folder: Path) -> None:
    """Adult rows with a `region` column whose values include "NA" (North America) and "None"."""
    from transfer_audit.builtin_data import load_builtin

    folder.mkdir(parents=True)
    df = load_builtin("adult", "all").sample(224, random_state=0).reset_index(drop=True)
    df["region"] = np.array(["NA", "EU", "None"])[np.arange(len(df)) % 3]
    for name, rows in (("train", slice(0, 96)), ("reference", slice(96, 160)), ("current", slice(160, 224))):
        df.iloc[rows].to_csv(folder / f"{name}.csv", index=False)


@pytest.fixture
def minilm_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    add_to_cache(cache, HUB_ID, minilm_dir())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.slow
def test_hub_id_base_2e5_and_na_groups_run_end_to_end(tmp_path, minilm_cache, capsys):
    work = tmp_path / "audit"
    adult_csvs(work / "data")
    (work / "audit.yaml").write_text(SPEC % HUB_ID)
    code = main(["run", str(work / "audit.yaml"), "--quiet", "--format", "json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code in (0, 1, 4), err
    assert "[transfer-audit]" not in err                       # --quiet: no progress lines
    summary = json.loads(out)                                  # --format json: one object on stdout
    assert summary["exit_code"] == code and summary["verdict"] in ("PASS", "WARN", "FAIL", "INCONCLUSIVE")
    assert summary["rules"] and all({"id", "status"} <= set(r) for r in summary["rules"])
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "manifest.json").is_file()

    results = json.loads((run_dir / "results.json").read_text())
    base = results["models"]["base"]
    assert base["hub_id"] == HUB_ID and base["revision"] == COMMIT and base["ref"] == HUB_ID
    assert results["data"]["train"]["source"] == "data/train.csv"
    groups = {m["group"].get("value") for m in results["measurements"]
              if (m.get("group") or {}).get("feature") == "region"}
    assert {"NA", "None", "EU"} <= groups
    card = (run_dir / "model_card.md").read_text()
    assert f"base_model: {HUB_ID}" in card
    for name in ("results.json", "model_card.md", "report.html", "summary.md", "compliance.md", "junit.xml"):
        assert str(tmp_path) not in (run_dir / name).read_text(), name    # no absolute path leaks


def test_snapshot_link_out_of_its_repo_is_refused(tmp_path, minilm_cache, capsys):
    work = tmp_path / "audit"
    adult_csvs(work / "data")
    (work / "audit.yaml").write_text(SPEC % HUB_ID)
    snapshot = minilm_cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / COMMIT
    (snapshot / "vocab.txt").unlink()
    (snapshot / "vocab.txt").symlink_to(tmp_path / "audit" / "data" / "train.csv")
    assert main(["run", str(work / "audit.yaml")]) == 3
    err = capsys.readouterr().err
    assert "vocab.txt" in err and "symbolic link" in err


def test_python_api_with_a_dict_spec_and_dataframes(tiny_bert, tmp_path):
    """Exactly as a notebook would: a fresh interpreter, a dict spec, DataFrames per split."""
    code = f"""
import os, logging
before = dict(os.environ)
import transfer_audit as ta
from transfer_audit.builtin_data import load_builtin
df = load_builtin("adult", "all").sample(400, random_state=1).reset_index(drop=True)
spec = {{"name": "api", "task": "tabular-classification",
        "data": {{"template": "{{age}} year old {{sex}}, {{race}}, works as {{occupation}}", "label": "income",
                 "sensitive": ["sex"], "current": {{"sample": 100}}}},
        "model": {{"base": {str(tiny_bert)!r}, "finetune": {{"epochs": 1, "learning_rate": 1e-3, "max_length": 32}}}},
        "checks": {{"performance": {{}}, "bias": {{"counterfactual": False}}}}}}
frames = {{"train": df[:200], "reference": df[200:300], "current": df[300:]}}
r = ta.run(spec, data=frames, out={str(tmp_path / "runs")!r})
print(r.verdict)
assert r.exit_code in (0, 1, 4) and r.report_path.is_file() and r.run_dir.is_dir()
m = r.measurements
assert len(m) > 10 and {{"metric", "model", "value", "ci_low", "ci_high", "n"}} <= set(m.columns)
assert dict(os.environ) == before, "the run left the environment changed"
res = r.results
assert res["data"]["current"]["n"] == 100 and res["data"]["train"]["source"] == "dataframe:train"
"""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() in ("PASS", "WARN", "FAIL", "INCONCLUSIVE")
    assert "[transfer-audit]" not in proc.stderr and "fine-tuning" not in proc.stderr   # a library logs, never prints


def test_api_rejects_a_split_given_twice(tiny_bert, tmp_path):
    import pandas as pd

    import transfer_audit as ta
    from transfer_audit.errors import InputError

    spec = {"name": "x", "data": {"train": {"builtin": "adult"}, "reference": {"builtin": "adult"},
                                  "current": {"builtin": "adult"}, "text": "t", "label": "y"},
            "model": {"base": str(tiny_bert)}}
    with pytest.raises(InputError, match="data.train.builtin must be absent"):
        ta.run(spec, data={"train": pd.DataFrame({"t": ["a"], "y": ["b"]})}, out=tmp_path)
    with pytest.raises(InputError, match="not one of train"):
        ta.run(spec, data={"test": pd.DataFrame()}, out=tmp_path)
