"""Evidence: every model output the checks need, computed once per (model, split) and cached by content.

The encoder forward pass is the cost floor of an audit. It runs once per model and split with length
bucketing (rows sorted by token count, padded per batch) under torch.inference_mode, and its outputs
(logits, mean-pooled embeddings, per-layer pooled states on a sample) are stored as .npz (no pickle).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes, digest_of
from .progress import Progress
from .results import ModelRole

EVIDENCE_VERSION = "evidence-v1"
LAYER_SAMPLE = 256          # rows of the reference split whose per-layer states are kept (CKA)
INFER_BATCH = 64


def _mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def forward_split(model, tokenizer, texts, max_length: int, classifier: bool, layer_rows: int = 0,
                  batch_size: int = INFER_BATCH, what: str = "inference") -> dict:
    """One bucketed forward pass: {'pooled': (n,d), 'logits': (n,K)?, 'layers': (L,k,d)?}."""
    import torch

    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    n = len(ids)
    order = np.argsort([len(r) for r in ids], kind="stable")
    pad = tokenizer.pad_token_id or 0
    pooled, logits, layers = [None] * n, [None] * n, {}
    bar = Progress(what, n, "rows")
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            width = max(len(ids[i]) for i in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                input_ids[j, : len(ids[i])] = torch.as_tensor(ids[i])
                mask[j, : len(ids[i])] = 1
            out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states
            last = _mean_pool(hidden[-1], mask).float().numpy()
            want_layers = [j for j, i in enumerate(rows) if i < layer_rows]
            if want_layers:
                per_layer = torch.stack([_mean_pool(h, mask) for h in hidden]).float().numpy()
                for j in want_layers:
                    layers[int(rows[j])] = per_layer[:, j]
            for j, i in enumerate(rows):
                pooled[i] = last[j]
                if classifier:
                    logits[i] = out.logits[j].float().numpy()
            bar.update(len(rows))
    bar.close()
    result = {"pooled": np.stack(pooled).astype(np.float32)}
    if classifier:
        result["logits"] = np.stack(logits).astype(np.float32)
    if layers:
        result["layers"] = np.stack([layers[i] for i in sorted(layers)], axis=1).astype(np.float32)
    return result


def cached_forward(cache_dir: Path, model_digest: str, split, model, tokenizer, max_length: int,
                   classifier: bool, layer_rows: int, what: str, stats: dict) -> dict:
    key = digest_of(EVIDENCE_VERSION, model_digest, split.digest, max_length, classifier, layer_rows)
    path = cache_dir / f"{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                stats["cache_hits"] = stats.get("cache_hits", 0) + 1
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            path.unlink(missing_ok=True)      # a corrupt cache entry is recomputed, never trusted
    t = time.perf_counter()
    out = forward_split(model, tokenizer, split.texts, max_length, classifier, layer_rows, what=what)
    stats.setdefault("forward", []).append({"what": what, "rows": len(split), "seconds": round(time.perf_counter() - t, 3)})
    buf = io.BytesIO()
    np.savez(buf, **out)
    atomic_write_bytes(path, buf.getvalue())
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Evidence:
    """What the checks read. probs[role][split] are (n, K) class probabilities; nothing here calls a model."""

    dataset: object
    probs: dict
    embeddings: dict                 # {"base"|"adapted": {split: (n, d)}}
    layers: dict                     # {"base"|"adapted": (L, k, d) on the reference sample}
    seed: int
    info: dict = field(default_factory=dict)
    models: object = None            # LoadedModels, for attribution only
    probe: object = None
    controls: dict = field(default_factory=dict)
    _bootstraps: dict = field(default_factory=dict)   # split -> the one shared CellBootstrap

    def roles(self, split: str) -> list[str]:
        return [r for r in self.probs if split in self.probs[r]]

    def pred(self, role: str, split: str) -> np.ndarray:
        return self.probs[role][split].argmax(axis=1)

    def y(self, split: str) -> np.ndarray:
        return self.dataset.splits[split].y

    def cells(self, split: str, n_boot: int):
        """The one paired bootstrap of a split, shared by every check and role: keys are the label, every
        role's prediction and every sensitive column."""
        from .stats import CellBootstrap

        key = (split, n_boot)
        if key not in self._bootstraps:
            frame = self.dataset.splits[split].frame
            keys = [self.y(split)] + [self.pred(r, split) for r in sorted(self.probs) if split in self.probs[r]]
            keys += [frame[c].astype(str).factorize(sort=True)[0] for c in self.dataset.sensitive if c in frame]
            self._bootstraps[key] = CellBootstrap(keys, n_boot, self.seed)
        return self._bootstraps[key]


def score_texts(evidence, texts, what: str) -> dict:
    """Class probabilities of new texts (counterfactuals) for the adapted model and the base probe."""
    m = evidence.models
    max_len = evidence.info["max_length"]
    adapted = forward_split(m.adapted, m.tokenizer, texts, max_len, True, what=f"{what}: adapted model")
    base = forward_split(m.base, m.tokenizer, texts, max_len, False, what=f"{what}: base model")
    evidence.info.setdefault("extra_forward_rows", 0)
    evidence.info["extra_forward_rows"] += 2 * len(texts)
    return {ModelRole.ADAPTED.value: softmax(adapted["logits"]),
            ModelRole.BASE_PROBE.value: evidence.probe.predict_proba(base["pooled"])}


def build_control_probs(dataset, seed: int, splits) -> tuple[dict, dict, dict]:
    """M0: TF-IDF + LR on the text, and trees on the raw columns when `features` are given.

    The stronger one on the reference split (held out from train, not the audited current split) becomes
    `no_transfer`, the control that defines negative transfer.
    """
    from .models.baselines import TabularControl, fit_text_control, full_proba

    train = dataset.splits["train"]
    k = dataset.n_classes
    probs, models = {}, {}
    text_model = fit_text_control(train.texts, train.y, seed)
    models[ModelRole.NO_TRANSFER_TEXT.value] = text_model
    probs[ModelRole.NO_TRANSFER_TEXT.value] = {s: full_proba(text_model, list(dataset.splits[s].texts), k)
                                               for s in splits}
    if dataset.features:
        tab = TabularControl(dataset.features, seed).fit(train.frame, train.y)
        models[ModelRole.NO_TRANSFER_TABULAR.value] = tab
        probs[ModelRole.NO_TRANSFER_TABULAR.value] = {s: full_proba(tab, dataset.splits[s].frame, k)
                                                      for s in splits}
    ref_y = dataset.splits["reference"].y
    scores = {role: float(np.mean(p["reference"].argmax(1) == ref_y)) for role, p in probs.items()}
    chosen = max(sorted(scores), key=lambda r: scores[r])
    probs[ModelRole.NO_TRANSFER.value] = probs[chosen]
    return probs, models, {"chosen": chosen, "reference_accuracy": scores}
