"""Bias check: pinned to fairlearn, insufficient groups, multiclass, decomposition, and properties."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_evidence
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer_audit.checks import bias
from transfer_audit.checks.base import StatsConfig
from transfer_audit.results import Status

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
    preds = {"adapted": pred, "base_probe": roles.get("base_probe", pred),
             "no_transfer": roles.get("no_transfer", pred)}
    ev = make_evidence(frame, y, preds, classes=classes, sensitive=sensitive)
    return bias.run(ev, CFG, stats)


def test_point_estimates_equal_fairlearn():
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equal_opportunity_difference,
        equalized_odds_difference,
    )
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
    """Every disparity is the worst class of fairlearn's binary metric computed one-vs-rest."""
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equal_opportunity_difference,
        equalized_odds_difference,
    )
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(0)
    n = 900
    frame = pd.DataFrame({"g": rng.choice(["a", "b", "c"], n)})
    y = rng.integers(0, 3, n)
    pred = np.where(frame.g == "a", y, np.where(frame.g == "b", rng.integers(0, 3, n), np.minimum(y + 1, 2)))
    result = _run(frame, y, pred, sensitive=("g",), classes=("x", "y", "z"))
    sf = frame["g"]

    def per_class(f):
        return [f((y == c).astype(int), (pred == c).astype(int), sensitive_features=sf) for c in range(3)]

    expected = {"demographic_parity_difference": max(per_class(demographic_parity_difference)),
                "demographic_parity_ratio": min(per_class(demographic_parity_ratio)),
                "equalized_odds_difference": max(per_class(equalized_odds_difference)),
                "equal_opportunity_difference": max(per_class(equal_opportunity_difference)),
                "accuracy_difference": MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred,
                                                   sensitive_features=sf).difference()}
    for d, want in expected.items():
        assert _value(result, f"bias.{d}", "g").value == pytest.approx(want, abs=1e-12), d
    rates = {(m.group["value"], m.details["class"]): m.value for m in result.measurements
             if m.metric == "bias.group_selection_rate" and m.model == "adapted"}
    for g_ in ("a", "b", "c"):
        for c in range(3):
            assert rates[(g_, c)] == pytest.approx(np.mean(pred[frame.g == g_] == c))
    tpr = {m.group["value"]: m.value for m in result.measurements
           if m.metric == "bias.group_tpr" and m.model == "adapted"}
    assert tpr["c"] == pytest.approx(np.mean(pred[(frame.g == "c") & (y == 2)] == 2))     # the last class
    assert any("one-vs-rest" in note for note in result.notes)


def test_every_group_gets_every_record_and_a_tiny_all_wrong_group_never_passes():
    """The issue's case: a 5-row group whose every prediction is wrong slipped through every per-group rule."""
    from transfer_audit.gate import gate
    from transfer_audit.policy import parse_policy_data

    frame, y, pred = _adult_like(400, seed=3)
    frame.loc[:4, "race"] = "Tiny"
    y[:5] = [1, 1, 0, 0, 1]
    pred[:5] = 1 - y[:5]
    stats = StatsConfig(n_boot=200, min_group_n=30, min_pos=10, min_neg=10)
    result = _run(frame, y, pred, sensitive=("race",), stats=stats)
    for metric in ("bias.group_selection_rate", "bias.group_accuracy", "bias.group_tpr", "bias.group_fpr"):
        for role in ("adapted", "base_probe", "no_transfer"):
            groups = {m.group["value"]: m for m in result.measurements if m.metric == metric and m.model == role}
            assert set(groups) == {"White", "Black", "Asian", "Tiny"}, (metric, role)
            tiny = groups["Tiny"]
            assert tiny.status is Status.INSUFFICIENT_DATA and tiny.value is None
            assert tiny.details["missing_rows"]["Tiny"] >= 25
    intro = [m for m in result.measurements if m.metric == "bias.introduced"]
    assert intro and all("Tiny" in m.details["insufficient_groups"] for m in intro)
    rules = [{"id": "acc", "metric": "bias.group_accuracy", "min": 0.0},
             {"id": "tpr", "metric": "bias.group_tpr", "min": 0.0},
             {"id": "fpr", "metric": "bias.group_fpr", "max": 1.0},
             {"id": "intro", "metric": "bias.introduced", "max": 1.0}]
    decision = gate(result.measurements, {"bias"}, parse_policy_data({"rules": rules}, "p.yaml"))
    for rule_id in ("acc", "tpr", "fpr", "intro"):
        statuses = {o.status for o in decision.outcomes if o.rule.id == rule_id}
        assert Status.INCONCLUSIVE in statuses, rule_id                  # even the loosest bound cannot pass
    tiny_outcomes = [o for o in decision.outcomes if (o.group or {}).get("value") == "Tiny"]
    assert tiny_outcomes and all(o.status is Status.INCONCLUSIVE and "25 more rows of Tiny" in o.to_decide["text"]
                                 for o in tiny_outcomes)


def test_a_rate_lacking_positives_is_insufficient_while_the_other_rate_is_measured():
    frame, y, pred = _adult_like(600, seed=4)
    black = (frame.race == "Black").to_numpy()
    y[black] = 0
    y[np.flatnonzero(black)[:3]] = 1                       # 3 positives: TPR cannot be judged, FPR can
    stats = StatsConfig(n_boot=200, min_group_n=30, min_pos=10, min_neg=10)
    result = _run(frame, y, pred, sensitive=("race",), stats=stats)

    def rec(metric):
        return next(m for m in result.measurements if m.metric == metric and m.model == "adapted"
                    and m.group == {"feature": "race", "value": "Black"})

    assert rec("bias.group_tpr").status is Status.INSUFFICIENT_DATA and rec("bias.group_tpr").n == 3
    assert "need 10" in rec("bias.group_tpr").details["reason"]
    assert rec("bias.group_fpr").status is Status.MEASURED and rec("bias.group_accuracy").status is Status.MEASURED
    assert "Black" in _value(result, "bias.equal_opportunity_difference", "race").details["insufficient_groups"]
    assert "insufficient_groups" not in (_value(result, "bias.demographic_parity_difference", "race").details or {})


def test_corrected_interval_of_two_groups_is_agresti_caffo():
    """Two groups: the upper end is the Agresti-Caffo 95% bound of |p1 - p2|, the lower end its bound at the
    Bonferroni level over the two directions (97.5%)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"g": ["a"] * 60 + ["b"] * 240})
    pred = np.r_[rng.random(60) < 0.5, rng.random(240) < 0.25].astype(int)
    result = _run(frame, rng.integers(0, 2, 300), pred, sensitive=("g",), stats=StatsConfig(n_boot=200))
    c = _value(result, "bias.demographic_parity_difference", "g").details["corrected"]
    xa, xb = int(pred[:60].sum()), int(pred[60:].sum())
    _, hi = confint_proportions_2indep(xa, 60, xb, 240, method="agresti-caffo", alpha=0.05)
    lo, _ = confint_proportions_2indep(xa, 60, xb, 240, method="agresti-caffo", alpha=0.025)
    assert xa / 60 > xb / 240
    assert c["ci"][1] == pytest.approx(hi, abs=1e-9) and c["ci"][0] == pytest.approx(lo, abs=1e-9)
    assert c["ci"][0] <= c["value"] <= c["ci"][1]


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

    def rate(r, v):
        return next(m.value for m in r.measurements if m.metric == "bias.group_selection_rate"
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
