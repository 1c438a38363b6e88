"""One audit run: spec -> data -> models -> evidence -> checks -> gate -> outputs (manifest last)."""
from __future__ import annotations

import datetime as dt
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import CHECKS, StatsConfig
from .data import load_dataset
from .gate import gate
from .fileio import sha256_tree
from .packaged import default_policy
from .policy import Policy, load_policy
from .progress import say
from .results import CheckResult, ModelRole, Status
from .spec import AuditSpec, parse_spec



@dataclass
class RunOutcome:
    run_dir: Path
    results: dict
    exit_code: int


def stats_config(policy: Policy, seed: int) -> StatsConfig:
    d = policy.defaults
    return StatsConfig(n_boot=d.n_boot, ci_level=d.ci_level, seed=seed, min_group_n=d.min_group_n,
                       min_pos=d.min_pos, min_neg=d.min_neg)


def new_run_dir(output: Path, name: str) -> Path:
    """A unique folder per run, so concurrent runs into one output folder never share files."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    from .fileio import confined

    run_dir = confined(output, output / f"{name}-{stamp}-{secrets.token_hex(3)}", "name")
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def model_card_facts(folder: Path) -> dict:
    """License and title from a model folder's README (Hugging Face card front matter), when present."""
    import re

    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8", errors="replace")[:20000]
    facts = {}
    m = re.search(r"^license:\s*([\w.\-]+)\s*$", text, re.M)
    if m:
        facts["license"] = m.group(1)
    m = re.search(r"^#\s+(\S.*?)\s*$", text, re.M)
    if m:
        facts["title"] = m.group(1)[:100]
    return facts


def prepare_models(spec: AuditSpec, dataset, cache_root: Path, timings: dict):
    """Load the base; load or fine-tune (cached by content) the adapted model."""
    from .models.finetune import cached_finetune, finetune, finetune_key
    from .models.loading import LoadedModels, load_classifier, load_encoder, load_tokenizer, resolve_base, set_threads

    set_threads()
    t = time.perf_counter()
    where = str(spec.source_file)
    base_path = resolve_base(spec.model.base, f"{where}: model.base")
    base = load_encoder(base_path, spec.model.allow_pickle, field=f"{where}: model.base")
    tokenizer = load_tokenizer(base_path)
    info = {"base": {"ref": spec.model.base, "path": str(base_path), "sha256": sha256_tree(base_path),
                     **model_card_facts(base_path)}}
    if spec.model.adapted is not None:
        adapted_path = Path(spec.model.adapted)
        info["adapted"] = {"ref": spec.model.adapted, "source": "given"}
    else:
        train = dataset.splits["train"]
        key = finetune_key(info["base"]["sha256"], train.digest, dataset.classes, spec.model.finetune, spec.seed)
        adapted_path = cached_finetune(cache_root, key)
        if adapted_path is not None:
            say(f"fine-tuned model found in cache: {adapted_path}")
        else:
            t_ft = time.perf_counter()
            adapted_path = finetune(base_path, tokenizer, train.texts, train.y, dataset.classes,
                                    spec.model.finetune, spec.seed, cache_root, key)
            timings["finetune_s"] = round(time.perf_counter() - t_ft, 2)
        r = spec.model.finetune
        info["adapted"] = {"ref": None, "source": "fine-tuned by transfer-audit",
                           "recipe": {"method": r.method.value, "epochs": r.epochs, "learning_rate": r.learning_rate,
                                      "batch_size": r.batch_size, "max_length": r.max_length, "seed": spec.seed,
                                      "train_rows": len(train)}}
    adapted, relation, pickled = load_classifier(adapted_path, base_path, dataset.n_classes, spec.model.allow_pickle,
                                                 field=f"{where}: model.adapted")
    info["adapted"].update({"path": str(adapted_path), "sha256": sha256_tree(adapted_path), "relation": relation})
    timings["models_s"] = round(time.perf_counter() - t, 2)
    return LoadedModels(tokenizer, base, adapted, base_path, adapted_path, relation, pickled), info


