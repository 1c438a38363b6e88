"""Benchmarks (not tests): `make bench`. Prints ratios measured side by side in one run and writes
bench/results.json. Absolute times on a shared machine are noisy; the ratios are the point.

1. overhead: an audit of an already adapted model (no fine-tuning, no attribution, every other check on)
   against the floor it cannot avoid (loading both models + one forward pass per model and split).
2. naive: each check calling the models itself, as a user gluing the libraries by hand would.
3. attribution: ours (steps adapt per example) vs captum one example at a time with its defaults (n_steps=50),
   both held to |delta| <= 5% of |F(x) - F(baseline)|.
4. inference: sequences/s of plain model(**batch) with fixed padding vs our pass, and what each setting gives.
5. start-up, 6. scale (predictions-only checks on 10k / 100k / 1M rows), 7. report size.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
SPEC = ROOT / "examples" / "adult-income" / "audit.yaml"
RESULTS = {}


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def section(title):
    print(f"\n== {title}", flush=True)


def prepare():
    """The demo's fine-tuned model (reused from the cache when present) and the dataset."""
    from transfer_audit.data import load_dataset
    from transfer_audit.spec import parse_spec
    from transfer_audit.tasks import modality_for

    spec = parse_spec(SPEC)
    modality = modality_for(spec)
    dataset = load_dataset(spec.data, spec.seed, str(spec.source_file), modality)
    _, info = modality.prepare_models(spec, dataset, ROOT / "runs" / ".cache", {})
    return spec, dataset, Path(info["adapted"]["path"])


def floor(spec, dataset, adapted_path):
    from transfer_audit.models.loading import load_classifier, load_encoder, load_tokenizer, resolve_base, set_threads
    from transfer_audit.tasks.text_inference import forward_split

    set_threads()
    t = time.perf_counter()
    base_path = resolve_base(spec.model.base)
    tok = load_tokenizer(base_path)
    base = load_encoder(base_path)
    adapted, _, _ = load_classifier(adapted_path, base_path, dataset.n_classes)
    n = spec.model.finetune.max_length
    for s in ("train", "reference", "current"):
        forward_split(base, tok, dataset.splits[s].inputs, n, False, what=f"floor base {s}")
    for s in ("reference", "current"):
        forward_split(adapted, tok, dataset.splits[s].inputs, n, True, what=f"floor adapted {s}")
    return time.perf_counter() - t


def audit_given_model(adapted_path, out: Path):
    from transfer_audit.runner import run_audit

    raw = yaml.safe_load(SPEC.read_text())
    raw["model"]["adapted"] = str(adapted_path)
    raw["checks"] = {k: v for k, v in raw["checks"].items() if k != "attribution"}
    raw["policy"] = str(ROOT / "policies" / "default.yaml")
    raw["output"] = str(out)
    for split in ("train", "reference", "current"):
        raw["data"][split] = dict(raw["data"][split])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "audit.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    outcome, seconds = timed(run_audit, path)
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    return outcome, seconds, manifest["timings"]


