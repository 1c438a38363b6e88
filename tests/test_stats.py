"""The shared statistics against direct computations and reference libraries."""
from __future__ import annotations

import numpy as np
import pytest

from transfer_audit import stats


def test_wilson_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for x, n in [(0, 10), (3, 10), (10, 10), (45, 200), (1, 1000)]:
        lo, hi = stats.wilson_ci(x, n)
        rlo, rhi = proportion_confint(x, n, alpha=0.05, method="wilson")
        assert lo == pytest.approx(rlo, abs=1e-9) and hi == pytest.approx(rhi, abs=1e-9)


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001])
    assert np.allclose(stats.holm(p), multipletests(p, method="holm")[1])


def test_mcnemar_exact_is_a_binomial_test_on_discordant_pairs():
    from scipy.stats import binom

    a = np.array([1, 1, 1, 1, 1, 0, 0, 1, 0, 1], bool)
    b = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 1], bool)
    p, n01, n10 = stats.mcnemar_exact(a, b)
    assert (n01, n10) == (4, 1)
    direct = min(1.0, 2 * binom.cdf(min(n01, n10), n01 + n10, 0.5))
    assert p == pytest.approx(direct)


def test_auc_matches_sklearn_including_ties_and_weights():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(bool)
    s = np.round(rng.normal(size=300) + y, 1)          # rounding makes ties
    assert stats.auc_from_weights(s, y, np.ones((1, 300)))[0] == pytest.approx(roc_auc_score(y, s))
    idx = stats.bootstrap_indices(300, 5, seed=1)
    w = stats.row_weights(idx, 300)
    for b in range(5):
        assert stats.auc_from_weights(s, y, w[b:b + 1])[0] == pytest.approx(roc_auc_score(y[idx[b]], s[idx[b]]))


def test_resampled_counts_equal_a_loop():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 6, 50)
    idx = stats.bootstrap_indices(50, 20, seed=3)
    counts = stats.resampled_counts(codes, 6, idx)
    for b in range(20):
        assert np.array_equal(counts[b], np.bincount(codes[idx[b]], minlength=6))


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    from transfer_audit.checks.performance import macro_f1

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert macro_f1(y, p, 3) == pytest.approx(f1_score(y, p, average="macro"))


def test_bootstrap_is_seeded():
    assert np.array_equal(stats.bootstrap_indices(10, 5, 7), stats.bootstrap_indices(10, 5, 7))
    assert not np.array_equal(stats.bootstrap_indices(10, 5, 7), stats.bootstrap_indices(10, 5, 8))


def test_percentile_ci_takes_the_level_from_both_tails():
    assert stats.percentile_ci(np.arange(1001.0), level=0.90) == pytest.approx((50.0, 950.0))
    assert stats.percentile_ci(np.r_[np.arange(1001.0), np.nan, np.inf], level=0.90) == pytest.approx((50.0, 950.0))
    assert stats.percentile_ci(np.array([np.nan])) is None


def test_percentile_bootstrap_interval_covers_at_its_level():
    """Coverage of the bootstrap interval of a mean, by simulation against a known truth (scipy's
    test_resampling does the same for its own bootstrap): 400 data sets of 150 Bernoulli(0.3) rows."""
    rng = np.random.default_rng(0)
    truth, n, sims = 0.3, 150, 400
    covered = 0
    for s in range(sims):
        x = (rng.random(n) < truth).astype(float)
        lo, hi = stats.bootstrap_mean_ci(x, n_boot=400, seed=s, level=0.90)
        covered += lo <= truth <= hi
    assert 0.86 <= covered / sims <= 0.94          # 0.90 +- 2 standard errors of 400 simulations


def test_cell_bootstrap_has_the_distribution_of_row_resampling():
    """Multinomial counts over joint cells = resampling rows: same mean and spread of a resampled metric."""
    rng = np.random.default_rng(0)
    y, pred, group = rng.integers(0, 2, 400), rng.integers(0, 2, 400), rng.integers(0, 3, 400)
    cells = stats.CellBootstrap([y, pred, group], n_boot=4000, seed=1)
    assert cells.counts.sum(axis=1).tolist() == [400] * 4000
    acc_cells = cells.counts_of((y == pred).astype(int), 2)[:, 1] / 400
    idx = stats.bootstrap_indices(400, 4000, seed=2)
    acc_rows = (y == pred)[idx].mean(1)
    assert acc_cells.mean() == pytest.approx(acc_rows.mean(), abs=0.002)
    assert acc_cells.std() == pytest.approx(acc_rows.std(), rel=0.06)
    with pytest.raises(ValueError):
        cells.counts_of(rng.integers(0, 2, 400), 2)          # not a function of the keys


def test_auc_interval_switches_to_hanley_mcneil_for_large_n():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 3000).astype(bool)
    s = rng.normal(size=3000) + y
    (lo, hi), method = stats.auc_bootstrap(s, y, 500, 0)
    (lo2, hi2), method2 = stats.auc_bootstrap(s, y, 500, 0, max_rows=1000)
    assert method == "bootstrap" and method2 == "Hanley-McNeil"
    assert lo2 == pytest.approx(lo, abs=0.01) and hi2 == pytest.approx(hi, abs=0.01)
