"""Attribution: completeness, a planted sentinel token, and zero shift between identical models."""
from __future__ import annotations

import numpy as np
import pytest

from transfer_audit.checks.attribution import (
    AttributionConfig,
    importance,
    spearman_and_overlap,
    stratified_sample,
    summarise,
)
from transfer_audit.tasks.text_attribution import attribute_many, attribute_one, words_of

WORDS = ["the", "a", "film", "story", "actor", "scene", "plot", "music", "ending", "dialogue", "camera", "light",
         "night", "city", "road", "house"]


@pytest.fixture(scope="module")
def sentinel_model(tiny_bert, tmp_path_factory):
    """A tiny BERT fine-tuned on texts where the made-up token 'zqx' alone decides the label."""
    from transfer_audit.models.finetune import finetune
    from transfer_audit.models.loading import load_classifier, load_tokenizer
    from transfer_audit.spec import FinetuneMethod, FinetuneSpec

    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(240):
        words = list(rng.choice(WORDS, 7))
        if i % 2:
            words.insert(int(rng.integers(0, 7)), "zqx")
        texts.append(" ".join(words))
        labels.append(i % 2)
    tok = load_tokenizer(tiny_bert)
    recipe = FinetuneSpec(method=FinetuneMethod.FULL, epochs=6, learning_rate=3e-3, batch_size=16, max_length=32)
    folder = finetune(tiny_bert, tok, texts, np.array(labels), ("no", "yes"), recipe, 0,
                      tmp_path_factory.mktemp("sentinel"), "k")
    model, _, _ = load_classifier(folder, tiny_bert, 2)
    return model, tok, texts, np.array(labels)


def _riemann_ig(model, input_ids, baseline, target: int, steps: int = 256) -> np.ndarray:
    """Integrated gradients written out by hand: replace the embedding layer's output by points on the straight
    path from the baseline's to the input's, average the gradient of the target logit over the midpoints."""
    import torch

    emb = model.bert.embeddings
    with torch.no_grad():
        e_x, e_b = emb(input_ids=input_ids), emb(input_ids=baseline)
    alphas = ((torch.arange(steps) + 0.5) / steps).view(-1, 1, 1)
    points = (e_b + alphas * (e_x - e_b)).requires_grad_(True)             # (steps, L, H), one batch
    hook = emb.register_forward_hook(lambda mod, inp, out: points)
    try:
        ids = input_ids.expand(steps, -1)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, target]
    finally:
        hook.remove()
    grads = torch.autograd.grad(logits.sum(), points)[0]
    return (grads.mean(0, keepdim=True) * (e_x - e_b)).sum(-1)[0].numpy()


