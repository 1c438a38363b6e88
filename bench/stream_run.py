"""Benchmark (not a test): `run` with a streamed current split (data.current.stream: true) of 1e4, 1e5, 1e6 rows
of Parquet: every row scored by the adapted model, the base probe and the controls, reduced to sufficient
statistics; performance and bias over every row, the other checks on a 2,000-row sample. Prints wall time and
the streaming pass's time vs rows, rows/s, and the process's peak RSS (flat: no row is held).

The rows are Adult's test split resampled with replacement and perturbed (age, hours), written in files of at most
100,000 rows. The model is a 2-layer random BERT (tests/conftest.make_tiny_bert), fine-tuned by the run: this
measures the streaming pipeline; a real encoder's cost is its forward rate times rows (bench/results.json has
MiniLM's).

    python bench/stream_run.py [--sizes 1e4,1e5,1e6] [--executor local|ray] [--out /tmp/stream-bench]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
FILE_ROWS = 100_000


def make_rows(folder: Path, rows: int, seed: int = 0) -> Path:
    from transfer_audit.builtin_data import load_builtin

    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    source = load_builtin("adult", "test")
    rng = np.random.default_rng(seed)
    for k, start in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - start)
        part = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
        part["age"] = np.clip(part["age"].to_numpy() + rng.integers(-3, 4, n), 17, 90)
        part["hours_per_week"] = np.clip(part["hours_per_week"].to_numpy() + rng.integers(-5, 6, n), 1, 99)
        part.to_parquet(folder / f"part-{k:05d}.parquet", index=False)
    (folder / "_done").write_text("")
    return folder


def main() -> None:
    from conftest import adult_spec, make_tiny_bert, write_spec
    from ray_scan import PeakRSS

    from transfer_audit.executor import Executor
    from transfer_audit.progress import cli_logging
    from transfer_audit.runner import run_audit

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1e4,1e5,1e6")
    ap.add_argument("--executor", choices=("local", "ray"), default="local")
    ap.add_argument("--out", default="/tmp/stream-bench")
    args = ap.parse_args()
    out = Path(args.out)
    bert = out / "tiny-bert"
    if not (bert / "config.json").exists():
        make_tiny_bert(bert)
    lines = []
    for n in (int(float(s)) for s in args.sizes.split(",")):
        folder = make_rows(out / f"rows-{n}", n)
        spec = adult_spec(str(bert), out / "runs", checks={"performance": {}, "bias": {"counterfactual": False},
                                                           "drift": {"permutations": 200}}, name=f"stream-{n}")
        spec["data"]["current"] = {"path": str(folder), "stream": True, "sample": 2000}
        path = write_spec(out / "specs", spec, f"stream-{n}.yaml")
        with cli_logging(quiet=True), PeakRSS() as mem:
            t = time.perf_counter()
            outcome = run_audit(path, executor=Executor(args.executor))
            wall = time.perf_counter() - t
        timings = json.loads((outcome.run_dir / "manifest.json").read_text())["timings"]
        stream = outcome.results["data"]["current"]["stream"]
        line = {"rows": n, "executor": args.executor, "wall_s": round(wall, 1), "stream_s": timings["stream_s"],
                "stream_rows_per_s": round(n / timings["stream_s"]), "peak_rss_mb": round(mem.peak / 2**20),
                "rows_counted": stream["rows"], "sample_rows": stream["sample_rows"],
                "verdict": outcome.results["gate"]["verdict"]}
        lines.append(line)
        print(json.dumps(line), flush=True)
    if len(lines) > 1:
        a, b = lines[0], lines[-1]
        ratio = (b["stream_s"] / a["stream_s"]) / (b["rows"] / a["rows"])
        print(f"streaming pass: time per row at {b['rows']:.0e} rows / at {a['rows']:.0e} rows = {ratio:.2f} "
              f"(1.0 = linear); peak RSS {a['peak_rss_mb']} MB -> {b['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
