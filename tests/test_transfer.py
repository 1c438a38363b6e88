"""Transfer statistics: LogME, CKA (debiased, with its noise floor), the probe's corrected CV interval, paired
gains, and the default rules on negative transfer, forgetting and LogME against the TF-IDF control."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_evidence

from transfer_audit.checks import transfer
from transfer_audit.checks.base import StatsConfig
from transfer_audit.transfer_stats import cka_noise_floor, corrected_cv_interval, linear_cka, logme


def reference_logme(f: np.ndarray, y: np.ndarray) -> float:
    """LogME as published (You et al. 2021, Alg. 1), written with plain matrices instead of an eigenbasis."""
    f = f.astype(np.float64)
    n, d = f.shape
    ftf = f.T @ f
    sig = np.linalg.eigvalsh(ftf)
    scores = []
    for c in np.unique(y):
        t = (y == c).astype(np.float64)
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            a = alpha * np.eye(d) + beta * ftf
            m = beta * np.linalg.solve(a, f.T @ t)
            gamma = np.sum(beta * sig / (alpha + beta * sig))
            alpha_new = gamma / (m @ m + 1e-5)
            res = np.sum((t - f @ m) ** 2)
            beta_new = (n - gamma) / (res + 1e-5)
            done = abs(alpha_new / beta_new - alpha / beta) / (alpha / beta) < 0.01
            alpha, beta = alpha_new, beta_new
            if done:
                break
        a = alpha * np.eye(d) + beta * ftf
        m = beta * np.linalg.solve(a, f.T @ t)
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.linalg.slogdet(a)[1]
              - beta / 2 * np.sum((t - f @ m) ** 2) - alpha / 2 * (m @ m) - n / 2 * np.log(2 * np.pi))
        scores.append(ev / n)
    return float(np.mean(scores))


def test_logme_matches_reference_and_ranks_informative_features_first():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    informative = np.c_[np.eye(3)[y] * 2 + rng.normal(0, 0.7, (400, 3)), rng.normal(size=(400, 13))]
    noise = rng.normal(size=(400, 16))
    assert logme(informative, y) == pytest.approx(reference_logme(informative, y), rel=2e-3)
    assert logme(noise, y) == pytest.approx(reference_logme(noise, y), rel=2e-3)
    assert logme(informative, y) > logme(noise, y)


@pytest.mark.parametrize("debiased", [True, False])
def test_cka_properties(debiased):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert linear_cka(x, x, debiased) == pytest.approx(1.0)
    assert linear_cka(x, x @ q, debiased) == pytest.approx(1.0)            # orthogonal transform
    assert linear_cka(x, 7.5 * x, debiased) == pytest.approx(1.0)          # isotropic scaling
    assert linear_cka(x, rng.normal(size=(120, 16)), debiased) < 0.5


def reference_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased CKA as in Kornblith et al.'s reference code: unbiased HSIC via the centred, zero-diagonal Gram
    matrices with the 1/(n-2) column-mean correction (Székely and Rizzo's U-centring)."""
    def u_centre(g):
        n = g.shape[0]
        g = g.copy()
        np.fill_diagonal(g, 0.0)
        means = g.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        g -= means[:, None]
        g -= means[None, :]
        np.fill_diagonal(g, 0.0)
        return g

    kx, ky = u_centre(x @ x.T), u_centre(y @ y.T)
    return float(np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky)))


def test_debiased_cka_matches_the_reference_formula_and_tracks_a_real_change():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 30))
    partly = x @ rng.normal(size=(30, 30)) * 0.5 + rng.normal(size=(80, 30))
    assert linear_cka(x, partly) == pytest.approx(reference_debiased_cka(x, partly), rel=1e-9)
    assert 0.1 < linear_cka(x, partly) < 0.9