def test_attributions_match_a_hand_written_integral_and_the_models_own_outputs(tiny_bert):
    """Checked against quantities the engine does not compute: the logit gap from two plain forward passes,
    and integrated gradients by a 400-step midpoint Riemann sum."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from transfer_audit.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_bert)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2).eval()
    ids = tok("a quiet film about a city at night", return_tensors="pt")["input_ids"]
    baseline = ids.clone()
    baseline[0, 1:-1] = tok.pad_token_id                      # [CLS] [PAD] ... [PAD] [SEP]
    with torch.no_grad():
        ones = torch.ones_like(ids)
        gap = float(model(input_ids=ids, attention_mask=ones).logits[0, 1]
                    - model(input_ids=baseline, attention_mask=ones).logits[0, 1])
    a = attribute_one(model, tok, ids, target=1, schedule=(50, 100, 200, 300))
    assert a.converged and a.gap == pytest.approx(gap, abs=1e-5)
    assert a.scores.sum() == pytest.approx(gap, rel=0.05, abs=1e-4)
    reference = _riemann_ig(model, ids, baseline, target=1)
    assert np.allclose(a.scores, reference, atol=0.02 * np.abs(reference).max())


def test_sentinel_token_tops_the_ranking_and_counts_as_sensitive(sentinel_model):
    model, tok, texts, labels = sentinel_model
    with_token = [t for t, y in zip(texts, labels) if y == 1][:8]
    preds = [1] * len(with_token)
    attrs, _ = attribute_many(model, tok, with_token, preds, 32, AttributionConfig().schedule(), 0.05, "test")
    summary = summarise([words_of(a.units, a.scores, a.skip) for a in attrs], {"zqx"})
    imp = importance(summary, min_freq=3)
    assert max(imp, key=imp.get) == "zqx"
    assert np.nanmean(summary["sensitive_share"]) > 0.3


def test_shift_is_spearman_over_the_shared_vocabulary_and_top_k_overlap():
    """Against a hand computation: rank correlation 1 - 6 sum d^2 / (n (n^2 - 1)) with no ties, and the share
    of the top-k words both rankings hold."""
    words = [f"w{i:02d}" for i in range(12)]
    a = {w: float(i) for i, w in enumerate(words)}
    b = {w: float(i) for i, w in enumerate(words)}
    b["w11"], b["w00"] = 0.0, 11.0                                  # swap the first and the last word
    rho, overlap = spearman_and_overlap(a, b, k=10)
    d2 = 2 * 11 ** 2
    assert rho == pytest.approx(1 - 6 * d2 / (12 * (12 ** 2 - 1)))
    # top-10 of a: w02..w11; of b: w00, w02..w10 -> 9 shared
    assert overlap == pytest.approx(9 / 10)
    reverse = {w: -v for w, v in a.items()}
    assert spearman_and_overlap(a, reverse, k=10) == pytest.approx((-1.0, 8 / 10))


def test_adaptive_schedule_starts_low_and_fixed_starts_at_n_steps():
    assert AttributionConfig().schedule()[0] < 50 and AttributionConfig().schedule()[-1] == 300
    assert AttributionConfig(adaptive=False).schedule() == (50, 100, 200, 300)


def test_stratified_sample_is_balanced_and_seeded():
    y = np.array([0] * 90 + [1] * 10)
    rows = stratified_sample(y, 10, seed=0)
    assert np.sum(y[rows] == 1) == 5 and np.array_equal(rows, stratified_sample(y, 10, seed=0))


def test_batched_engine_matches_captum_one_example_at_a_time(sentinel_model):
    """Length-bucketed batches (several examples' steps in one pass) give captum's LayerIntegratedGradients
    attributions, example by example, at the same step count (few steps on a fine-tuned model, so the
    quadrature rule matters)."""
    model, tok, texts, labels = sentinel_model
    texts = list(texts[:12])
    targets = [int(t) for t in labels[:12]]
    batched, _ = attribute_many(model, tok, texts, targets, 32, (6,), 1.0, "test")
    assert len({len(a.units) for a in batched}) < len(texts)          # some share a bucket
    for text, target, b in zip(texts, targets, batched):
        ids = tok(text, return_tensors="pt")["input_ids"]
        one = attribute_one(model, tok, ids, target, (6,), 1.0)
        assert b.units == one.units and b.steps == one.steps == 6
        assert b.gap == pytest.approx(one.gap, abs=1e-5)
        assert np.allclose(b.scores, one.scores, atol=1e-5 + 1e-4 * np.abs(one.scores).max())


class _FakeText:
    """A modality whose explanations are scripted: words of each text get attribution 1, and the examples
    listed in `unconverged` fail the completeness check."""

    unit_name = "word"

    def __init__(self, unconverged):
        self.unconverged = set(unconverged)
        self.quality_calls = []

    def sensitive_note(self, dataset):
        return "scripted"

    def illustrate(self, inputs, attributions, limit):
        return []

    def explainers(self, models):
        return {"adapted": "m2", "base_probe": "m1"}

    def attribute(self, module, inputs, targets, schedule, tolerance, what):
        from transfer_audit.tasks.base import Attribution

        out = []
        for i, (text, t) in enumerate(zip(inputs, targets)):
            words = text.split()
            out.append(Attribution(words, np.ones(len(words)), t, 0.0, float(len(words)), 8, 10,
                                   i not in self.unconverged))
        return out, 0.5

    def attribution_units(self, a):
        return list(zip(a.units, a.scores))

    def sensitive_units(self, dataset, extra):
        return {"she"}

    def quality_scores(self, module, text, attribution, seed, sensitivity):
        assert attribution.converged
        self.quality_calls.append((module, sensitivity))
        return {"infidelity": 0.1 + 0.01 * seed, "sensitivity_max": 0.2 if sensitivity else None, "passes": 12}

    def attribution_note(self, n, schedule, tolerance):
        return "scripted"


def test_unconverged_examples_stay_out_of_shares_and_tables_and_quality_is_advisory_below_16():
    """Half the texts mention 'she' and none of their explanations converge: the sensitive share must not see
    them, nor the top-word tables; quality metrics run on converged examples only."""
    import pandas as pd
    from conftest import make_evidence

    from transfer_audit.checks import attribution
    from transfer_audit.stats import StatsConfig

    n = 40
    texts = [("she said zap" if i % 2 else "film plot ending") for i in range(n)]
    y = np.arange(n) % 2
    ev = make_evidence(pd.DataFrame({"g": ["a", "b"] * (n // 2)}), y, {"adapted": y, "base_probe": y},
                       sensitive=("g",), texts=texts)
    fake = _FakeText(unconverged=[i for i in range(n) if i % 2])

    class Models:
        modality = fake

    config = attribution.AttributionConfig(samples=n, min_freq=1, sensitivity_samples=3)
    result = attribution.run(ev, config, StatsConfig(n_boot=200), Models())
    by = {(m.metric, m.model): m for m in result.measurements}
    share = by[("attribution.sensitive_share", "adapted")]
    assert share.status.value == "SKIPPED" and share.details["excluded_unconverged"] == n // 2
    words = {row[2] for row in result.tables["top_words"]["rows"]}
    assert words == {"film", "plot", "ending"}
    assert all(row[1] in {"film", "plot", "ending"} for row in result.tables["top_words_by_class"]["rows"])
    infid, sens = by[("attribution.infidelity", "adapted")], by[("attribution.sensitivity_max", "adapted")]
    assert infid.n == 16 and infid.ci is not None and not infid.details.get("advisory")
    assert sens.n == 3 and sens.ci is None and sens.details["advisory"] is True
    assert len(fake.quality_calls) == 2 * 16
    assert any("did not converge" in note for note in result.notes)