def build_evidence(spec: AuditSpec, dataset, models, model_info: dict, cache_root: Path, timings: dict):
    from .evidence import LAYER_SAMPLE, Evidence, build_control_probs, cached_forward, softmax
    from .models.baselines import fit_probe

    t = time.perf_counter()
    max_len = spec.model.finetune.max_length
    evidence_dir = cache_root / "evidence"
    stats: dict = {}
    splits = [s for s in ("train", "reference", "current", "source_eval") if s in dataset.splits]
    eval_splits = [s for s in ("reference", "current") if s in dataset.splits]
    emb = {"base": {}, "adapted": {}}
    layers = {}
    logits = {}
    for split in splits:
        rows = LAYER_SAMPLE if split == "reference" else 0
        out = cached_forward(evidence_dir, model_info["base"]["sha256"], dataset.splits[split], models.base,
                             models.tokenizer, max_len, False, rows, f"base model on {split}", stats)
        emb["base"][split] = out["pooled"]
        if "layers" in out:
            layers["base"] = out["layers"]
    for split in [s for s in splits if s != "train"]:
        rows = LAYER_SAMPLE if split == "reference" else 0
        out = cached_forward(evidence_dir, model_info["adapted"]["sha256"], dataset.splits[split], models.adapted,
                             models.tokenizer, max_len, True, rows, f"adapted model on {split}", stats)
        emb["adapted"][split] = out["pooled"]
        logits[split] = out["logits"]
        if "layers" in out:
            layers["adapted"] = out["layers"]
    timings["forward_s"] = round(time.perf_counter() - t, 2)
    timings["forward"] = stats.get("forward", [])
    t = time.perf_counter()
    probe = fit_probe(emb["base"]["train"], dataset.splits["train"].y, spec.seed)
    probs = {ModelRole.ADAPTED.value: {s: softmax(logits[s]) for s in eval_splits},
             ModelRole.BASE_PROBE.value: {s: probe.predict_proba(emb["base"][s]) for s in eval_splits}}
    control_probs, control_models, control_info = build_control_probs(dataset, spec.seed, eval_splits)
    probs.update(control_probs)
    timings["baselines_s"] = round(time.perf_counter() - t, 2)
    forward_rows = {f"base/{s}": len(dataset.splits[s]) for s in splits}
    forward_rows.update({f"adapted/{s}": len(dataset.splits[s]) for s in splits if s != "train"})
    info = {"controls": control_info, "forward_rows": forward_rows, "cache_hits": stats.get("cache_hits", 0),
            "max_length": max_len}
    return Evidence(dataset=dataset, probs=probs, embeddings=emb, layers=layers, seed=spec.seed, info=info,
                    models=models, probe=probe, controls=control_models)


def run_checks(spec: AuditSpec, evidence, stats: StatsConfig, timings: dict) -> list[CheckResult]:
    results = []
    for name, config in spec.checks.items():
        check = CHECKS[name]
        t = time.perf_counter()
        say(f"check {name}: running")
        result = check.run(evidence, config, stats)
        timings.setdefault("checks_s", {})[name] = round(time.perf_counter() - t, 3)
        results.append(result)
    return results


def label_counts(split, classes) -> dict:
    counts = np.bincount(split.y, minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts)}


def run_audit(spec_path: str | Path, policy_path: str | Path | None = None, out: str | Path | None = None,
              allow_pickle: bool = False, today: dt.date | None = None, signer=None) -> RunOutcome:
    """One audit; signer (signing.load_signer) signs attestation.intoto.json, which is written either way."""
    from .outputs import assemble_results, write_outputs

    started = dt.datetime.now(dt.timezone.utc)
    timings: dict = {}
    t0 = time.perf_counter()
    if policy_path is not None and not Path(policy_path).is_file():
        from .errors import MSG_MISSING_FILE, InputError

        raise InputError.make(MSG_MISSING_FILE, where="command line", field="--policy", value=str(policy_path))
    spec = parse_spec(spec_path)
    if allow_pickle:
        from dataclasses import replace

        spec = replace(spec, model=replace(spec.model, allow_pickle=True))
    policy_file = Path(policy_path) if policy_path else (spec.policy or default_policy())
    policy = load_policy(policy_file)
    output = Path(out).resolve() if out else spec.output
    cache_root = output / ".cache"
    dataset = load_dataset(spec.data, spec.seed, str(spec.source_file))
    models, model_info = prepare_models(spec, dataset, cache_root, timings)
    evidence = build_evidence(spec, dataset, models, model_info, cache_root, timings)
    stats = stats_config(policy, spec.seed)
    check_results = run_checks(spec, evidence, stats, timings)
    if "attribution_seconds" in evidence.info:
        timings["attribution_s"] = evidence.info["attribution_seconds"]
    measurements = [m for r in check_results for m in r.measurements]
    today = today or dt.date.today()
    decision = gate(measurements, {r.check for r in check_results if r.status is not Status.SKIPPED}, policy, today)
    results = assemble_results(spec, policy, dataset, evidence, model_info, check_results, decision, today)
    run_dir = new_run_dir(output, spec.name)
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    write_outputs(run_dir, results, spec, policy, dataset, model_info, timings, started, signer)
    return RunOutcome(run_dir, results, int(decision.exit_code))
