"""One contract over every registered check, on a tiny real evidence fixture (tiny random BERT, Adult rows):
it returns a CheckResult whose metrics are all declared, its results round-trip through JSON, a rerun with
the same seed is identical, bad options get the uniform message, and every output template renders it.
A new check that breaks the contract fails here before anything else."""
from __future__ import annotations

import json
import math

import pytest
import toy_check
from conftest import adult_spec, write_spec

from transfer_audit.checks import CHECKS, CheckDef, available_metrics
from transfer_audit.errors import MSG_BAD_VALUE, MSG_UNKNOWN_KEY, MSG_WRONG_TYPE, InputError
from transfer_audit.options import option_names
from transfer_audit.results import CheckResult, Status
from transfer_audit.stats import StatsConfig
from transfer_audit.validate import Section

STATS = StatsConfig(n_boot=200)
# Smaller than the defaults so the contract stays fast; parsed like any spec's options.
FAST_OPTIONS = {"attribution": {"samples": 4, "quality_samples": 1}, "bias": {"counterfactual_samples": 10},
                "drift": {"permutations": 500, "evidently_embeddings": False}}


@pytest.fixture(scope="module")
def audit_parts(tiny_bert, tmp_path_factory):
    """spec, policy, dataset, evidence, models and model info of a tiny audit, built by the real pipeline."""
    from transfer_audit.data import load_dataset
    from transfer_audit.evidence import build_evidence
    from transfer_audit.policy import load_policy
    from transfer_audit.spec import parse_spec
    from transfer_audit.tasks import modality_for

    folder = tmp_path_factory.mktemp("contract")
    spec_dict = adult_spec(str(tiny_bert), folder / "runs")
    for split, n in (("train", 160), ("reference", 120), ("current", 120)):
        spec_dict["data"][split]["sample"] = n
    spec_dict["data"]["reference"]["skip"] = 160
    spec = parse_spec(write_spec(folder, spec_dict))
    modality = modality_for(spec)
    dataset = load_dataset(spec.data, spec.seed, str(spec.source_file), modality)
    models, info = modality.prepare_models(spec, dataset, spec.output / ".cache", {})
    evidence, models = build_evidence(dataset, models, info, spec.output / ".cache", spec.seed, STATS.seed, {})
    return spec, load_policy(spec.policy), dataset, evidence, models, info


def _run(check: CheckDef, config, evidence, models):
    kwargs = {"models": models} if check.needs_models else {}
    return check.run(evidence, config, STATS, **kwargs)


def _record(result: CheckResult) -> list:
    return [result.to_dict(), [m.to_dict() for m in result.measurements]]


def assert_contract(name: str, check: CheckDef, parts) -> CheckResult:
    spec, policy, dataset, evidence, models, info = parts
    config = check.parse_config(Section(FAST_OPTIONS.get(name, {}), "audit.yaml", f"checks.{name}",
                                        check.option_names))
    result = _run(check, config, evidence, models)

    assert isinstance(result, CheckResult) and result.check == name
    assert result.measurements, f"{name} measured nothing on the fixture"
    undeclared = {m.metric for m in result.measurements} - set(check.metrics)
    assert not undeclared, f"{name} emits metrics it does not declare: {sorted(undeclared)}"
    for m in result.measurements:
        assert isinstance(m.status, Status) and m.check == name and isinstance(m.n, int) and m.n >= 0
        assert m.value is None or math.isfinite(m.value) or m.status is not Status.MEASURED, m
        if m.ci is not None and m.value is not None:
            assert m.ci[0] <= m.ci[1], m

    record = _record(result)
    assert json.loads(json.dumps(record, allow_nan=False)) == record, f"{name}: results do not round-trip"
    assert _record(_run(check, config, evidence, models)) == record, f"{name}: a rerun with the same seed differs"

    with pytest.raises(InputError) as e:
        check.parse_config(Section({"no_such_option": 1}, "audit.yaml", f"checks.{name}", check.option_names))
    assert e.value.code == MSG_UNKNOWN_KEY.code and f"checks.{name}" in e.value.message
    for key in sorted(option_names(check.config)):
        with pytest.raises(InputError) as e:
            check.parse_config(Section({key: {"not": "valid"}}, "audit.yaml", f"checks.{name}", check.option_names))
        assert e.value.code in (MSG_WRONG_TYPE.code, MSG_BAD_VALUE.code), (name, key)
        assert f"checks.{name}.{key}" in e.value.message and "audit.yaml" in e.value.message

    _assert_renders(name, result, parts)
    return result


def _assert_renders(name: str, result: CheckResult, parts) -> None:
    from transfer_audit.gate import gate
    from transfer_audit.outputs import assemble_results
    from transfer_audit.render import ARTIFACTS, render_one

    spec, policy, dataset, evidence, models, info = parts
    decision = gate(list(result.measurements), {name}, policy)
    results = json.loads(json.dumps(assemble_results(spec, policy, dataset, evidence, models, info, [result],
                                                     decision)))
    for artifact in ARTIFACTS:
        text = render_one(artifact, results)
        assert text.strip(), (name, artifact)
    assert f'id="check-{name}"' in render_one("report.html", results)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_registered_check_keeps_the_contract(name, audit_parts):
    assert_contract(name, CHECKS[name], audit_parts)


TOY = CheckDef(name="toy", description="share of positive predictions", metrics=toy_check.METRICS,
               config=toy_check.ToyConfig, run=toy_check.run)


def test_a_new_check_needs_one_module_and_one_registry_entry(audit_parts, monkeypatch, tmp_path, tiny_bert):
    from transfer_audit.policy import parse_policy_data
    from transfer_audit.spec import parse_spec

    monkeypatch.setitem(CHECKS, "toy", TOY)
    assert "toy.positive_share" in available_metrics()
    assert_contract("toy", TOY, audit_parts)
    spec_dict = adult_spec(str(tiny_bert), tmp_path / "runs", checks={"toy": {"min_rows": 5}})
    assert parse_spec(write_spec(tmp_path, spec_dict)).checks["toy"] == toy_check.ToyConfig(min_rows=5)
    rule = {"id": "toy-rule", "metric": "toy.positive_share", "max": 0.9}
    assert parse_policy_data({"rules": [rule]}, "p.yaml").rules[0].metric == "toy.positive_share"


def test_the_contract_fails_a_check_that_breaks_it(audit_parts):
    """A check that emits an undeclared metric, or one whose rerun differs, is caught."""
    from dataclasses import replace

    import numpy as np

    from transfer_audit.results import Measurement

    def undeclared(evidence, config, stats):
        return CheckResult("toy", Status.MEASURED, (Measurement("toy", "toy.surprise", "adapted", 0.5, None, 1),))

    with pytest.raises(AssertionError, match="does not declare"):
        assert_contract("toy", replace(TOY, run=undeclared), audit_parts)

    rng = np.random.default_rng()

    def unseeded(evidence, config, stats):
        return CheckResult("toy", Status.MEASURED, (Measurement("toy", "toy.positive_share", "adapted",
                                                                float(rng.random()), None, 1),))

    with pytest.raises(AssertionError, match="rerun"):
        assert_contract("toy", replace(TOY, run=unseeded), audit_parts)