def naive(spec, dataset, adapted_path, boot_scale_b=500):
    """What a user gluing the libraries would run: every check loads and calls the models itself."""
    import torch
    from fairlearn.metrics import MetricFrame, equalized_odds_difference, selection_rate
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    from transfer_audit.models.loading import load_classifier, load_encoder, load_tokenizer, resolve_base

    n = spec.model.finetune.max_length
    base_path = resolve_base(spec.model.base)
    times = {}

    def models():
        tok = load_tokenizer(base_path)
        return tok, load_encoder(base_path), load_classifier(adapted_path, base_path, dataset.n_classes)[0]

    def embed(model, tok, texts, logits=False):
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                b = tok(list(texts[i:i + 64]), padding="max_length", truncation=True, max_length=n, return_tensors="pt")
                o = model(**b, output_hidden_states=True)
                out.append(o.logits.softmax(-1).numpy() if logits else
                           ((o.last_hidden_state * b["attention_mask"][..., None]).sum(1) /
                            b["attention_mask"].sum(1, keepdim=True)).numpy())
        return np.concatenate(out)

    cur, train, ref = (dataset.splits[s] for s in ("current", "train", "reference"))
    t = time.perf_counter()                                  # performance: fresh predictions + a bootstrap loop
    tok, base, adapted = models()
    p_ad = embed(adapted, tok, cur.inputs, logits=True)
    probe = LogisticRegression(max_iter=2000).fit(embed(base, tok, train.inputs), train.y)
    p_pr = probe.predict_proba(embed(base, tok, cur.inputs))
    rng = np.random.default_rng(0)
    for p in (p_ad, p_pr):
        pred = p.argmax(1)
        for _ in range(2000):
            i = rng.integers(0, len(cur), len(cur))
            accuracy_score(cur.y[i], pred[i])
            f1_score(cur.y[i], pred[i], average="macro")
            roc_auc_score(cur.y[i], p[i, 1])
    times["performance"] = time.perf_counter() - t
    t = time.perf_counter()                                  # bias: fresh predictions, MetricFrame bootstrap
    tok, base, adapted = models()
    preds = {"adapted": embed(adapted, tok, cur.inputs, logits=True).argmax(1),
             "base_probe": probe.predict(embed(base, tok, cur.inputs))}
    for pred in preds.values():
        for feature in dataset.sensitive:
            MetricFrame(metrics={"sel": selection_rate, "acc": accuracy_score}, y_true=cur.y, y_pred=pred,
                        sensitive_features=cur.frame[feature], n_boot=boot_scale_b, ci_quantiles=[0.025, 0.975],
                        random_state=0)
            equalized_odds_difference(cur.y, pred, sensitive_features=cur.frame[feature])
    measured = time.perf_counter() - t
    times["bias"] = measured * 2000 / boot_scale_b           # MetricFrame's bootstrap cost is linear in B
    times["bias_measured_at_B"] = {"B": boot_scale_b, "seconds": measured}
    t = time.perf_counter()                                  # drift: fresh embeddings, evidently per column
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    tok, base, adapted = models()
    rows = 500
    e_ref, e_cur = embed(base, tok, ref.inputs[:rows]), embed(base, tok, cur.inputs[:rows])
    cols = [f"e{i}" for i in range(e_ref.shape[1])]
    dd = DataDefinition(numerical_columns=cols)
    Report([DataDriftPreset()]).run(Dataset.from_pandas(pd.DataFrame(e_cur, columns=cols), data_definition=dd),
                                    Dataset.from_pandas(pd.DataFrame(e_ref, columns=cols), data_definition=dd))
    times["drift"] = time.perf_counter() - t
    times["drift_rows"] = rows
    t = time.perf_counter()                                  # transfer: fresh predictions of each model again
    tok, base, adapted = models()
    embed(adapted, tok, cur.inputs, logits=True)
    embed(base, tok, cur.inputs)
    times["transfer"] = time.perf_counter() - t
    times["total"] = sum(v for k, v in times.items() if k in ("performance", "bias", "drift", "transfer"))
    return times


def attribution(spec, dataset, adapted_path, n_examples=16):
    """Ours vs captum one example at a time with its defaults, both to the same convergence criterion; what each
    part of ours gives; and the share of the check's time spent in quality metrics (with the check's defaults)."""
    import torch
    from captum.attr import LayerIntegratedGradients

    from transfer_audit.checks.attribution import AttributionConfig, stratified_sample
    from transfer_audit.models.loading import load_classifier, load_tokenizer, resolve_base
    from transfer_audit.tasks.text_attribution import (
        attribute_many,
        attribute_one,
        baseline_ids,
        embedding_layer,
        logits_fn,
    )
    from transfer_audit.tasks.text_ig import attribute_bucket, quality_scores

    base_path = resolve_base(spec.model.base)
    tok = load_tokenizer(base_path)
    model = load_classifier(adapted_path, base_path, dataset.n_classes)[0]
    cur = dataset.splits["current"]
    rows = stratified_sample(cur.y, n_examples, 0)
    texts = [cur.inputs[i] for i in rows]
    n = spec.model.finetune.max_length
    config = AttributionConfig()
    schedule = config.schedule()
    encoded = [tok(t, truncation=True, max_length=n, return_tensors="pt")["input_ids"] for t in texts]

    def one_at_a_time(engine):
        """The previous engine's loop: one example at a time, starting at the median of the last five needs."""
        needed, out = [], []
        for ids in encoded:
            first = int(np.median(needed[-5:])) if needed else schedule[0]
            rungs = tuple(s for s in schedule if s >= first) or schedule[-1:]
            a = engine(ids, rungs)
            out.append(a)
            if a.converged:
                needed.append(a.steps)
        return out

    variants = {}
    (ours, _), t_ours = timed(attribute_many, model, tok, texts, [None] * len(texts), n, schedule, 0.05, "bench: ours")
    variants["ours: length-bucketed batches + shared F(baseline) + captured embeddings"] = t_ours
    _, variants["own IG one example at a time (no cross-example batching)"] = timed(
        one_at_a_time, lambda ids, rungs: attribute_bucket(model, tok, ids, [None], rungs, 0.05)[0])
    _, variants["previous engine: captum LayerIG per example, adaptive steps"] = timed(
        one_at_a_time, lambda ids, rungs: attribute_one(model, tok, ids, None, rungs, 0.05))
    forward = logits_fn(model)
    lig = LayerIntegratedGradients(forward, embedding_layer(model))
    t = time.perf_counter()
    naive_ok, naive_passes = 0, 0
    for ids in encoded:
        mask = torch.ones_like(ids)
        base = baseline_ids(ids, tok)
        with torch.no_grad():
            target = int(forward(ids, mask).argmax())
            gap = float(forward(ids, mask)[0, target] - forward(base, mask)[0, target])
        for steps in (50, 100, 200, 300):                     # the same escalation to the same criterion
            attr, delta = lig.attribute(ids, baselines=base, target=target, additional_forward_args=(mask,),
                                        n_steps=steps, return_convergence_delta=True)
            naive_passes += steps + 2
            if abs(float(delta)) <= 0.05 * abs(gap):
                naive_ok += 1
                break
    t_naive = time.perf_counter() - t
    usable = [i for i, a in enumerate(ours) if a.converged]
    chosen = usable[:max(config.quality_samples, config.sensitivity_samples)]
    t = time.perf_counter()
    for rank, i in enumerate(chosen):
        quality_scores(model, tok, texts[i], ours[i], n, i, sensitivity=rank < config.sensitivity_samples)
    t_quality = time.perf_counter() - t
    return {"examples": len(texts), "ours_s": t_ours, "naive_s": t_naive, "speedup": t_naive / t_ours,
            "ours_converged": sum(a.converged for a in ours), "naive_converged": naive_ok,
            "ours_passes": sum(a.passes for a in ours), "naive_passes": naive_passes,
            "ours_median_steps": float(np.median([a.steps for a in ours])),
            "variants_s": variants, "variants_speedup_vs_captum": {k: t_naive / v for k, v in variants.items()},
            "quality_s": t_quality,
            "quality_examples": {"infidelity": min(len(chosen), config.quality_samples),
                                 "sensitivity_max": min(len(chosen), config.sensitivity_samples)},
            "quality_share": t_quality / (t_ours + t_quality)}


