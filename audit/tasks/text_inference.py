"""The text forward pass, the floor of an audit's cost: rows sorted by token count and padded per batch
(length bucketing), under torch.inference_mode, keeping logits, mean-pooled embeddings and, for a sample of
rows, the pooled state of every layer (for CKA)."""
from __future__ import annotations

import numpy as np

from ..progress import Progress

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
