"""Integrated gradients on the embedding layer for many texts at once: the same integral as captum's
LayerIntegratedGradients (Gauss-Legendre points and weights from captum), computed in fewer, larger passes.

- Length buckets: texts of the same token length share a batch, so no padding and the interpolation steps of
  several examples go through one forward and one backward pass (rows = examples x steps, bounded by max_rows).
- The convergence test needs F(x) and F(baseline): F(x) of a whole bucket is one batched forward pass, and the
  baseline ([CLS] [PAD]... [SEP]) is the same for every text of a length, so F(baseline) is one pass per bucket.
- The embedding-layer outputs of x and of the baseline are captured during those two passes (captum runs two
  more forward passes per attribute call to get them).
- Adaptive steps: a bucket starts at the step count recent examples needed; only the examples that fail the
  completeness check go on to the next rung.
"""
from __future__ import annotations

import numpy as np

from .base import Attribution


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """captum's 'gausslegendre' points in [0, 1] and their weights."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    sizes, alphas = approximation_parameters("gausslegendre")
    return np.asarray(alphas(steps)), np.asarray(sizes(steps))


def _captured_forward(forward, layer, ids):
    """Logits of ids and the embedding layer's output on the way (one forward pass)."""
    import torch

    seen = []
    hook = layer.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        with torch.inference_mode():
            logits = forward(ids, torch.ones_like(ids))
    finally:
        hook.remove()
    return logits.clone(), seen[0].clone()


def ig_embedding(forward, layer, ids, emb_x, emb_b, targets, steps: int):
    """(k, L, H) attributions to the embedding-layer output of k same-length examples at `steps` points, in one
    forward and one backward pass over k * steps rows."""
    import torch

    alphas, weights = gauss_legendre(steps)
    k, length, width = emb_x.shape
    diff = emb_x - emb_b                                               # (k, L, H)
    a = torch.as_tensor(alphas, dtype=emb_x.dtype, device=emb_x.device).view(1, steps, 1, 1)
    points = (emb_b.unsqueeze(1) + a * diff.unsqueeze(1)).reshape(k * steps, length, width).requires_grad_(True)
    hook = layer.register_forward_hook(lambda m, i, o: points)
    try:
        with torch.enable_grad():
            rows = ids.repeat_interleave(steps, 0)
            logits = forward(rows, torch.ones_like(rows))
            target = torch.as_tensor(targets, device=logits.device).repeat_interleave(steps)
            chosen = logits.gather(1, target.view(-1, 1)).sum()
            grads = torch.autograd.grad(chosen, points)[0].reshape(k, steps, length, width)
    finally:
        hook.remove()
    w = torch.as_tensor(weights, dtype=grads.dtype, device=grads.device).view(1, steps, 1, 1)
    return ((grads * w).sum(1) * diff).detach()


def attribute_bucket(model, tokenizer, ids, targets, rungs, tolerance: float, max_rows: int = 512):
    """Attributions of k tokenised examples of one length (k x L ids); targets None -> predicted class."""
    import torch

    from .text_attribution import baseline_ids, embedding_layer, logits_fn

    forward, layer = logits_fn(model), embedding_layer(model)
    ids = ids.to(next(model.parameters()).device)       # a no-op on the CPU
    base = baseline_ids(ids, tokenizer)
    fx, emb_x = _captured_forward(forward, layer, ids)
    one_base = bool((base == base[:1]).all())
    fb, emb_b = _captured_forward(forward, layer, base[:1] if one_base else base)
    k = ids.shape[0]
    targets = [int(fx[i].argmax()) if t is None else int(t) for i, t in enumerate(targets)]
    rows = torch.arange(k, device=fx.device)
    gaps = (fx[rows, targets] - fb[rows * (not one_base), targets]).cpu().numpy().astype(np.float64)
    emb_b = emb_b.expand(k, -1, -1) if one_base else emb_b
    result = [None] * k
    passes = np.full(k, 2, dtype=np.int64)          # F(x), F(baseline), as captum counts them (one row each)
    pending = list(range(k))
    for steps in rungs:
        per = max(1, max_rows // steps)
        for start in range(0, len(pending), per):
            chunk = pending[start:start + per]
            full = ig_embedding(forward, layer, ids[chunk], emb_x[chunk], emb_b[chunk], [targets[i] for i in chunk],
                                steps)
            scores = full.sum(-1).cpu().numpy().astype(np.float64)
            for j, i in enumerate(chunk):
                passes[i] += steps
                delta = float(scores[j].sum() - gaps[i])
                result[i] = (scores[j], delta, steps, abs(delta) <= tolerance * max(abs(gaps[i]), 1e-8),
                             full[j].cpu().numpy())
        pending = [i for i in pending if not result[i][3]]
        if not pending:
            break
    specials = frozenset(tokenizer.all_special_tokens)
    out = []
    for i in range(k):
        scores, delta, steps, ok, full = result[i]
        tokens = tokenizer.convert_ids_to_tokens(ids[i].tolist())
        out.append(Attribution(tokens, scores, targets[i], delta, float(gaps[i]), steps, int(passes[i]), ok, specials,
                               full))
    return out


def quality_scores(model, tokenizer, text: str, attribution: Attribution, max_length: int, seed: int,
                   sensitivity: bool, n_infidelity: int = 10, n_sensitivity: int = 3) -> dict:
    """captum's infidelity (normalised) and sensitivity_max's quantity for one explained example, in embedding
    space, reusing its attributions: infidelity costs n_infidelity forward rows in one batch; sensitivity (when
    asked) one batched integrated-gradients pass over n_sensitivity perturbed copies of the input.

    sensitivity_max = max over perturbations |phi(x + d) - phi(x)|_F / |phi(x)|_F, d uniform in an L-inf ball
    of radius 2% of the embedding std (captum's definition and default perturbation, normalised as captum does)."""
    import torch
    from captum.metrics import infidelity

    from .text_attribution import baseline_ids, embedding_layer, logits_fn

    torch.manual_seed(seed)
    forward, layer = logits_fn(model), embedding_layer(model)
    ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"]
    ids = ids.to(next(model.parameters()).device)       # a no-op on the CPU
    _, emb_x = _captured_forward(forward, layer, ids)
    _, emb_b = _captured_forward(forward, layer, baseline_ids(ids, tokenizer))
    scale = float(emb_x.std())
    phi = torch.as_tensor(attribution.embedding_scores, device=emb_x.device).unsqueeze(0)
    target = attribution.target

    def f(emb):
        hook = layer.register_forward_hook(lambda m, i, o: emb)
        try:
            n = emb.shape[0]
            return forward(ids.expand(n, -1), torch.ones_like(ids).expand(n, -1))
        finally:
            hook.remove()

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.05 * scale
        return noise, inputs - noise

    infid = infidelity(f, perturb, emb_x, phi, target=target, n_perturb_samples=n_infidelity, normalize=True)
    out = {"infidelity": float(infid[0]), "sensitivity_max": None, "passes": n_infidelity + 2}
    if sensitivity:
        k = n_sensitivity
        noise = (torch.rand((k, *emb_x.shape[1:])) * 2 - 1) * 0.02 * scale
        expl = ig_embedding(forward, layer, ids.expand(k, -1), emb_x + noise, emb_b.expand(k, -1, -1), [target] * k,
                            attribution.steps)
        ratio = (expl - phi).flatten(1).norm(dim=1) / phi.flatten().norm().clamp(min=1e-12)
        out["sensitivity_max"] = float(ratio.max())
        out["passes"] += k * attribution.steps
    return out