def print_attribution(at):
    print(f"  {at['examples']} examples: ours {at['ours_s']:.1f} s ({at['ours_passes']} passes, median "
          f"{at['ours_median_steps']:.0f} steps, {at['ours_converged']} converged) vs captum {at['naive_s']:.1f} s "
          f"({at['naive_passes']} passes, {at['naive_converged']} converged): {at['speedup']:.2f}x faster "
          "(target >= 3x)")
    for name, seconds in at["variants_s"].items():
        print(f"    {seconds:6.1f} s  {at['variants_speedup_vs_captum'][name]:.2f}x vs captum  {name}")
    q = at["quality_examples"]
    print(f"  quality metrics (infidelity on {q['infidelity']}, sensitivity_max on {q['sensitivity_max']} examples): "
          f"{at['quality_s']:.1f} s = {at['quality_share']:.0%} of the check's time (target <= 25%)")


def inference(spec, dataset):
    import torch

    from transfer_audit.models.loading import load_encoder, load_tokenizer, resolve_base
    from transfer_audit.tasks.text_inference import forward_split

    base_path = resolve_base(spec.model.base)
    tok, model = load_tokenizer(base_path), load_encoder(base_path)
    texts = dataset.splits["current"].inputs
    n = spec.model.finetune.max_length
    out = {}

    def plain(grad_mode):
        with grad_mode():
            for i in range(0, len(texts), 64):
                b = tok(list(texts[i:i + 64]), padding="max_length", truncation=True, max_length=n, return_tensors="pt")
                model(**b)

    threads = torch.get_num_threads()
    for name, fn in [("plain model(**batch), fixed padding, no_grad", lambda: plain(torch.no_grad)),
                     ("fixed padding + inference_mode", lambda: plain(torch.inference_mode)),
                     ("ours: length bucketing + inference_mode, batch 64",
                      lambda: forward_split(model, tok, texts, n, False, what="bench")),
                     ("ours, batch 32",
                      lambda: forward_split(model, tok, texts, n, False, batch_size=32, what="bench")),
                     ("ours, batch 128",
                      lambda: forward_split(model, tok, texts, n, False, batch_size=128, what="bench"))]:
        _, s = timed(fn)
        out[name] = len(texts) / s
    torch.set_num_threads(1)
    _, s = timed(forward_split, model, tok, texts, n, False, what="bench")
    out["ours, 1 thread"] = len(texts) / s
    torch.set_num_threads(threads)
    return out


def startup():
    exe = str(Path(sys.executable).parent / "transfer-audit")
    res = {}
    lint = ["policy", "lint", str(ROOT / "policies" / "default.yaml")]
    for name, args in (("--help", ["--help"]), ("policy lint", lint)):
        runs = []
        for _ in range(5):
            _, s = timed(subprocess.run, [exe, *args], capture_output=True)
            runs.append(s)
        res[name] = statistics.median(runs)
    return res


