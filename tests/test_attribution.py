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
