"""Attribution: completeness, a planted sentinel token, and zero shift between identical models."""
from __future__ import annotations

import numpy as np
import pytest

from transfer_audit.tasks.text_attribution import attribute_many, attribute_one, words_of
from transfer_audit.checks.attribution import AttributionConfig, importance, spearman_and_overlap, stratified_sample, summarise

WORDS = "the a film story actor scene plot music ending dialogue camera light night city road house".split()


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


def test_completeness_holds_within_the_delta(tiny_bert):
    from transfer_audit.models.loading import load_tokenizer
    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer(tiny_bert)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2).eval()
    ids = tok("a quiet film about a city at night", return_tensors="pt")["input_ids"]
    a = attribute_one(model, tok, ids, target=1, schedule=(50, 100, 200, 300))
    assert a.converged and abs(a.scores.sum() - a.gap) == pytest.approx(abs(a.delta), abs=1e-6)
    assert abs(a.delta) <= 0.05 * abs(a.gap)


def test_sentinel_token_tops_the_ranking_and_counts_as_sensitive(sentinel_model):
    model, tok, texts, labels = sentinel_model
    with_token = [t for t, y in zip(texts, labels) if y == 1][:8]
    preds = [1] * len(with_token)
    attrs, _ = attribute_many(model, tok, with_token, preds, 32, AttributionConfig().schedule(), 0.05, "test")
    summary = summarise([words_of(a.units, a.scores, a.skip) for a in attrs], {"zqx"})
    imp = importance(summary, min_freq=3)
    assert max(imp, key=imp.get) == "zqx"
    assert np.nanmean(summary["sensitive_share"]) > 0.3


def test_shift_is_one_for_the_same_model(sentinel_model):
    model, tok, texts, _ = sentinel_model
    sample = texts[:10]
    runs = [attribute_many(model, tok, sample, [None] * 10, 32, (25, 50, 100), 0.05, "test")[0] for _ in range(2)]
    imps = [importance(summarise([words_of(a.units, a.scores, a.skip) for a in r], set()), 2) for r in runs]
    rho, overlap = spearman_and_overlap(*imps)
    assert rho == pytest.approx(1.0) and overlap == 1.0


def test_adaptive_schedule_starts_low_and_fixed_starts_at_n_steps():
    assert AttributionConfig().schedule()[0] < 50 and AttributionConfig().schedule()[-1] == 300
    assert AttributionConfig(adaptive=False).schedule() == (50, 100, 200, 300)


def test_stratified_sample_is_balanced_and_seeded():
    y = np.array([0] * 90 + [1] * 10)
    rows = stratified_sample(y, 10, seed=0)
    assert np.sum(y[rows] == 1) == 5 and np.array_equal(rows, stratified_sample(y, 10, seed=0))