def scale():
    out = []
    for n in (10_000, 100_000, 1_000_000):
        p = subprocess.run([sys.executable, str(ROOT / "bench" / "scale_worker.py"), str(n)], capture_output=True,
                           text=True, check=True)
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(f"  {n:>9,} rows: {out[-1]['seconds']:.2f} s, peak RSS {out[-1]['peak_rss_mb']:.0f} MB", flush=True)
    return out


def main():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shutil.rmtree(OUT, ignore_errors=True)
    start = time.perf_counter()
    section("setup: the demo's fine-tuned model (cached after the first run)")
    spec, dataset, adapted_path = prepare()
    section("1. overhead over the forward-pass floor (3 alternating pairs; the median ratio is reported)")
    pairs = []
    for i in range(3):
        floor_s = floor(spec, dataset, adapted_path)
        outcome, audit_s, timings = audit_given_model(adapted_path, OUT / f"audit{i}")
        pairs.append((audit_s / floor_s, floor_s, audit_s, timings))
        print(f"  pair {i + 1}: floor {floor_s:.1f} s, audit {audit_s:.1f} s, ratio {audit_s / floor_s:.2f}x",
              flush=True)
    ratio, floor_s, audit_s, timings = sorted(pairs, key=lambda p: p[0])[1]
    RESULTS["overhead"] = {"floor_s": floor_s, "audit_s": audit_s, "ratio": ratio,
                           "ratios": [round(p[0], 3) for p in pairs],
                           "breakdown_s": {"models": timings.get("models_s"), "forward": timings.get("forward_s"),
                                           "baselines": timings.get("baselines_s"), **timings.get("checks_s", {})}}
    print(f"  median: floor {floor_s:.1f} s, audit {audit_s:.1f} s, ratio {ratio:.2f}x (target <= 1.3x)")
    print("  where the time goes: " + ", ".join(f"{k} {v:.1f} s" for k, v in RESULTS["overhead"]["breakdown_s"].items()
                                                if v))
    report = outcome.run_dir / "report.html"
    RESULTS["report_bytes"] = report.stat().st_size
    section("2. against the naive way")
    nv = naive(spec, dataset, adapted_path)
    RESULTS["naive"] = nv
    print(f"  naive {nv['total']:.1f} s vs ours {audit_s:.1f} s: ours/naive = {audit_s / nv['total']:.2f} "
          f"(bias at B=2000 extrapolated from B={nv['bias_measured_at_B']['B']}: "
          f"{nv['bias_measured_at_B']['seconds']:.1f} s measured; "
          f"drift on {nv['drift_rows']} rows x 384 embedding columns)")
    section("3. attribution: ours vs captum one example at a time, n_steps=50, same convergence criterion")
    at = attribution(spec, dataset, adapted_path)
    RESULTS["attribution"] = at
    print_attribution(at)
    section("4. inference speed (sequences/s, base model, current split)")
    inf = inference(spec, dataset)
    RESULTS["inference"] = inf
    for k, v in inf.items():
        print(f"  {v:7.1f} seq/s  {k}")
    section("5. start-up (median of 5)")
    RESULTS["startup"] = startup()
    for k, v in RESULTS["startup"].items():
        print(f"  transfer-audit {k}: {v:.2f} s (target < 1 s)")
    section("6. scale: predictions-only checks (performance, bias, prediction drift) on cached evidence")
    RESULTS["scale"] = scale()
    section("7. report")
    print(f"  report.html {RESULTS['report_bytes'] / 1024:.0f} KiB (target < 2 MB)")
    section("8. Parquet larger than one process: predictions-only statistics over 1e5 and 1e6 rows, local and on "
            "a local Ray instance; a streamed `run` over 1e4 and 1e5 rows")
    for script, args in (("ray_scan.py", ["--max", "1e6"]), ("stream_run.py", ["--sizes", "1e4,1e5"])):
        subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], check=True)
    RESULTS["bench_seconds"] = time.perf_counter() - start
    (ROOT / "bench" / "results.json").write_text(json.dumps(RESULTS, indent=2, default=float) + "\n")
    print(f"\nbench finished in {RESULTS['bench_seconds']:.0f} s; results in bench/results.json")


def attribution_only():
    """`python bench/run_all.py attribution`: section 3 alone; its figures replace that entry of results.json."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    section("3. attribution: ours vs captum one example at a time, n_steps=50, same convergence criterion")
    spec, dataset, adapted_path = prepare()
    at = attribution(spec, dataset, adapted_path)
    print_attribution(at)
    path = ROOT / "bench" / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["attribution"] = at
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    attribution_only() if sys.argv[1:] == ["attribution"] else main()
