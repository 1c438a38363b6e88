"""`transfer-audit transferability SPEC`: rank candidate base models for a spec's data before fine-tuning."""
from __future__ import annotations

from .data import load_dataset
from .spec import parse_spec
from .tasks import modality_for


def score_base(ref: str, dataset, max_length: int, seed: int, folds: int = 5) -> dict:
    from .models.baselines import probe_cv_accuracy
    from .models.loading import load_encoder, load_tokenizer, resolve_base, set_threads
    from .tasks.text_inference import forward_split
    from .transfer_stats import logme

    set_threads()
    path = resolve_base(ref, "--candidate")         # a folder, package:NAME, a cached Hub id or an MLflow URI
    train = dataset.splits["train"]
    emb = forward_split(load_encoder(path, field=ref), load_tokenizer(path), train.inputs, max_length, False,
                        what=f"transferability: {ref}")["pooled"]
    acc = probe_cv_accuracy(emb, train.y, folds, seed)
    return {"ref": ref, "logme": logme(emb, train.y), "probe_accuracy": float(acc.mean()),
            "probe_sd": float(acc.std(ddof=1)), "dims": int(emb.shape[1])}


def rank_candidates(spec_path, candidates) -> list[str]:
    from .runtime import offline

    with offline():
        return _rank(spec_path, candidates)


def _rank(spec_path, candidates) -> list[str]:
    spec = parse_spec(spec_path)
    dataset = load_dataset(spec.data, spec.seed, spec.where, modality_for(spec), base_dir=spec.source_file.parent)
    refs = [spec.model.base, *candidates]
    rows = sorted((score_base(r, dataset, spec.model.finetune.max_length, spec.seed) for r in refs),
                  key=lambda r: -r["logme"])
    lines = [f"transferability on {len(dataset.splits['train'])} train rows (advisory: rankings are unstable "
             "across tasks; confirm with a fine-tune)", f"{'rank':<5}{'LogME':>9}{'probe acc':>11}  base model"]
    for i, r in enumerate(rows, 1):
        lines.append(f"{i:<5}{r['logme']:>9.4f}{r['probe_accuracy']:>7.3f}±{r['probe_sd']:.3f}  {r['ref']}")
    return lines
