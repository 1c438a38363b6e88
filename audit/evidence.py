"""Evidence: every model output the checks need, computed once per (model, split) and cached by content.

The forward pass is the cost floor of an audit. It runs once per model and split through the modality
(tasks/), and its outputs (logits, pooled embeddings, per-layer pooled states on a sample) are stored as .npz
(no pickle) under a key of the model's digest, the rows' digest and the modality's settings. Evidence itself
is plain data: nothing in it calls a model.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes, digest_of
from .results import ModelRole

EVIDENCE_VERSION = "evidence-v2"     # v2: per-layer states stored one array per layer (widths may differ)
LAYER_SAMPLE = 256          # rows of the reference split whose per-layer states are kept (CKA)


@dataclass(frozen=True)
class Evidence:
    """What the checks read. probs[role][split] are (n, K) class probabilities."""

    dataset: object
    probs: dict
    embeddings: dict                 # {"base"|"adapted": {split: (n, d)}}
    layers: dict                     # {"base"|"adapted": [L arrays (k, d_l)] on the reference sample}
    seed: int                        # the statistics seed (the policy's), for the shared bootstrap
    modality: object = None          # how inputs are read (descriptors, control features); never runs a model
    info: dict = field(default_factory=dict)
    # A streamed split (stream.py) is held as its distinct cells (label, every role's prediction, every sensitive
    # value): weights[split][i] is how many rows cell i stands for, score_hist[role][split] the positive-class
    # score histogram (sufficient_stats.GRID bins per class), and rows_sample the evidence of a seeded uniform
    # sample of its rows, for what needs rows (counterfactual swaps).
    weights: dict = field(default_factory=dict)
    score_hist: dict = field(default_factory=dict)
    rows_sample: object = None
    _bootstraps: dict = field(default_factory=dict, repr=False, compare=False)   # memo: (split, n_boot) -> draw

    def roles(self, split: str) -> list[str]:
        return [r for r in self.probs if split in self.probs[r]]

    def pred(self, role: str, split: str) -> np.ndarray:
        return self.probs[role][split].argmax(axis=1)

    def y(self, split: str) -> np.ndarray:
        return self.dataset.splits[split].y

    def w(self, split: str) -> np.ndarray | None:
        """Rows each entry of the split stands for (None: one row each)."""
        return self.weights.get(split)

    def n(self, split: str) -> int:
        w = self.w(split)
        return int(self.y(split).size if w is None else w.sum())

    def cells(self, split: str, n_boot: int):
        """The one paired bootstrap of a split, shared by every check and role: keys are the label, every
        role's prediction and every sensitive column."""
        from .stats import CellBootstrap

        key = (split, n_boot)
        if key not in self._bootstraps:
            frame = self.dataset.splits[split].frame
            keys = [self.y(split)] + [self.pred(r, split) for r in sorted(self.probs) if split in self.probs[r]]
            keys += [frame[c].astype(str).factorize(sort=True)[0] for c in self.dataset.sensitive if c in frame]
            self._bootstraps[key] = CellBootstrap(keys, n_boot, self.seed, self.w(split))
        return self._bootstraps[key]


def forward_cache_path(cache_dir: Path, model_digest: str, modality, which: str, split_digest: str,
                       layer_rows: int) -> Path:
    """Where one model's outputs on one split's rows are cached (a sweep shares the base's entries)."""
    key = digest_of(EVIDENCE_VERSION, model_digest, split_digest, *modality.cache_key(), which == "adapted",
                    layer_rows)
    return cache_dir / f"{key}.npz"


def cached_forward(cache_dir: Path, model_digest: str, models, which: str, split, layer_rows: int, what: str,
                   stats: dict) -> dict:
    """modality.forward on one split, or its stored result when the same model has seen the same rows."""
    return cached_forwards(cache_dir, models, {0: (which, model_digest, split, layer_rows, what)}, stats)[0]


def cached_forwards(cache_dir: Path, models, jobs: dict, stats: dict, forward=None) -> dict:
    """Outputs of the audit's models on their splits, jobs = {key: (which, model_digest, split, layer_rows, what)}:
    stored results where the same model has seen the same rows, the rest computed by modality.forward one at a
    time, or by `forward.many` (another executor) all in one go."""
    out, todo = {}, {}
    for key, (which, digest, split, layer_rows, _what) in jobs.items():
        path = forward_cache_path(cache_dir, digest, models.modality, which, split.digest, layer_rows)
        out[key] = _load_cached(path, stats)
        if out[key] is None:
            todo[key] = path
    if not todo:
        return out
    t = time.perf_counter()
    if forward is None:
        for key in todo:
            which, _, split, layer_rows, what = jobs[key]
            out[key] = models.modality.forward(models, which, split.inputs, layer_rows=layer_rows, what=what)
            seconds = round(time.perf_counter() - t, 3)
            stats.setdefault("forward", []).append({"what": what, "rows": len(split), "seconds": seconds})
            t = time.perf_counter()
    else:
        done = forward.many(models, [(jobs[k][0], jobs[k][2].inputs, jobs[k][3], jobs[k][4]) for k in todo])
        out.update(zip(todo, done))
        stats.setdefault("forward", []).append({"what": "; ".join(jobs[k][4] for k in todo),
                                                "rows": sum(len(jobs[k][2]) for k in todo),
                                                "seconds": round(time.perf_counter() - t, 3)})
    for key, path in todo.items():
        out[key] = _unpack(_pack(out[key]))
        buf = io.BytesIO()
        np.savez(buf, **_pack(out[key]))
        atomic_write_bytes(path, buf.getvalue())
    return out


