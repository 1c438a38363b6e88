"""The gate's decision modes and the policy's strict parsing."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer_audit.errors import MSG_UNKNOWN_KEY, InputError
from transfer_audit.gate import gate
from transfer_audit.policy import parse_policy_data
from transfer_audit.results import Measurement, Status


def _m(value, ci=None, metric="bias.demographic_parity_difference", model="adapted", **kw):
    return Measurement("bias", metric, model, value, ci, 100, kw.pop("status", Status.MEASURED), {"feature": "sex"}, **kw)


def _rule(**kw):
    base = {"id": "r", "metric": "bias.demographic_parity_difference", "max": 0.1}
    base.update(kw)
    return parse_policy_data({"rules": [base]}, "p.yaml")


@pytest.mark.parametrize("ci,mode,expected", [
    ((0.12, 0.20), "harm", Status.FAIL),          # whole CI above the bound: evidence of harm
    ((0.05, 0.15), "harm", Status.PASS),          # straddles: no evidence of harm
    ((0.01, 0.08), "harm", Status.PASS),
    ((0.12, 0.20), "safety", Status.FAIL),
    ((0.05, 0.15), "safety", Status.INCONCLUSIVE),  # straddles: safety not shown
    ((0.01, 0.08), "safety", Status.PASS),
])
def test_ci_decision_modes(ci, mode, expected):
    policy = _rule(decide_on="ci", mode=mode)
    assert gate([_m(sum(ci) / 2, ci)], {"bias"}, policy).outcomes[0].status is expected


def test_point_mode_ignores_ci_and_warn_severity_downgrades():
    policy = _rule(severity="warn")
    decision = gate([_m(0.15, (0.01, 0.3))], {"bias"}, policy)
    assert decision.outcomes[0].status is Status.WARN and decision.verdict is Status.WARN
    assert int(decision.exit_code) == 0


def test_verdict_and_exit_codes():
    fail = gate([_m(0.5)], {"bias"}, _rule())
    assert fail.verdict is Status.FAIL and int(fail.exit_code) == 1
    inc = gate([_m(None, status=Status.INSUFFICIENT_DATA)], {"bias"}, _rule())
    assert inc.verdict is Status.INCONCLUSIVE and int(inc.exit_code) == 4
    allowed = parse_policy_data({"defaults": {"allow_inconclusive": True}, "rules": [
        {"id": "r", "metric": "bias.demographic_parity_difference", "max": 0.1}]}, "p.yaml")
    assert int(gate([_m(None, status=Status.INSUFFICIENT_DATA)], {"bias"}, allowed).exit_code) == 0


def test_rule_for_a_check_not_run_is_skipped_and_missing_measurement_inconclusive():
    assert gate([], set(), _rule()).outcomes[0].status is Status.SKIPPED
    assert gate([], {"bias"}, _rule()).outcomes[0].status is Status.INCONCLUSIVE


def test_relative_bound_reads_the_other_model():
    policy = parse_policy_data({"rules": [{"id": "r", "metric": "performance.accuracy",
                                           "min": {"model": "no_transfer", "offset": -0.01}}]}, "p.yaml")
    ms = [Measurement("performance", "performance.accuracy", "adapted", 0.80, None, 100),
          Measurement("performance", "performance.accuracy", "no_transfer", 0.85, None, 100)]
    out = gate(ms, {"performance"}, policy).outcomes[0]
    assert out.bound == pytest.approx(0.84) and out.status is Status.FAIL
    assert str(policy.rules[0].condition) == ">= no_transfer - 0.01"


def test_waiver_applies_until_it_expires():
    raw = {"rules": [{"id": "r", "metric": "bias.demographic_parity_difference", "max": 0.1}],
           "waivers": [{"rule": "r", "reason": "known issue, fix in v2", "expires": "2027-01-31"}]}
    policy = parse_policy_data(raw, "p.yaml")
    before = gate([_m(0.5)], {"bias"}, policy, today=dt.date(2027, 1, 1))
    after = gate([_m(0.5)], {"bias"}, policy, today=dt.date(2027, 2, 1))
    assert before.verdict is Status.PASS and before.outcomes[0].waived
    assert after.verdict is Status.FAIL


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1), st.floats(0, 0.2), st.floats(0.01, 0.5), st.floats(0, 0.3),
       st.sampled_from(["point", "ci"]), st.sampled_from(["harm", "safety"]))
def test_tightening_a_threshold_never_turns_fail_into_pass(value, half, bound, tighten, decide_on, mode):
    ci = (value - half, value + half)
    loose = gate([_m(value, ci)], {"bias"}, _rule(max=bound + tighten, decide_on=decide_on, mode=mode)).outcomes[0]
    tight = gate([_m(value, ci)], {"bias"}, _rule(max=bound, decide_on=decide_on, mode=mode)).outcomes[0]
    rank = {Status.PASS: 0, Status.INCONCLUSIVE: 1, Status.FAIL: 2}
    assert rank[tight.status] >= rank[loose.status]


def test_unknown_metric_gets_did_you_mean():
    with pytest.raises(InputError) as e:
        parse_policy_data({"rules": [{"id": "r", "metric": "bias.demographic_parity_diference", "max": 1}]}, "p.yaml")
    assert "did you mean 'bias.demographic_parity_difference'" in e.value.message and "p.yaml" in e.value.message


def test_unknown_key_uses_the_named_template():
    with pytest.raises(InputError) as e:
        parse_policy_data({"rules": [{"id": "r", "metric": "performance.accuracy", "min": 0.5, "severty": "warn"}]},
                          "p.yaml")
    assert e.value.template is MSG_UNKNOWN_KEY and "did you mean 'severity'" in e.value.message


def test_shipped_policies_lint(capsys):
    from pathlib import Path

    from transfer_audit.cli import main

    for path in sorted((Path(__file__).resolve().parent.parent / "policies").glob("*.yaml")):
        assert main(["policy", "lint", str(path)]) == 0, path
