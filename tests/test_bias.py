"""Bias check: pinned to fairlearn, insufficient groups, multiclass, decomposition, and properties."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer_audit.checks import bias
from transfer_audit.checks.base import StatsConfig
from transfer_audit.results import Status

from conftest import make_evidence

ALL_GROUPS = StatsConfig(n_boot=200, min_group_n=1, min_pos=0, min_neg=0)
CFG = bias.BiasConfig(counterfactual=False)


def _adult_like(n=600, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"sex": rng.choice(["Male", "Female"], n, p=[0.65, 0.35]),
                          "race": rng.choice(["White", "Black", "Asian"], n, p=[0.7, 0.2, 0.1])})
    y = (rng.random(n) < np.where(frame.sex == "Male", 0.35, 0.15)).astype(int)
    pred = np.where(rng.random(n) < 0.8, y, 1 - y)
    pred = np.where((frame.sex == "Female") & (rng.random(n) < 0.3), 0, pred)
    return frame, y, pred


def _value(result, metric, feature, model="adapted"):
    return next(m for m in result.measurements if m.metric == metric and m.model == model
                and m.group == {"feature": feature})


def _run(frame, y, pred, sensitive=("sex", "race"), stats=ALL_GROUPS, classes=("neg", "pos"), **roles):
    preds = {"adapted": pred, "base_probe": roles.get("base_probe", pred), "no_transfer": roles.get("no_transfer", pred)}
    ev = make_evidence(frame, y, preds, classes=classes, sensitive=sensitive)
    return bias.run(ev, CFG, stats)


def test_point_estimates_equal_fairlearn():
    from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                                   equal_opportunity_difference, equalized_odds_difference)
    from sklearn.metrics import accuracy_score

    frame, y, pred = _adult_like()
    result = _run(frame, y, pred)
    for feature in ("sex", "race"):
        sf = frame[feature]
        expected = {
            "bias.demographic_parity_difference": demographic_parity_difference(y, pred, sensitive_features=sf),
            "bias.demographic_parity_ratio": demographic_parity_ratio(y, pred, sensitive_features=sf),
            "bias.equalized_odds_difference": equalized_odds_difference(y, pred, sensitive_features=sf),
            "bias.equal_opportunity_difference": equal_opportunity_difference(y, pred, sensitive_features=sf),
            "bias.accuracy_difference": MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred,
                                                    sensitive_features=sf).difference(),
        }
        for metric, want in expected.items():
            assert _value(result, metric, feature).value == pytest.approx(want, abs=1e-9), (feature, metric)
    inter = _value(result, "bias.demographic_parity_difference", "sex x race")
    sf = frame[["sex", "race"]]
    assert inter.value == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=sf), abs=1e-9)


def test_bootstrap_interval_close_to_fairlearn_bootstrap():
    from fairlearn.metrics import MetricFrame, selection_rate

    frame, y, pred = _adult_like(400, seed=2)
    mf = MetricFrame(metrics=selection_rate, y_true=y, y_pred=pred, sensitive_features=frame["sex"],
                     n_boot=400, ci_quantiles=[0.025, 0.975], random_state=0)
    lo, hi = mf.difference_ci()
    ours = _value(_run(frame, y, pred, stats=StatsConfig(n_boot=400, min_group_n=1, min_pos=0, min_neg=0)),
                  "bias.demographic_parity_difference", "sex")
    assert ours.ci[0] == pytest.approx(lo, abs=0.03) and ours.ci[1] == pytest.approx(hi, abs=0.03)


def test_small_group_is_insufficient_data_and_never_passes():
    from transfer_audit.gate import gate
    from transfer_audit.policy import parse_policy_data

    frame, y, pred = _adult_like(300)
    frame.loc[:4, "race"] = "Tiny"          # 5 rows
    stats = StatsConfig(n_boot=200, min_group_n=30, min_pos=0, min_neg=0)
    result = _run(frame, y, pred, stats=stats)
    tiny = [m for m in result.measurements if m.group == {"feature": "race", "value": "Tiny"}]
    assert tiny and all(m.status is Status.INSUFFICIENT_DATA and m.value is None for m in tiny)
    dpd = _value(result, "bias.demographic_parity_difference", "race")
    assert "Tiny" in dpd.details["insufficient_groups"]
    policy = parse_policy_data({"rules": [{"id": "dp", "metric": "bias.demographic_parity_difference",
                                           "max": 0.99, "group": "race"}]}, "p.yaml")
    outcome = gate(result.measurements, {"bias"}, policy).outcomes[0]
    assert outcome.status is Status.INCONCLUSIVE            # would pass on its number alone
    ignore = parse_policy_data({"defaults": {"on_insufficient": "ignore"}, "rules": [
        {"id": "dp", "metric": "bias.demographic_parity_difference", "max": 0.99, "group": "race"}]}, "p.yaml")
    assert gate(result.measurements, {"bias"}, ignore).outcomes[0].status is Status.PASS


def test_fewer_than_two_sufficient_groups_gives_no_number():
    frame, y, pred = _adult_like(100)
    frame["sex"] = ["Male"] * 95 + ["Female"] * 5
    result = _run(frame, y, pred, sensitive=("sex",), stats=StatsConfig(n_boot=100, min_group_n=30))
    dpd = _value(result, "bias.demographic_parity_difference", "sex")
    assert dpd.status is Status.INSUFFICIENT_DATA and dpd.value is None


def test_multiclass_one_vs_rest_worst_class():
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"g": rng.choice(["a", "b"], n)})
    y = rng.integers(0, 3, n)
    pred = np.where(frame.g == "a", y, rng.integers(0, 3, n))
    result = _run(frame, y, pred, sensitive=("g",), classes=("x", "y", "z"))
    dpd = _value(result, "bias.demographic_parity_difference", "g").value
    rates = [[np.mean(pred[frame.g == g] == c) for g in ("a", "b")] for c in range(3)]
    assert dpd == pytest.approx(max(max(r) - min(r) for r in rates))
    assert any("one-vs-rest" in note for note in result.notes)


def test_decomposition_is_paired_difference_of_roles():
    frame, y, pred = _adult_like()
    fair = y.copy()
    result = _run(frame, y, pred, sensitive=("sex",), base_probe=fair, no_transfer=fair)
    intro = next(m for m in result.measurements if m.metric == "bias.introduced"
                 and m.group == {"feature": "sex", "disparity": "demographic_parity_difference"})
    a = _value(result, "bias.demographic_parity_difference", "sex").value
    b = _value(result, "bias.demographic_parity_difference", "sex", "base_probe").value
    assert intro.value == pytest.approx(a - b)
    assert intro.details["reading"] == "descriptive, not causal"
    inh = next(m for m in result.measurements if m.metric == "bias.inherited"
               and m.group == {"feature": "sex", "disparity": "demographic_parity_difference"})
    assert inh.value == pytest.approx(0.0) and inh.ci == (0.0, 0.0)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_renaming_groups_permutes_results(seed):
    frame, y, pred = _adult_like(200, seed)
    renamed = frame.assign(sex=frame.sex.map({"Male": "zz", "Female": "aa"}))
    a = _run(frame, y, pred, sensitive=("sex",))
    b = _run(renamed, y, pred, sensitive=("sex",))
    for metric in ("bias.demographic_parity_difference", "bias.equalized_odds_difference"):
        assert _value(a, metric, "sex").value == pytest.approx(_value(b, metric, "sex").value)
    rate = lambda r, v: next(m.value for m in r.measurements if m.metric == "bias.group_selection_rate"
                             and m.model == "adapted" and m.group == {"feature": "sex", "value": v})
    assert rate(a, "Male") == pytest.approx(rate(b, "zz")) and rate(a, "Female") == pytest.approx(rate(b, "aa"))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0, 1]))
def test_constant_predictor_has_zero_selection_gap(seed, constant):
    frame, y, _ = _adult_like(200, seed)
    result = _run(frame, y, np.full(200, constant), sensitive=("sex", "race"))
    for feature in ("sex", "race", "sex x race"):
        assert _value(result, "bias.demographic_parity_difference", feature).value == 0.0


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_duplicating_rows_leaves_rates_unchanged(seed):
    frame, y, pred = _adult_like(150, seed)
    a = _run(frame, y, pred, sensitive=("sex",))
    b = _run(pd.concat([frame, frame]), np.r_[y, y], np.r_[pred, pred], sensitive=("sex",))
    for metric in bias.DISPARITIES:
        assert _value(a, f"bias.{metric}", "sex").value == pytest.approx(_value(b, f"bias.{metric}", "sex").value)
