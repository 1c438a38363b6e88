"""Gate validity: simulate groups of 30-600 rows with a known true disparity or accuracy, run the bias check's
own statistics and record builders and the real gate, and measure how often a bound is decided wrongly.

Claims (each over >= 200 seeded simulations per cell):
  P(PASS | true value past the bound by 0.05) <= 5%   and   P(FAIL | true value inside it by 0.05) <= 5%
for the default policy's demographic-parity rule (max 0.10) and for a `min` rule on per-group accuracy.

Fast because vectorised: all simulated data sets of a cell go through `bias.disparity_stats` at once (the same
function the check calls on one data set), then each gets its records from the check's own builders and one
gate call. `test_vectorised_path_is_the_check` pins that path to `bias.run` on one data set. The bootstrap
draws (B below) only feed the plain interval shown next to the corrected one and the bias-corrected point;
three-way decisions read the corrected interval, which needs no resampling, so B does not change them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, make_evidence

from transfer_audit import fairness_stats as fs
from transfer_audit.checks import bias
from transfer_audit.checks.base import StatsConfig
from transfer_audit.checks.bias_groups import GroupCounts, group_records
from transfer_audit.gate import gate
from transfer_audit.policy import load_policy, parse_policy_data
from transfer_audit.results import Measurement, Status
from transfer_audit.simultaneous import with_simultaneous

SIMS, B = 200, 200
STATS = StatsConfig(n_boot=B, min_group_n=30, min_pos=10, min_neg=10)
DP_RULE = next(r for r in load_policy(ROOT / "policies" / "default.yaml").rules if r.id == "bias-demographic-parity")
DP_POLICY = parse_policy_data({"rules": [{"id": DP_RULE.id, "metric": DP_RULE.metric, "max": DP_RULE.condition.bound,
                                          "severity": "block"}]}, "validity.yaml")
ACC_BOUND = 0.70
ACC_POLICY = parse_policy_data({"rules": [{"id": "group-accuracy", "metric": "bias.group_accuracy",
                                           "min": ACC_BOUND}]}, "validity.yaml")
SIZES = {"2 groups: 30, 600": [30, 600], "5 groups: 31-600": [31, 60, 150, 300, 600], "6 groups of 30": [30] * 6,
         "10 groups: 30-600": [30, 40, 50, 60, 80, 100, 150, 300, 500, 600]}
RESULTS: list[list] = []


def _multinomial(n: int, shares: np.ndarray, rng) -> np.ndarray:
    """Multinomial(n, shares) along the last axis for every leading index, as one binomial per cell given the
    rows left (exactly the multinomial law; vectorised where numpy's multinomial loops over draws)."""
    out = np.zeros(shares.shape, dtype=np.int64)
    left = np.full(shares.shape[:-1], n, dtype=np.int64)
    rest = np.ones(shares.shape[:-1])
    for j in range(shares.shape[-1] - 1):
        p = np.clip(np.divide(shares[..., j], rest, out=np.zeros_like(rest), where=rest > 0), 0.0, 1.0)
        out[..., j] = rng.binomial(left, p)
        left -= out[..., j]
        rest -= shares[..., j]
    out[..., -1] = left
    return out


def _simulate(sizes, p_cells, rng, resample: bool = True):
    """Confusion counts (S, G, 2, 2) of S data sets and their cell-bootstrap resamples (S, B, G, 2, 2).

    p_cells (G, 4): P(y, pred) per group. Resampling n rows with replacement is a multinomial over the joint
    (group, y, pred) cells, which is what stats.CellBootstrap draws for the check."""
    sizes = np.asarray(sizes)
    g = sizes.size
    conf = np.stack([rng.multinomial(n, p, size=SIMS) for n, p in zip(sizes, p_cells)], 1)      # (S, G, 4)
    if not resample:
        return conf.reshape(SIMS, g, 2, 2), None
    shares = np.broadcast_to((conf.reshape(SIMS, -1) / sizes.sum())[:, None, :], (SIMS, B, g * 4))
    return conf.reshape(SIMS, g, 2, 2), _multinomial(int(sizes.sum()), shares, rng).reshape(SIMS, B, g, 2, 2)


def _counts(conf_s) -> GroupCounts:
    names = [f"g{i:02d}" for i in range(conf_s.shape[0])]
    return GroupCounts(names, conf_s.sum((-1, -2)), conf_s[:, 1, :].sum(-1)[:, None], [1], STATS)


def _dp_outcomes(sizes, rates, seed):
    """Gate statuses of the demographic-parity rule, and what the plain bootstrap interval would decide."""
    rng = np.random.default_rng(seed)
    rates = np.asarray(rates)
    p_cells = np.stack([0.5 * (1 - rates), 0.5 * rates, 0.5 * (1 - rates), 0.5 * rates], -1)   # y independent
    conf, boot = _simulate(sizes, p_cells, rng)
    counts = [_counts(c) for c in conf]
    masks = {k: np.stack([c.masks()[k] for c in counts]) for k in counts[0].masks()}
    st = bias.disparity_stats(conf, boot, [1], masks, STATS.ci_level,
                              which=("demographic_parity_difference",))["demographic_parity_difference"]
    statuses, plain = [], []
    for s in range(SIMS):
        one = {k: v[s] for k, v in st.items()}
        m = bias.disparity_record("adapted", "demographic_parity_difference", one, counts[s],
                                  {k: v[s] for k, v in masks.items()}, "group", int(conf[s].sum()), STATS.ci_level)
        statuses.append(gate([m], {"bias"}, DP_POLICY).outcomes[0].status)
        lo, hi = m.ci
        plain.append(Status.FAIL if lo > DP_RULE.condition.bound else Status.PASS if hi <= DP_RULE.condition.bound
                     else Status.INCONCLUSIVE)
    return statuses, plain


def _acc_outcomes(sizes, accuracies, seed):
    """Rule-level status of a min rule on every group's accuracy (one family: Bonferroni over the groups)."""
    rng = np.random.default_rng(seed)
    acc = np.asarray(accuracies)
    p_cells = np.stack([0.6 * acc, 0.6 * (1 - acc), 0.4 * (1 - acc), 0.4 * acc], -1)      # P(y=0)=0.6
    conf, _ = _simulate(sizes, p_cells, rng, resample=False)
    statuses = []
    for s in range(SIMS):
        counts = _counts(conf[s])
        items = [(m, f) for m, f in group_records("adapted", conf[s], counts, "group", STATS.ci_level)
                 if m.metric == "bias.group_accuracy"]
        outcomes = gate(with_simultaneous(items, STATS.ci_level), {"bias"}, ACC_POLICY).outcomes
        found = {o.status for o in outcomes}
        statuses.append(Status.FAIL if Status.FAIL in found else Status.INCONCLUSIVE if Status.INCONCLUSIVE in found
                        else Status.PASS)
    return statuses


def _rate(statuses, status) -> float:
    return float(np.mean([s is status for s in statuses]))


def _record(rule, cell, truth, statuses, plain=None):
    RESULTS.append([rule, cell, truth, _rate(statuses, Status.PASS), _rate(statuses, Status.FAIL),
                    _rate(statuses, Status.INCONCLUSIVE), None if plain is None else _rate(plain, Status.FAIL)])


@pytest.mark.parametrize("cell", list(SIZES))
def test_demographic_parity_rule_keeps_its_error_rates(cell):
    sizes, bound = SIZES[cell], DP_RULE.condition.bound
    g = len(sizes)
    seed = list(SIZES).index(cell)
    past = 0.30 + np.linspace(0, bound + 0.05, g)              # true max - min = 0.15: a violation
    inside = 0.30 + np.linspace(0, bound - 0.05, g)            # true max - min = 0.05: compliant
    low_base = 0.05 + np.linspace(0, bound - 0.05, g)          # rates near 0: smoothing matters
    st_past, _ = _dp_outcomes(sizes, past, seed)
    st_inside, plain_inside = _dp_outcomes(sizes, inside, seed + 100)
    st_low, plain_low = _dp_outcomes(sizes, low_base, seed + 200)
    _record("dp <= 0.10", cell, "0.15 (past)", st_past)
    _record("dp <= 0.10", cell, "0.05 (inside)", st_inside, plain_inside)
    _record("dp <= 0.10", cell, "0.05 (inside, rates 0.05-0.10)", st_low, plain_low)
    assert _rate(st_past, Status.PASS) <= 0.05
    assert _rate(st_inside, Status.FAIL) <= 0.05 and _rate(st_low, Status.FAIL) <= 0.05


@pytest.mark.parametrize("cell", ["2 groups: 30, 600", "5 groups: 31-600", "10 groups: 30-600"])
def test_group_accuracy_min_rule_keeps_its_error_rates(cell):
    sizes = SIZES[cell]
    seed = 1000 + list(SIZES).index(cell)
    worst_small = np.full(len(sizes), ACC_BOUND + 0.10)
    worst_small[0] = ACC_BOUND - 0.05                            # the smallest group is 5 points short
    worst_large = np.full(len(sizes), ACC_BOUND + 0.10)
    worst_large[-1] = ACC_BOUND - 0.05                           # the largest group is 5 points short
    fine = np.full(len(sizes), ACC_BOUND + 0.05)                 # every group 5 points above the bound
    st_small, st_large = _acc_outcomes(sizes, worst_small, seed), _acc_outcomes(sizes, worst_large, seed + 1)
    st_fine = _acc_outcomes(sizes, fine, seed + 2)
    _record("accuracy >= 0.70", cell, "smallest group 0.65 (past)", st_small)
    _record("accuracy >= 0.70", cell, "largest group 0.65 (past)", st_large)
    _record("accuracy >= 0.70", cell, "all groups 0.75 (inside)", st_fine)
    assert _rate(st_small, Status.PASS) <= 0.05 and _rate(st_large, Status.PASS) <= 0.05
    assert _rate(st_fine, Status.FAIL) <= 0.05


INTRO_POLICY = parse_policy_data({"rules": [{"id": "introduced", "metric": "bias.introduced", "max": 0.05}]},
                                 "validity.yaml")


def _redrawn(rate_b, share):
    """P(a, b) per group when model a keeps b's prediction except on a `share` of rows, redrawn at b's rate."""
    rb = np.asarray(rate_b)
    return np.stack([rb * (1 - share + share * rb), (1 - rb) * share * rb,                 # (a, b) = (1,1), (1,0)
                     rb * share * (1 - rb), (1 - rb) * (1 - share + share * (1 - rb))], -1)   # (0,1), (0,0)


def _raised(rate_b, raise_by):
    """P(a, b) per group when model a turns some of b's negatives positive: a's rate is rate_b + raise_by."""
    rb, q = np.asarray(rate_b), np.asarray(raise_by) / (1 - np.asarray(rate_b))
    return np.stack([rb, (1 - rb) * q, np.zeros_like(rb), (1 - rb) * (1 - q)], -1)


def _introduced_outcomes(sizes, p_ab, seed):
    """Gate statuses of a `bias.introduced <= 0.05` rule on the selection-rate disparity of model a over model
    b, judged on the same rows (paired) as the check judges M2 against M1; p_ab (G, 4): P(a, b) per group."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes)
    cells = np.stack([rng.multinomial(n, p, size=SIMS) for n, p in zip(sizes, p_ab)], 1)      # (S, G, 4)
    n = np.broadcast_to(sizes[None, :, None], (SIMS, sizes.size, 1)).astype(float)
    x_a, x_b = (cells[..., 0] + cells[..., 1])[..., None], (cells[..., 0] + cells[..., 2])[..., None]
    valid = np.ones_like(n, bool)
    iv = fs.disparity_change_interval((x_a, n, valid), (x_b, n, valid),
                                      (cells[..., 1:2], cells[..., 2:3], n, valid), STATS.ci_level)
    plain = fs.plain(x_a, n, valid, False) - fs.plain(x_b, n, valid, False)
    statuses = []
    for s_ in range(SIMS):
        lo, hi = float(iv["lo"][s_]), float(iv["hi"][s_])
        m = Measurement("bias", "bias.introduced", "adapted", float(plain[s_]), None, int(sizes.sum()), Status.MEASURED,
                        {"feature": "group", "disparity": "demographic_parity_difference"},
                        {"corrected": {"value": float(np.clip(plain[s_], lo, hi)), "ci": [lo, hi]}})
        statuses.append(gate([m], {"bias"}, INTRO_POLICY).outcomes[0].status)
    return statuses


@pytest.mark.parametrize("cell", ["2 groups: 30, 600", "5 groups: 31-600", "6 groups of 30", "3 groups: 600-800"])
def test_introduced_rule_keeps_its_error_rates(cell):
    """The change of a disparity between two models: a fair base whose fine-tuned successor raises one group's
    rate by 0.10 (past the 0.05 bound by 0.05) must not pass; a successor that keeps the base's 0.10 gap while
    redrawing 20% of its predictions (a change of 0, inside by 0.05) must not fail."""
    sizes = {**SIZES, "3 groups: 600-800": [600, 800, 800]}[cell]
    seed = 2000 + len(sizes)
    fair = np.full(len(sizes), 0.30)
    raise_first = np.zeros(len(sizes))
    raise_first[0] = 0.10
    st_past = _introduced_outcomes(sizes, _raised(fair, raise_first), seed)
    st_kept = _introduced_outcomes(sizes, _redrawn(fair + raise_first, 0.2), seed + 1)
    _record("introduced <= 0.05", cell, "0.10 (past)", st_past)
    _record("introduced <= 0.05", cell, "0.00 (inside)", st_kept)
    assert _rate(st_past, Status.PASS) <= 0.05 and _rate(st_kept, Status.FAIL) <= 0.05


def test_vectorised_path_is_the_check():
    """The simulation path (disparity_stats + disparity_record on stacked arrays) gives what bias.run gives."""
    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame({"group": rng.choice(["a", "b", "c", "d"], n, p=[0.1, 0.2, 0.3, 0.4])})
    y = rng.integers(0, 2, n)
    pred = (rng.random(n) < np.where(frame.group == "a", 0.5, 0.3)).astype(int)
    ev = make_evidence(frame, y, {"adapted": pred}, sensitive=("group",))
    result = bias.run(ev, bias.BiasConfig(counterfactual=False), STATS)
    want = next(m for m in result.measurements if m.metric == "bias.demographic_parity_difference")
    codes, names = bias.group_codes(frame, ["group"])
    conf = np.bincount((codes * 2 + y) * 2 + pred, minlength=16).reshape(4, 2, 2)
    boot = ev.cells("current", B).counts_of((codes * 2 + y) * 2 + pred, 16).reshape(-1, 4, 2, 2)
    counts = bias.feature_counts(y, codes, names, 2, [1], STATS)
    masks = {k: v[None] for k, v in counts.masks().items()}
    st = bias.disparity_stats(conf[None], boot[None], [1], masks, STATS.ci_level)["demographic_parity_difference"]
    got = bias.disparity_record("adapted", "demographic_parity_difference", {k: v[0] for k, v in st.items()}, counts,
                                counts.masks(), "group", n, STATS.ci_level)
    assert got == want


def test_print_the_table(capsys):
    """Prints the rates measured above (run with -s to see them; they also go to the captured output)."""
    if not RESULTS:
        pytest.skip("run with the simulation tests")
    header = ["rule", "groups", "true value", "P(PASS)", "P(FAIL)", "P(INCONCLUSIVE)", "P(FAIL) plain CI"]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for row in RESULTS:
        lines.append(" | ".join(str(v) if isinstance(v, str) else "n/a" if v is None else f"{v:.3f}" for v in row))
    with capsys.disabled():
        print(f"\ngate validity, {SIMS} simulations per cell:\n" + "\n".join(lines))