def _load_cached(path: Path, stats: dict) -> dict | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = _unpack({k: z[k] for k in z.files})
    except (OSError, ValueError):
        path.unlink(missing_ok=True)      # a corrupt cache entry is recomputed, never trusted
        return None
    stats["cache_hits"] = stats.get("cache_hits", 0) + 1
    return out


def _pack(out: dict) -> dict:
    """A forward pass's outputs as flat arrays for .npz: the per-layer states one array each."""
    flat = {k: v for k, v in out.items() if k != "layers"}
    flat.update({f"layers.{i}": np.asarray(a) for i, a in enumerate(out.get("layers", ()))})
    return flat


def _unpack(flat: dict) -> dict:
    out = {k: v for k, v in flat.items() if not k.startswith("layers.")}
    layers = sorted((int(k.split(".")[1]), v) for k, v in flat.items() if k.startswith("layers."))
    if layers:
        out["layers"] = [v for _, v in layers]
    if "layer_names" in out:
        out["layer_names"] = [str(n) for n in out["layer_names"]]
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def build_evidence(dataset, models, model_info: dict, cache_root: Path, seed: int, stats_seed: int,
                   timings: dict, forward=None):
    """One forward pass per model and split (modality.forward, or `forward` on another executor), then the base
    probe (M1) and the controls (M0). `forward` has .many(models, [(which, inputs, layer_rows, what)]) -> outputs.
    Returns the Evidence and the models with the fitted probe attached (for the checks that need models)."""
    from .controls import build_controls
    from .models.baselines import fit_probe

    t = time.perf_counter()
    evidence_dir = cache_root / "evidence"
    stats: dict = {}
    splits = [s for s in ("train", "reference", "current", "source_eval") if s in dataset.splits]
    eval_splits = [s for s in ("reference", "current") if s in dataset.splits]
    emb, layers, logits, layer_names = {"base": {}, "adapted": {}}, {}, {}, None
    jobs = {(which, s): (which, model_info[which]["sha256"], dataset.splits[s],
                         LAYER_SAMPLE if s == "reference" else 0, f"{which} model on {s}")
            for which, names in (("base", splits), ("adapted", [s for s in splits if s != "train"])) for s in names}
    outs = cached_forwards(evidence_dir, models, jobs, stats, forward)
    for which, names in (("base", splits), ("adapted", [s for s in splits if s != "train"])):
        for split in names:
            out = outs[(which, split)]
            emb[which][split] = out["pooled"]
            if which == "adapted":
                logits[split] = out["logits"]
            if "layers" in out:
                layers[which] = out["layers"]
                layer_names = out.get("layer_names") or layer_names
    timings["forward_s"] = round(time.perf_counter() - t, 2)
    timings["forward"] = stats.get("forward", [])
    t = time.perf_counter()
    probe = fit_probe(emb["base"]["train"], dataset.splits["train"].y, seed)
    probs = {ModelRole.ADAPTED.value: {s: softmax(logits[s]) for s in eval_splits},
             ModelRole.BASE_PROBE.value: {s: probe.predict_proba(emb["base"][s]) for s in eval_splits}}
    control_probs, control_info, fitted = build_controls(dataset, models.modality, seed, eval_splits)
    probs.update(control_probs)
    timings["baselines_s"] = round(time.perf_counter() - t, 2)
    forward_rows = {f"base/{s}": len(dataset.splits[s]) for s in splits}
    forward_rows.update({f"adapted/{s}": len(dataset.splits[s]) for s in splits if s != "train"})
    info = {"controls": control_info, "forward_rows": forward_rows, "cache_hits": stats.get("cache_hits", 0),
            "max_length": getattr(models.modality, "max_length", None), "layer_names": layer_names}
    evidence = Evidence(dataset=dataset, probs=probs, embeddings=emb, layers=layers, seed=stats_seed,
                        modality=models.modality, info=info)
    return evidence, models.with_probe(probe, fitted)
