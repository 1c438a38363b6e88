"""The text forward pass, the floor of an audit's cost: rows sorted by token count and padded per batch
(length bucketing), under torch.inference_mode, on the model's device (with autocast off the CPU), keeping
logits, pooled embeddings (the base's own sentence-transformers pooling, mean otherwise) and, for a sample of
rows, the mean-pooled state of every layer (for CKA).

Split in three so a distributed executor runs exactly the local computation: `bucket_plan` (which rows go in
which batch, decided once by the driver), `forward_batch` (one padded batch; the only part that runs a model)
and `Assembly` (the outputs back in row order, whatever order the batches finish in)."""
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


def bucket_plan(tokenizer, texts, max_length: int, batch_size: int = INFER_BATCH) -> tuple[list, list]:
    """Token ids per row, and the batches: row indices sorted by token count (stable), batch_size at a time."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(r) for r in ids], kind="stable")
    return ids, [order[s:s + batch_size] for s in range(0, len(ids), batch_size)]


def forward_batch(model, rows, ids, pad: int, classifier: bool, layer_rows: int = 0, pooling=("mean",)) -> dict:
    """One padded batch on the model's device: rows are the global row indices, ids their token ids (same order).
    Returns {'rows', 'pooled': (b,d), 'logits': (b,K)?, 'layers': (L,b',d)?, 'layer_rows': (b',)?}."""
    import contextlib

    import torch

    from ..runtime import autocast_dtype

    device = next(model.parameters()).device
    dtype = autocast_dtype(device)
    precision = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    rows = np.asarray(rows, dtype=np.int64)
    width = max(len(r) for r in ids)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(ids):
        input_ids[j, : len(r)] = torch.as_tensor(np.asarray(r, dtype=np.int64))
        mask[j, : len(r)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)      # no-ops on the CPU
    with torch.inference_mode(), precision:
        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        hidden = out.hidden_states
        result = {"rows": rows, "pooled": pool(hidden[-1], mask, pooling).float().cpu().numpy()}
        if classifier:
            result["logits"] = out.logits.float().cpu().numpy()
        want = np.flatnonzero(rows < layer_rows)
        if len(want):
            per_layer = torch.stack([_mean_pool(h, mask) for h in hidden]).float().cpu().numpy()
            result["layers"], result["layer_rows"] = per_layer[:, want], rows[want]
    return result


class Assembly:
    """Per-batch outputs written into (n, ...) arrays by row index; checks that every row arrived exactly once."""

    def __init__(self, n: int):
        self.n = n
        self.seen = np.zeros(n, dtype=np.int64)
        self.arrays: dict = {}
        self.layers: dict = {}

    def add(self, part: dict) -> None:
        rows = part["rows"]
        self.seen[rows] += 1
        for key in ("pooled", "logits"):
            if key in part:
                if key not in self.arrays:
                    self.arrays[key] = np.zeros((self.n, part[key].shape[1]), dtype=np.float32)
                self.arrays[key][rows] = part[key]
        for j, r in enumerate(part.get("layer_rows", ())):
            self.layers[int(r)] = part["layers"][:, j]

    def result(self) -> dict:
        if self.n and not np.all(self.seen == 1):
            bad = int(np.flatnonzero(self.seen != 1)[0])
            raise RuntimeError(f"forward pass: row {bad} arrived {int(self.seen[bad])} times, not once")
        out = dict(self.arrays)
        if self.layers:
            out["layers"] = np.stack([self.layers[i] for i in sorted(self.layers)], axis=1).astype(np.float32)
        return out


def forward_split(model, tokenizer, texts, max_length: int, classifier: bool, layer_rows: int = 0,
                  batch_size: int = INFER_BATCH, what: str = "inference", pooling=("mean",)) -> dict:
    """One bucketed forward pass: {'pooled': (n,d), 'logits': (n,K)?, 'layers': (L,k,d)?}."""
    ids, batches = bucket_plan(tokenizer, texts, max_length, batch_size)
    pad = tokenizer.pad_token_id or 0
    assembly = Assembly(len(ids))
    bar = Progress(what, len(ids), "rows")
    for rows in batches:
        assembly.add(forward_batch(model, rows, [ids[i] for i in rows], pad, classifier, layer_rows, pooling))
        bar.update(len(rows))
    bar.close()
    return assembly.result()
