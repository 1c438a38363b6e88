"""Benchmark (not a test): predictions-only checks over Parquet folders of 1e5, 1e6 (and 1e7 with --max 1e7)
rows, reduced to mergeable sufficient statistics on this machine (file by file) and on a local Ray instance
(Ray Data map_batches, actor pool). Prints time vs rows, rows/s, the driver's peak RSS growth during each scan,
and checks both executors give the same statistics.

    python bench/ray_scan.py [--min 1e5] [--max 1e7] [--cpus 2] [--actors 2] [--out /tmp/ray-scan-bench]
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

FILE_ROWS = 1_000_000


def make_folder(folder: Path, rows: int, seed: int = 0) -> Path:
    """Label, two sensitive columns and two roles' scores, in files of at most FILE_ROWS rows."""
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, start in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - start)
        y = rng.integers(0, 2, n)
        pd.DataFrame({
            "label": np.where(y == 1, ">50K", "<=50K"),
            "sex": rng.choice(["Female", "Male"], n, p=[0.33, 0.67]),
            "race": rng.choice(["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"], n,
                               p=[0.85, 0.1, 0.03, 0.01, 0.01]),
            "score_adapted": np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1),
            "score_base_probe": np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1),
        }).to_parquet(folder / f"part-{k:05d}.parquet")
    (folder / "_done").write_text("")
    return folder


class PeakRSS:
    """The driver process's resident memory, sampled every 50 ms while a scan runs."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process(os.getpid())
        self.start = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min", type=float, default=1e5)
    ap.add_argument("--max", type=float, default=1e6)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--out", default="/tmp/ray-scan-bench")
    args = ap.parse_args()

    import ray

    from transfer_audit.distributed.ray_scan import scan_ray
    from transfer_audit.scan import ScanSpec, scan_local

    sizes = [n for n in (100_000, 1_000_000, 10_000_000) if args.min <= n <= args.max]
    from transfer_audit.distributed.ray_runtime import init_kwargs

    ray.init(num_cpus=args.cpus, **init_kwargs())
    rows_out = []
    try:
        for n in sizes:
            folder = make_folder(Path(args.out) / f"rows-{n}", n)
            spec = ScanSpec(folder, "label", ("<=50K", ">50K"), ("sex", "race"),
                            score_columns={"adapted": "score_adapted", "base_probe": "score_base_probe"})
            line = {"rows": n, "files": len(list(folder.glob("*.parquet")))}
            for name, fn in (("local", lambda s=spec: scan_local(s)),
                             ("ray", lambda s=spec: scan_ray(s, actors=args.actors))):
                with PeakRSS() as mem:
                    t = time.perf_counter()
                    stats = fn()
                    seconds = time.perf_counter() - t
                line[name] = {"seconds": round(seconds, 2), "rows_per_s": round(n / seconds),
                              "driver_rss_growth_mb": round((mem.peak - mem.start) / 2**20, 1),
                              "driver_rss_peak_mb": round(mem.peak / 2**20, 1)}
                line[f"_{name}"] = stats
                print(f"{n} rows, {name}: {line[name]}", flush=True)
            same = (line["_local"].cells == line["_ray"].cells and line["_local"].sample == line["_ray"].sample
                    and all(np.array_equal(line["_local"].hist[r], line["_ray"].hist[r]) for r in spec.roles))
            stats = line.pop("_ray")
            line.pop("_local")
            auc, bound = stats.auc("adapted")
            line.update(same_statistics=same, auc_adapted=round(auc, 5), auc_grid_bound=float(f"{bound:.2e}"),
                        accuracy_adapted=round(stats.accuracy("adapted"), 5), cells=len(stats.cells))
            rows_out.append(line)
            print(json.dumps(line), flush=True)
    finally:
        ray.shutdown()
    if len(rows_out) > 1:
        a, b = rows_out[0], rows_out[-1]
        for name in ("local", "ray"):
            ratio = (b[name]["seconds"] / a[name]["seconds"]) / (b["rows"] / a["rows"])
            print(f"{name}: time per row at {b['rows']:.0e} rows / at {a['rows']:.0e} rows = {ratio:.2f} "
                  "(1.0 = linear)")


if __name__ == "__main__":
    main()
