"""Text attribution: integrated gradients on the embedding layer (the combined word + position + type output),
with steps that adapt per example until the completeness check holds: |sum(attr) - (F(x) - F(x'))| within
`tolerance` of |F(x) - F(x')| (Sundararajan et al. 2017), on the target logit.

attribute_many batches by token length (tasks/text_ig.py, which also holds the quality metrics);
attribute_one is captum's LayerIntegratedGradients one example at a time, the reference the batched engine is
tested against.
"""
from __future__ import annotations

import time

import numpy as np

from .base import Attribution


class ProbeClassifier:
    """Frozen base encoder + its pooling + the probe's linear head, as one torch module (M1 for captum), on the
    encoder's device."""

    def __new__(cls, encoder, weight: np.ndarray, bias: np.ndarray, pooling=("mean",)):
        import torch

        from .text_inference import pool

        class _Probe(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = encoder
                self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
                with torch.no_grad():
                    self.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
                    self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
                for p in self.parameters():
                    p.requires_grad_(False)

            @property
            def embeddings(self):
                return self.encoder.embeddings

            def forward(self, input_ids, attention_mask):
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                return self.head(pool(hidden, attention_mask, pooling))

        return _Probe().to(next(encoder.parameters()).device).eval()


def embedding_layer(model):
    """The combined embedding module (word + position + type) of a BERT-like model or probe."""
    inner = getattr(model, "base_model", None)
    for candidate in (getattr(model, "embeddings", None), getattr(inner, "embeddings", None)):
        if candidate is not None:
            return candidate
    raise ValueError("the model has no '.embeddings' module to attribute to")


def logits_fn(model):
    def forward(input_ids, attention_mask):
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        return out.logits if hasattr(out, "logits") else out
    return forward


def baseline_ids(input_ids, tokenizer):
    """[CLS] + [PAD]... + [SEP]: special tokens kept, everything else PAD (captum's BERT tutorial)."""
    import torch

    special = set(tokenizer.all_special_ids) - {tokenizer.pad_token_id}
    keep = torch.tensor([[i in special for i in row] for row in input_ids.tolist()], device=input_ids.device)
    return torch.where(keep, input_ids, torch.full_like(input_ids, tokenizer.pad_token_id or 0))


def attribute_one(model, tokenizer, input_ids, target: int | None, schedule=(8, 16, 24, 32, 50, 100, 200, 300),
                  tolerance: float = 0.05, method: str = "gausslegendre") -> Attribution:
    """Attributions for one tokenised example (1 x L), escalating steps until completeness holds."""
    import torch
    from captum.attr import LayerIntegratedGradients

    forward = logits_fn(model)
    input_ids = input_ids.to(next(model.parameters()).device)      # a no-op on the CPU
    mask = torch.ones_like(input_ids)
    base = baseline_ids(input_ids, tokenizer)
    with torch.inference_mode():
        fx = forward(input_ids, mask)[0]
        target = int(fx.argmax()) if target is None else target
        fb = forward(base, mask)[0]
    gap = float(fx[target] - fb[target])
    lig = LayerIntegratedGradients(forward, embedding_layer(model))
    passes = 2
    for steps in schedule:
        attr = lig.attribute(input_ids, baselines=base, target=target, additional_forward_args=(mask,),
                             n_steps=steps, method=method, internal_batch_size=steps)
        passes += steps
        scores = attr.sum(-1)[0].detach().cpu().numpy().astype(np.float64)
        delta = float(scores.sum() - gap)
        converged = abs(delta) <= tolerance * max(abs(gap), 1e-8)
        if converged:
            break
    tokens = tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
    return Attribution(tokens, scores, target, delta, gap, steps, passes, converged,
                       frozenset(tokenizer.all_special_tokens))


def words_of(tokens, scores, special) -> list[tuple[str, float]]:
    """Merge word pieces (##) into words, summing their attributions; special tokens dropped."""
    words = []
    for tok, s in zip(tokens, scores):
        if tok in special:
            continue
        if tok.startswith("##") and words:
            words[-1] = (words[-1][0] + tok[2:], words[-1][1] + float(s))
        else:
            words.append((tok.lower(), float(s)))
    return words


def attribute_many(model, tokenizer, texts, targets, max_length: int, schedule, tolerance: float, what: str):
    """Attributions for many examples, batched by token length (tasks/text_ig.py). Each length bucket starts at
    the step count earlier examples needed (the median of the last five), not at the bottom of the ladder:
    similar inputs need similar step counts, and a failed try at too few steps is wasted work."""
    import torch

    from ..progress import Progress
    from .text_ig import attribute_bucket

    torch.manual_seed(0)
    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    buckets = {}
    for i, ids in enumerate(encoded):
        buckets.setdefault(len(ids), []).append(i)
    out, needed = [None] * len(texts), []
    bar = Progress(what, len(texts), "examples")
    start = time.perf_counter()
    for length in sorted(buckets):
        idx = buckets[length]
        first = int(np.median(needed[-5:])) if needed else schedule[0]
        rungs = tuple(s for s in schedule if s >= first) or schedule[-1:]
        ids = torch.tensor([encoded[i] for i in idx])
        for i, a in zip(idx, attribute_bucket(model, tokenizer, ids, [targets[i] for i in idx], rungs, tolerance)):
            out[i] = a
            if a.converged:
                needed.append(a.steps)
        bar.update(len(idx))
    bar.close()
    return out, time.perf_counter() - start
