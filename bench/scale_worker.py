"""One point of the scale curve: predictions-only checks on N rows of synthetic cached evidence.
Prints JSON {rows, seconds, peak_rss_mb}. Run by bench/run_all.py in a fresh process per size."""
from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from transfer_audit.checks import bias, drift, performance  # noqa: E402
from transfer_audit.checks.base import StatsConfig  # noqa: E402
from transfer_audit.data import Dataset, Split  # noqa: E402
from transfer_audit.evidence import Evidence  # noqa: E402


def evidence(n: int) -> Evidence:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"sex": rng.choice(["Female", "Male"], n), "race": rng.choice(list("ABCDE"), n)})
    y = rng.integers(0, 2, n)
    probs = {}
    for i, role in enumerate(("adapted", "base_probe", "no_transfer", "no_transfer_text", "no_transfer_tabular")):
        p = np.clip(0.5 + (y - 0.5) * (0.3 + 0.05 * i) + rng.normal(0, 0.25, n), 0.01, 0.99)
        # Two arrays, not one shared: the peak RSS this bench reports counts both splits.
        probs[role] = {"reference": np.c_[1 - p, p], "current": np.c_[1 - p, p]}
    split = Split("current", (), y, frame, "synthetic", "synthetic")
    ds = Dataset(("neg", "pos"), 1, {"reference": split, "current": split, "train": split}, ("sex", "race"), ())
    return Evidence(dataset=ds, probs=probs, embeddings={}, layers={}, seed=0)


def peak_rss_mb() -> float:
    """This process's own high-water mark (VmHWM). ru_maxrss would report the parent's peak: Linux keeps it
    across fork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    n = int(sys.argv[1])
    ev = evidence(n)
    stats = StatsConfig(n_boot=2000)
    t = time.perf_counter()
    performance.run(ev, performance.PerformanceConfig(), stats)
    bias.run(ev, bias.BiasConfig(counterfactual=False), stats)
    drift.prediction_drift(ev, drift.DriftConfig(), stats)
    seconds = time.perf_counter() - t
    print(json.dumps({"rows": n, "seconds": round(seconds, 3), "peak_rss_mb": peak_rss_mb()}))