def test_debiased_cka_of_independent_representations_is_zero_and_under_its_noise_floor():
    """256 rows x 384 dims, as the check sees a MiniLM layer: the plain estimator scores two independent
    representations about 0.60; the debiased one has mean ~0 (within 3 standard errors), its null
    (rows shuffled) is centred at 0 too, and the value sits under its 95% noise floor as often as a 95%
    quantile should: exceedances within the 99th percentile of Binomial(reps, 0.05)."""
    from scipy.stats import binom

    reps, values, plain, above, null_means = 60, [], [], 0, []
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(size=(256, 384)), rng.normal(size=(256, 384))
        res = cka_noise_floor(a, b, 100, seed)
        values.append(res["cka"])
        plain.append(linear_cka(a, b, debiased=False))
        null_means.append(res["null_mean"])
        above += res["cka"] > res["noise_floor"]
    values = np.array(values)
    print(f"debiased mean {values.mean():.4f} (sd {values.std():.4f}), plain mean {np.mean(plain):.3f}, "
          f"above the floor {above}/{reps}")
    assert np.mean(plain) > 0.5
    assert abs(values.mean()) < 3 * values.std(ddof=1) / np.sqrt(reps) and abs(values.mean()) < 0.01
    assert abs(np.mean(null_means)) < 0.002
    assert above <= binom.ppf(0.99, reps, 0.05)
    related = cka_noise_floor(a, a + rng.normal(size=a.shape), 100, 0)
    assert related["cka"] > 0.4 > related["noise_floor"] and related["p_value"] < 0.02


