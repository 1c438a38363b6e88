"""Which rows of a source a split keeps: `sample` and `skip` over a seeded permutation (same seed + same source
=> same rows, kept in file order), optionally per value of a column (`mix`).

With `mix: {type: {mono: 0.8, poly: 0.2}}` each value gets its share of `sample` (and of `skip`), largest
remainder first, and the usual rule runs inside that value's rows with a permutation seeded by the seed and
the value itself. So two splits carved from one source with the same mix (train: sample 500; reference:
skip 500, sample 400) never share a row.
"""
from __future__ import annotations

import zlib

import numpy as np

from .errors import InputError


def allocate(total: int, shares) -> list[int]:
    """Whole numbers proportional to shares that add up to total (largest remainder; ties in listed order)."""
    exact = [total * s for s in shares]
    counts = [int(np.floor(x)) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: -(exact[i] - counts[i]))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def sample_rows(df, sample: int | None, skip: int, seed: int, mix=None, where: str = "data"):
    if mix is not None:
        return _mixed(df, sample or 0, skip, seed, mix, where)
    if skip or sample:
        order = np.random.default_rng(seed).permutation(len(df))
        stop = None if sample is None else skip + sample
        rows = np.sort(order[skip:stop])
        if rows.size == 0:
            raise InputError(f"{where}.skip={skip} leaves no rows of the {len(df)} available.")
        df = df.iloc[rows].reset_index(drop=True)
    return df


def _mixed(df, sample: int, skip: int, seed: int, mix, where: str):
    column, shares = mix
    if column not in df.columns:
        raise InputError(f"{where}.mix names column {column!r}, which the source does not have. "
                         f"Columns: {', '.join(map(str, df.columns))}.")
    values = df[column].astype(str).to_numpy()
    counts = allocate(sample, [s for _, s in shares])
    skips = allocate(skip, [s for _, s in shares])
    keep = []
    for (value, _), n, k in zip(shares, counts, skips):
        idx = np.flatnonzero(values == value)
        if k + n > idx.size:
            raise InputError(f"{where}.mix: {column} = {value!r} has {idx.size} rows, but skip and sample need "
                             f"{k + n} of them ({k} skipped, {n} sampled). Lower sample or that value's share.")
        order = np.random.default_rng([seed, zlib.crc32(value.encode())]).permutation(idx.size)
        keep.append(idx[order[k:k + n]])
    rows = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=int)
    if rows.size == 0:
        raise InputError(f"{where}.mix keeps no rows.")
    return df.iloc[rows].reset_index(drop=True)
