"""The gate's decision modes and the policy's strict parsing."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer_audit.errors import MSG_UNKNOWN_KEY, InputError
from transfer_audit.gate import gate
from transfer_audit.policy import DecideOn, Mode, WhenMissing, load_policy, parse_policy_data
from transfer_audit.results import Measurement, Status


def _m(value, ci=None, metric="bias.demographic_parity_difference", model="adapted", **kw):
    return Measurement("bias", metric, model, value, ci, 100, kw.pop("status", Status.MEASURED), {"feature": "sex"},
                       **kw)


def _rule(**kw):
    base = {"id": "r", "metric": "bias.demographic_parity_difference", "max": 0.1}
    base.update(kw)
    return parse_policy_data({"rules": [base]}, "p.yaml")


@pytest.mark.parametrize("value,ci,mode,expected", [
    (0.16, (0.12, 0.20), "three_way", Status.FAIL),          # whole interval above the bound
    (0.10, (0.05, 0.15), "three_way", Status.INCONCLUSIVE),  # straddles: neither side shown
    (0.05, (0.01, 0.08), "three_way", Status.PASS),          # whole interval inside
    (0.16, (0.12, 0.20), "harm", Status.FAIL),
    (0.08, (0.05, 0.15), "harm", Status.PASS),               # straddles, estimate inside: no evidence of harm
    (0.12, (0.05, 0.15), "harm", Status.INCONCLUSIVE),       # straddles, estimate past: never a pass
    (0.05, (0.01, 0.08), "harm", Status.PASS),
    (0.10, (0.05, 0.15), "safety", Status.INCONCLUSIVE),     # the earlier name of three_way
])
def test_ci_decision_modes(value, ci, mode, expected):
    policy = _rule(decide_on="ci", mode=mode)
    assert gate([_m(value, ci)], {"bias"}, policy).outcomes[0].status is expected


def test_three_way_on_the_interval_is_the_default():
    rule = _rule().rules[0]
    assert rule.decide_on is DecideOn.CI and rule.mode is Mode.THREE_WAY
    assert rule.when_missing is WhenMissing.INCONCLUSIVE
    assert gate([_m(0.05, (0.01, 0.15))], {"bias"}, _rule()).outcomes[0].status is Status.INCONCLUSIVE


def test_point_mode_ignores_ci_and_warn_severity_downgrades():
    policy = _rule(severity="warn", decide_on="point")
    decision = gate([_m(0.15, (0.01, 0.3))], {"bias"}, policy)
    assert decision.outcomes[0].status is Status.WARN and decision.verdict is Status.WARN
    assert int(decision.exit_code) == 0
    assert gate([_m(0.05, (0.01, 0.3))], {"bias"}, _rule(decide_on="point")).outcomes[0].status is Status.PASS


def test_verdict_and_exit_codes():
    fail = gate([_m(0.5, (0.4, 0.6))], {"bias"}, _rule())
    assert fail.verdict is Status.FAIL and int(fail.exit_code) == 1
    inc = gate([_m(None, status=Status.INSUFFICIENT_DATA)], {"bias"}, _rule())
    assert inc.verdict is Status.INCONCLUSIVE and int(inc.exit_code) == 4
    allowed = parse_policy_data({"defaults": {"allow_inconclusive": True}, "rules": [
        {"id": "r", "metric": "bias.demographic_parity_difference", "max": 0.1}]}, "p.yaml")
    assert int(gate([_m(None, status=Status.INSUFFICIENT_DATA)], {"bias"}, allowed).exit_code) == 0
    error = gate([_m(None, status=Status.ERROR, details={"reason": "boom"})], {"bias"}, _rule())
    assert error.outcomes[0].status is Status.ERROR and error.verdict is Status.INCONCLUSIVE


def test_missing_evidence_is_inconclusive_with_a_reason_unless_the_rule_opts_out():
    not_run = gate([], set(), _rule())
    o = not_run.outcomes[0]
    assert o.status is Status.INCONCLUSIVE and not_run.verdict is Status.INCONCLUSIVE
    assert "did not run" in o.reason and o.to_decide["text"]
    why = "no sensitive column declared (data.sensitive): bias rules cannot be decided"
    o = gate([], set(), _rule(), missing={"bias": why}).outcomes[0]
    assert o.status is Status.INCONCLUSIVE and why in o.reason
    assert gate([], {"bias"}, _rule()).outcomes[0].status is Status.INCONCLUSIVE           # ran, measured nothing
    skipped = _m(None, status=Status.SKIPPED, details={"reason": "no identity terms occur"})
    o = gate([skipped], {"bias"}, _rule()).outcomes[0]
    assert o.status is Status.INCONCLUSIVE and "no identity terms occur" in o.reason
    opted = gate([], set(), _rule(when_missing="skip"))
    assert opted.outcomes[0].status is Status.SKIPPED and opted.verdict is Status.PASS
    assert opted.to_dict()["opted_out"] == ["r"] and "opted out" in opted.outcomes[0].reason


def test_a_family_is_decided_on_its_simultaneous_intervals():
    """Three groups of one feature: each is decided on the Bonferroni interval the check attached."""
    def group(value, ci, sim):
        return Measurement("bias", "bias.group_accuracy", "adapted", value, ci, 100, Status.MEASURED,
                           {"feature": "race", "value": str(value)},
                           {"simultaneous": {"family_size": 3, "level": 1 - 0.05 / 3, "ci": sim}})
    policy = parse_policy_data({"rules": [{"id": "acc", "metric": "bias.group_accuracy", "min": 0.7}]}, "p.yaml")
    ms = [group(0.80, (0.72, 0.88), (0.69, 0.90)),     # passes at 95% alone, not simultaneously
          group(0.85, (0.80, 0.90), (0.78, 0.92)),
          group(0.60, (0.52, 0.68), (0.50, 0.71))]     # fails at 95% alone, not simultaneously
    outcomes = gate(ms, {"bias"}, policy).outcomes
    assert [o.status for o in outcomes] == [Status.INCONCLUSIVE, Status.PASS, Status.INCONCLUSIVE]
    d = outcomes[0].to_dict()
    assert d["family_size"] == 3 and d["level"] == pytest.approx(1 - 0.05 / 3) and d["ci"] == [0.69, 0.90]
    bare = [Measurement(m.check, m.metric, m.model, m.value, m.ci, m.n, m.status, m.group) for m in ms]
    assert all(o.status is Status.INCONCLUSIVE and "simultaneous" in o.reason
               for o in gate(bare, {"bias"}, policy).outcomes)          # no adjusted interval: never decided
    one = parse_policy_data({"rules": [{"id": "acc", "metric": "bias.group_accuracy", "min": 0.7,
                                        "group": "race"}]}, "p.yaml")
    assert gate(ms[:1], {"bias"}, one).outcomes[0].status is Status.PASS     # a family of one: its own 95%


def test_the_corrected_interval_decides_and_a_point_past_the_bound_never_passes():
    corrected = {"corrected": {"value": 0.06, "ci": [0.02, 0.09]}}
    o = gate([_m(0.12, (0.08, 0.30), details=corrected)], {"bias"}, _rule()).outcomes[0]
    assert o.status is Status.INCONCLUSIVE and o.measured == 0.12 and "point estimate 0.12" in o.reason
    o = gate([_m(0.08, (0.04, 0.30), details=corrected)], {"bias"}, _rule()).outcomes[0]
    assert o.status is Status.PASS and o.basis == "bias-corrected" and o.ci == (0.02, 0.09)


def test_rows_to_decide_follow_the_interval_and_name_the_groups():
    # estimate 0.04, interval [0.0, 0.13] against 0.10: half-width 0.09 over distance 0.06 -> x2.25 the rows
    m = _m(0.04, (0.0, 0.13), details={"rows": {"upper": {"Female & Black": 40, "Male & White": 800},
                                                "lower": {"x": 1}}})
    o = gate([m], {"bias"}, _rule()).outcomes[0]
    assert o.status is Status.INCONCLUSIVE
    assert o.to_decide["factor"] == pytest.approx(2.25)
    assert o.to_decide["rows"] == {"Female & Black": 50, "Male & White": 1000}
    assert "50 more rows of Female & Black" in o.to_decide["text"]
    past = gate([_m(0.16, (0.07, 0.25))], {"bias"}, _rule()).outcomes[0]     # towards FAIL: lower end must rise
    assert past.to_decide["factor"] == pytest.approx((0.09 / 0.06) ** 2) and past.to_decide["rows"] == {"all": 130}
    small = _m(0.05, (0.01, 0.08), details={"insufficient_groups": ["Tiny"], "missing_rows": {"Tiny": 25}})
    o = gate([small], {"bias"}, _rule()).outcomes[0]
    assert o.status is Status.INCONCLUSIVE and "at least 25 more rows of Tiny" in o.to_decide["text"]


def test_relative_bound_reads_the_other_model():
    policy = parse_policy_data({"rules": [{"id": "r", "metric": "performance.accuracy",
                                           "min": {"model": "no_transfer", "offset": -0.01}}]}, "p.yaml")
    ms = [Measurement("performance", "performance.accuracy", "adapted", 0.80, (0.76, 0.83), 100),
          Measurement("performance", "performance.accuracy", "no_transfer", 0.85, None, 100)]
    out = gate(ms, {"performance"}, policy).outcomes[0]
    assert out.bound == pytest.approx(0.84) and out.status is Status.FAIL
    assert str(policy.rules[0].condition) == ">= no_transfer - 0.01"


def test_waiver_applies_until_it_expires():
    raw = {"rules": [{"id": "r", "metric": "bias.demographic_parity_difference", "max": 0.1}],
           "waivers": [{"rule": "r", "reason": "known issue, fix in v2", "expires": "2027-01-31"}]}
    policy = parse_policy_data(raw, "p.yaml")
    before = gate([_m(0.5, (0.4, 0.6))], {"bias"}, policy, today=dt.date(2027, 1, 1))
    after = gate([_m(0.5, (0.4, 0.6))], {"bias"}, policy, today=dt.date(2027, 2, 1))
    assert before.verdict is Status.PASS and before.outcomes[0].waived
    assert after.verdict is Status.FAIL


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1), st.floats(0, 0.2), st.floats(0.01, 0.5), st.floats(0, 0.3),
       st.sampled_from(["point", "ci"]), st.sampled_from(["harm", "three_way"]))
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


def test_shipped_policies_lint_and_decide_every_block_rule_three_ways(capsys):
    from pathlib import Path

    from transfer_audit.cli import main
    from transfer_audit.policy import Severity

    for path in sorted((Path(__file__).resolve().parent.parent / "policies").glob("*.yaml")):
        assert main(["policy", "lint", str(path)]) == 0, path
        for rule in load_policy(path).rules:
            if rule.severity is Severity.BLOCK:
                assert (rule.decide_on, rule.mode, rule.when_missing) == \
                    (DecideOn.CI, Mode.THREE_WAY, WhenMissing.INCONCLUSIVE), (path.name, rule.id)
