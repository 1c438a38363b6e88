"""The base model's evidence, computed once for a whole sweep: every entry audits a different adapted model on
the same rows against the same base, so the base's forward pass on each split is the same content-addressed cache
entry for all of them. Computed here before the entries start; the Ray executor also puts the entries' bytes in
the object store so a worker whose disk does not hold the cache gets them without recomputing."""
from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "reference", "current", "source_eval")     # the order build_evidence runs the base in


def shared_base_evidence(spec, cache_root: Path) -> dict:
    """Load the data (input errors surface here, before any folder is written) and make sure the base's outputs
    on every split are cached. Returns what was shared and the cache files' bytes (`payload`)."""
    from .data import load_dataset
    from .evidence import LAYER_SAMPLE, cached_forward, forward_cache_path
    from .fileio import sha256_tree
    from .tasks import modality_for
    from .tasks.base import Models

    modality = modality_for(spec)
    dataset = load_dataset(spec.data, spec.seed, spec.where, modality,
                           base_dir=spec.source_file.parent if spec.source_file else None)
    if getattr(modality, "name", None) != "text":     # other modalities load their base their own way: each
        return {"files": 0, "computed": False, "base_sha256": "", "bytes": 0, "payload": {}}   # entry caches it
    where = f"{spec.source_file}: model.base"
    from .models.loading import load_encoder, load_tokenizer, resolve_base, set_threads

    base_path = resolve_base(spec.model.base, where)
    digest = sha256_tree(base_path)
    evidence_dir = cache_root / "evidence"
    plan = [(s, LAYER_SAMPLE if s == "reference" else 0) for s in SPLITS if s in dataset.splits]
    paths = {s: forward_cache_path(evidence_dir, digest, modality, "base", dataset.splits[s].digest, rows)
             for s, rows in plan}
    missing = [(s, rows) for s, rows in plan if not paths[s].exists()]
    if missing:
        set_threads()
        models = Models(modality, load_encoder(base_path, spec.model.allow_pickle, field=where), None,
                        load_tokenizer(base_path))
        for s, rows in missing:
            cached_forward(evidence_dir, digest, models, "base", dataset.splits[s], rows, f"base model on {s}", {})
    payload = {p.name: p.read_bytes() for p in paths.values()}
    return {"files": len(paths), "computed": bool(missing), "base_sha256": digest,
            "bytes": sum(map(len, payload.values())), "payload": payload}


def seed_cache(cache_root: Path, payload: dict) -> None:
    """Write the shared base evidence into this machine's cache where it is missing (content-named files)."""
    from .fileio import atomic_write_bytes

    for name, data in payload.items():
        path = cache_root / "evidence" / name
        if not path.exists():
            atomic_write_bytes(path, data)
