"""Transfer statistics: LogME, CKA, paired gains and the negative-transfer rule."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from transfer_audit.checks import transfer
from transfer_audit.checks.base import StatsConfig
from transfer_audit.transfer_stats import linear_cka, logme

from conftest import make_evidence


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


def test_cka_properties():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ q) == pytest.approx(1.0)            # orthogonal transform
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0)          # isotropic scaling
    assert linear_cka(x, rng.normal(size=(120, 16))) < 0.5


def _evidence(adapted_acc, control_acc, n=800, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    flip = lambda acc: np.where(rng.random(n) < acc, y, 1 - y)
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
    ms = transfer.gains(ev, transfer.TransferConfig(), stats) + transfer.group_gains(ev, transfer.TransferConfig(), stats)
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
    from transfer_audit.transferability import rank_candidates

    from conftest import adult_spec, make_tiny_bert, write_spec

    other = make_tiny_bert(tmp_path / "other", seed=1, layers=1)
    spec = write_spec(tmp_path, adult_spec(str(tiny_bert), tmp_path / "runs", checks={"performance": {}}))
    lines = rank_candidates(spec, [str(other)])
    ranked = [l for l in lines if l[:1].isdigit()]
    assert len(ranked) == 2 and {str(tiny_bert), str(other)} == {l.split()[-1] for l in ranked}
    assert "advisory" in lines[0]