def test_probe_cv_interval_covers_the_expected_accuracy():
    """The interval claims the expected accuracy of the probe trained on (K-1)/K of the rows. Simulated with a
    nearest-centroid learner on two Gaussian classes, whose accuracy given its centroids is exact: the
    corrected interval covers the truth at least 93% of 1,000 runs (nominal 95%; Nadeau-Bengio is slightly
    conservative, 98% here), the old 1.96 sd / sqrt(K) interval about 85%."""
    from scipy.stats import norm

    d, k, n = 20, 5, 200
    w = np.zeros(d)
    w[:3] = [0.9, 0.6, 0.4]

    def draw(rng, m):
        y = rng.integers(0, 2, m)
        return rng.normal(size=(m, d)) + np.outer(2 * y - 1, w), y

    def centroids(x, y):
        return x[y == 0].mean(0), x[y == 1].mean(0)

    def accuracy(m0, m1):             # P(correct) of the rule "nearer centroid" under the true classes
        v, c = m1 - m0, (m0 + m1) / 2
        s = np.linalg.norm(v)
        return 0.5 * norm.cdf((w - c) @ v / s) + 0.5 * norm.cdf((w + c) @ v / s)

    rng = np.random.default_rng(0)
    truth = np.mean([accuracy(*centroids(*draw(rng, n * (k - 1) // k))) for _ in range(4000)])
    covered = 0
    for seed in range(1000):
        rng = np.random.default_rng(10_000 + seed)
        x, y = draw(rng, n)
        scores = []
        for fold in np.array_split(rng.permutation(n), k):
            train = np.ones(n, bool)
            train[fold] = False
            m0, m1 = centroids(x[train], y[train])
            scores.append(np.mean(((x[fold] - (m0 + m1) / 2) @ (m1 - m0) > 0) == y[fold]))
        lo, hi = corrected_cv_interval(scores, 0.95)
        covered += lo <= truth <= hi
    print(f"corrected interval coverage {covered / 1000:.3f}")
    assert covered / 1000 >= 0.93


def test_transferability_reports_the_corrected_interval_of_its_folds():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 2, n)
    emb = np.c_[y + rng.normal(0, 1, n), rng.normal(size=(n, 7))]
    ev = make_evidence(pd.DataFrame({"group": ["a"] * n}), y, {},
                       texts=[f"word{i % 7} text {v}" for i, v in enumerate(y)], embeddings={"base": {"train": emb}})
    (probe,) = [m for m in transfer.transferability(ev, transfer.TransferConfig(cv_folds=5), StatsConfig(n_boot=100))
                if m.metric == "transfer.linear_probe_cv_accuracy"]
    assert probe.ci == pytest.approx(corrected_cv_interval(probe.details["fold_scores"], 0.95))
    half = (probe.ci[1] - probe.ci[0]) / 2
    assert half > 1.96 * np.std(probe.details["fold_scores"], ddof=1) / np.sqrt(5)


def _evidence(adapted_acc, control_acc, n=800, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)

    def flip(acc):
        return np.where(rng.random(n) < acc, y, 1 - y)

    frame = pd.DataFrame({"group": rng.choice(["a", "b"], n)})
    return make_evidence(frame, y, {"adapted": flip(adapted_acc), "base_probe": flip(control_acc),
                                    "no_transfer": flip(control_acc)}), y


def test_paired_gain_matches_sklearn_a_row_bootstrap_and_statsmodels_mcnemar():
    """Independent references: sklearn for the point, a plain row-resampling bootstrap for the interval (within
    Monte Carlo error), statsmodels' exact McNemar for the p-value."""
    from sklearn.metrics import accuracy_score, f1_score
    from statsmodels.stats.contingency_tables import mcnemar

    ev, y = _evidence(0.8, 0.72, n=400)
    stats = StatsConfig(n_boot=4000)
    ms = transfer.gains(ev, transfer.TransferConfig(), stats)
    pa, pb = ev.pred("adapted", "current"), ev.pred("no_transfer", "current")
    (acc,) = [m for m in ms if m.metric == "transfer.gain_vs_no_transfer" and m.group["metric"] == "accuracy"]
    (f1,) = [m for m in ms if m.metric == "transfer.gain_vs_no_transfer" and m.group["metric"] == "macro_f1"]
    assert acc.value == pytest.approx(accuracy_score(y, pa) - accuracy_score(y, pb))
    assert f1.value == pytest.approx(f1_score(y, pa, average="macro") - f1_score(y, pb, average="macro"))
    rng = np.random.default_rng(123)
    idx = rng.integers(0, len(y), size=(4000, len(y)))
    rows = (pa[idx] == y[idx]).mean(1) - (pb[idx] == y[idx]).mean(1)
    lo, hi = np.quantile(rows, [0.025, 0.975])
    assert acc.ci[0] == pytest.approx(lo, abs=0.006) and acc.ci[1] == pytest.approx(hi, abs=0.006)
    table = [[np.sum((pa == y) & (pb == y)), np.sum((pa == y) & (pb != y))],
             [np.sum((pa != y) & (pb == y)), np.sum((pa != y) & (pb != y))]]
    assert acc.details["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    # accuracy and macro F1 are one family: each carries its interval at the Bonferroni level 1 - 0.05/2
    sim = acc.details["simultaneous"]
    assert sim["family_size"] == 2 and sim["level"] == pytest.approx(0.975)
    assert sim["ci"][0] < acc.ci[0] and sim["ci"][1] > acc.ci[1]


def test_forgetting_is_positive_when_the_adapted_encoder_lost_the_source_task():
    """Base embeddings separate the source labels, the adapted ones are noise: forgetting is the accuracy lost,
    with an interval above 0; identical encoders forget nothing."""
    from transfer_audit.data import Split

    rng = np.random.default_rng(0)
    n = 300
    ev, _ = _evidence(0.8, 0.8, n=n)
    y_src = rng.integers(0, 2, n)
    informative = np.c_[y_src * 3.0 + rng.normal(0, 1, n), rng.normal(size=(n, 7))]
    noise = rng.normal(size=(n, 8))
    ev.dataset.splits["source_eval"] = Split("source_eval", tuple(f"s{i}" for i in range(n)), y_src,
                                             pd.DataFrame(index=range(n)), "digest-src", "test")
    stats = StatsConfig(n_boot=500)
    ev.embeddings.update({"base": {"source_eval": informative}, "adapted": {"source_eval": noise}})
    (lost,) = transfer.forgetting(ev, stats, 3)
    assert lost.details["base_accuracy"] > 0.85 and 0.35 < lost.details["adapted_accuracy"] < 0.65
    assert lost.value == pytest.approx(lost.details["base_accuracy"] - lost.details["adapted_accuracy"])
    assert lost.ci[0] > 0.2 and lost.details["mcnemar_p"] < 1e-6
    ev.embeddings["adapted"]["source_eval"] = informative
    (kept,) = transfer.forgetting(ev, stats, 3)
    assert kept.value == 0.0 and kept.ci == (0.0, 0.0)


def test_degraded_adapted_model_is_flagged_as_negative_transfer():
    from transfer_audit.gate import gate
    from transfer_audit.policy import load_policy
    from transfer_audit.results import Status

    ev, _ = _evidence(0.65, 0.85)
    stats = StatsConfig(n_boot=500)
    config = transfer.TransferConfig()
    ms = transfer.gains(ev, config, stats) + transfer.group_gains(ev, config, stats)
    policy = load_policy("policies/default.yaml")
    decision = gate(ms, {"transfer"}, policy)
    nt = [o for o in decision.outcomes if o.rule.id == "transfer-no-negative-transfer"]
    assert nt and all(o.status is Status.FAIL for o in nt) and decision.verdict is Status.FAIL
    healthy, _ = _evidence(0.9, 0.75)
    ms = transfer.gains(healthy, transfer.TransferConfig(), stats)
    assert all(o.status is Status.PASS for o in gate(ms, {"transfer"}, policy).outcomes
               if o.rule.id == "transfer-no-negative-transfer")


def test_forgetting_is_skipped_without_a_source_set():
    ev, _ = _evidence(0.8, 0.8)
    (m,) = transfer.forgetting(ev, StatsConfig(n_boot=100), 3)
    assert m.status.value == "SKIPPED" and "source_eval" in m.details["reason"] and m.value is None


def test_transferability_command_ranks_candidates(tiny_bert, tmp_path):
    from conftest import adult_spec, make_tiny_bert, write_spec

    from transfer_audit.transferability import rank_candidates

    other = make_tiny_bert(tmp_path / "other", seed=1, layers=1)
    spec = write_spec(tmp_path, adult_spec(str(tiny_bert), tmp_path / "runs", checks={"performance": {}}))
    lines = rank_candidates(spec, [str(other)])
    ranked = [line for line in lines if line[:1].isdigit()]
    assert len(ranked) == 2 and {str(tiny_bert), str(other)} == {line.split()[-1] for line in ranked}
    assert "advisory" in lines[0]


def _outcomes(measurements, rule_id, policy_file="policies/default.yaml"):
    from transfer_audit.gate import gate
    from transfer_audit.policy import load_policy

    decision = gate(measurements, {"transfer"}, load_policy(policy_file))
    return [o.status.value for o in decision.outcomes if o.rule.id == rule_id]


def _with_source_set(ev, base_emb, adapted_emb, y_src):
    from transfer_audit.data import Split

    n = len(y_src)
    ev.dataset.splits["source_eval"] = Split("source_eval", tuple(f"s{i}" for i in range(n)), y_src,
                                             pd.DataFrame(index=range(n)), "digest-src", "test")
    ev.embeddings["base"] = {"source_eval": base_emb}
    ev.embeddings["adapted"] = {"source_eval": adapted_emb}
    return ev


def test_forgetting_rule_warns_when_the_lower_bound_of_the_drop_is_above_two_points():
    """Base embeddings separate the source labels, the adapted ones are noise: the drop's whole interval is
    above 2 points, so the default rule warns. Identical encoders forget nothing: it passes. An interval that
    straddles 2 points passes the default (evidence of harm) when its estimate is inside the bound, and is
    INCONCLUSIVE under strict (safety)."""
    from transfer_audit.results import Measurement

    rng = np.random.default_rng(0)
    n = 300
    ev, _ = _evidence(0.8, 0.8, n=n)
    y_src = rng.integers(0, 2, n)
    informative = np.c_[y_src * 3.0 + rng.normal(0, 1, n), rng.normal(size=(n, 7))]
    stats = StatsConfig(n_boot=500)
    (lost,) = transfer.forgetting(_with_source_set(ev, informative, rng.normal(size=(n, 8)), y_src), stats, 3)
    assert lost.ci[0] > 0.02 and lost.value > 0.3
    assert _outcomes([lost], "transfer-no-forgetting") == ["WARN"]
    (kept,) = transfer.forgetting(_with_source_set(ev, informative, informative.copy(), y_src), stats, 3)
    assert kept.value == 0.0 and _outcomes([kept], "transfer-no-forgetting") == ["PASS"]
    assert _outcomes([kept], "transfer-no-forgetting", "policies/strict.yaml") == ["PASS"]
    # Harm mode warns only on evidence of harm, but a point past the bound is never a pass (issue 12):
    # an interval straddling 2 points with its estimate inside passes, with its estimate past is INCONCLUSIVE.
    inside = Measurement("transfer", "transfer.forgetting", "adapted", 0.015, (0.0, 0.03), 300,
                         group={"metric": "accuracy"})
    past = Measurement("transfer", "transfer.forgetting", "adapted", 0.03, (0.01, 0.05), 300,
                       group={"metric": "accuracy"})
    for harm_policy in ("policies/default.yaml", "policies/eu-ai-act.yaml"):
        assert _outcomes([inside], "transfer-no-forgetting", harm_policy) == ["PASS"]
        assert _outcomes([past], "transfer-no-forgetting", harm_policy) == ["INCONCLUSIVE"]
    assert _outcomes([inside], "transfer-no-forgetting", "policies/strict.yaml") == ["INCONCLUSIVE"]
    assert _outcomes([past], "transfer-no-forgetting", "policies/strict.yaml") == ["INCONCLUSIVE"]


def test_logme_rule_warns_when_the_base_is_no_better_than_tfidf():
    """Texts whose words give the label away and base embeddings that are noise: LogME of the base is below
    the TF-IDF control and the rule warns (all three shipped policies). Texts whose words are unrelated to the
    label and base embeddings that carry it: the rule passes."""
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 2, n)
    vocabulary = np.array(["film", "story", "actor", "scene", "plot", "music", "screen", "light"])
    telling = [f"{('awful dull', 'great fine')[v]} {' '.join(rng.choice(vocabulary, 3))}" for v in y]
    unrelated = [" ".join(rng.choice(vocabulary, 5)) for _ in y]
    cases = ((telling, rng.normal(size=(n, 16)), "WARN"),
             (unrelated, np.c_[3.0 * y + rng.normal(0, 1.0, n), rng.normal(size=(n, 15))], "PASS"))
    for texts, emb, expected in cases:
        ev = make_evidence(pd.DataFrame({"group": ["a"] * n}), y, {}, texts=texts,
                           embeddings={"base": {"train": emb}})
        ms = transfer.transferability(ev, transfer.TransferConfig(), StatsConfig(n_boot=100))
        logme_of = {m.model: m.value for m in ms if m.metric == "transfer.logme"}
        assert (logme_of["base"] <= logme_of["no_transfer"]) == (expected == "WARN"), logme_of
        for policy_file in ("policies/default.yaml", "policies/strict.yaml", "policies/eu-ai-act.yaml"):
            assert _outcomes(ms, "transfer-base-logme-above-control", policy_file) == [expected]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.DataDimensionalityWarning")     # one-word TF-IDF control
def test_group_gains_say_why_they_are_missing_without_a_sensitive_column():
    """A free-text spec with no sensitive column: the group record is SKIPPED with the reason, and the rule on it
    is INCONCLUSIVE naming what is missing (missing evidence is not a pass), not an unexplained 'produced no
    transfer.group_gain'."""
    ev, _ = _evidence(0.8, 0.75)
    ev = make_evidence(ev.dataset.splits["current"].frame, ev.dataset.splits["current"].y,
                       {role: ev.pred(role, "current") for role in ("adapted", "base_probe", "no_transfer")},
                       sensitive=(), embeddings={"base": {"train": np.random.default_rng(0).normal(size=(800, 8))}})
    result = transfer.run(ev, transfer.TransferConfig(cv_folds=3), StatsConfig(n_boot=100))
    (group,) = [m for m in result.measurements if m.metric == "transfer.group_gain"]
    assert group.status.value == "SKIPPED" and "data.sensitive" in group.details["reason"]
    from transfer_audit.gate import gate
    from transfer_audit.policy import load_policy

    decision = gate(list(result.measurements), {"transfer"}, load_policy("policies/default.yaml"))
    (outcome,) = [o for o in decision.outcomes if o.rule.id == "transfer-group-not-hurt"]
    assert outcome.status.value == "INCONCLUSIVE" and "data.sensitive" in outcome.reason
