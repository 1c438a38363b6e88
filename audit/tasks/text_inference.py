"""The text forward pass, the floor of an audit's cost: rows sorted by token count and padded per batch
(length bucketing), under torch.inference_mode, on the model's device (with autocast off the CPU), keeping
logits, pooled embeddings (the base's own sentence-transformers pooling, mean otherwise) and, for a sample of
rows, the mean-pooled state of every layer (for CKA)."""
from __future__ import annotations

import numpy as np

from ..progress import Progress

INFER_BATCH = 64


def _mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def pool(hidden, mask, modes=("mean",)):
    """sentence-transformers' Pooling modes (concatenated in its order when several are on); rows are right-padded."""
    import torch

    if tuple(modes) == ("mean",):
        return _mean_pool(hidden, mask)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(1).values)
        elif mode == "mean":
            parts.append(_mean_pool(hidden, mask))
        elif mode == "mean_sqrt_len":
            parts.append((hidden * m).sum(1) / m.sum(1).clamp(min=1.0).sqrt())
        elif mode == "weightedmean":
            w = m * torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)[None, :, None]
            parts.append((hidden * w).sum(1) / w.sum(1).clamp(min=1e-9))
        elif mode == "lasttoken":
            last = mask.sum(1).clamp(min=1) - 1
            parts.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return torch.cat(parts, dim=-1)


def forward_split(model, tokenizer, texts, max_length: int, classifier: bool, layer_rows: int = 0,
                  batch_size: int = INFER_BATCH, what: str = "inference", pooling=("mean",)) -> dict:
    """One bucketed forward pass: {'pooled': (n,d), 'logits': (n,K)?, 'layers': (L,k,d)?}."""
    import contextlib

    import torch

    from ..runtime import autocast_dtype

    device = next(model.parameters()).device
    dtype = autocast_dtype(device)
    precision = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    n = len(ids)
    order = np.argsort([len(r) for r in ids], kind="stable")
    pad = tokenizer.pad_token_id or 0
    pooled, logits, layers = [None] * n, [None] * n, {}
    bar = Progress(what, n, "rows")
    with torch.inference_mode(), precision:
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            width = max(len(ids[i]) for i in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                input_ids[j, : len(ids[i])] = torch.as_tensor(ids[i])
                mask[j, : len(ids[i])] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)      # no-ops on the CPU
            out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states
            last = pool(hidden[-1], mask, pooling).float().cpu().numpy()
            want_layers = [j for j, i in enumerate(rows) if i < layer_rows]
            if want_layers:
                per_layer = torch.stack([_mean_pool(h, mask) for h in hidden]).float().cpu().numpy()
                for j in want_layers:
                    layers[int(rows[j])] = per_layer[:, j]
            batch_logits = out.logits.float().cpu().numpy() if classifier else None
            for j, i in enumerate(rows):
                pooled[i] = last[j]
                if classifier:
                    logits[i] = batch_logits[j]
            bar.update(len(rows))
    bar.close()
    result = {"pooled": np.stack(pooled).astype(np.float32)}
    if classifier:
        result["logits"] = np.stack(logits).astype(np.float32)
    if layers:
        result["layers"] = np.stack([layers[i] for i in sorted(layers)], axis=1).astype(np.float32)
    return result
