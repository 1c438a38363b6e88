"""One split's Parquet files through Ray Data: read_parquet (only the declared columns), map_batches with an
actor pool whose actors load the model once each (a GPU per actor when the cluster has GPUs), each batch reduced
to its PredictionStats as JSON, and the driver merging them as they stream in. The driver holds one merged
PredictionStats (bounded by cells, grid and sample size), never rows."""
from __future__ import annotations

from ..progress import Progress
from ..scan import READ_ROWS, ScanSpec, check_columns
from ..sufficient_stats import PredictionStats, from_json, to_json


class _StatsActor:
    """Ray Data's stateful transform: constructed once per actor, so the model loads once per worker."""

    def __init__(self, spec: ScanSpec):
        from ..models.loading import set_threads
        from ..scan import BlockScorer

        if spec.model is not None:
            set_threads()
        self.scorer = BlockScorer(spec)

    def __call__(self, batch):
        import pandas as pd

        return pd.DataFrame({"stats": [to_json(self.scorer.stats(batch))], "rows": [len(batch)]})


def without_fsspec_http() -> None:
    """Ray Data's path resolution imports fsspec's HTTP filesystem from several threads at once; without aiohttp
    one thread sees the half-imported module and fails with ImportError instead of the ModuleNotFoundError Ray
    catches. Marking the module absent makes every thread get ModuleNotFoundError (a Ray race, seen with 2.60).
    Runs in the driver and, as the workers' setup hook (ray_runtime.init_kwargs), in every worker."""
    import importlib.util
    import sys

    if importlib.util.find_spec("aiohttp") is None:
        sys.modules.setdefault("fsspec.implementations.http", None)


def scan_ray(spec: ScanSpec, actors: int = 2, batch_size: int = READ_ROWS) -> PredictionStats:
    import ray

    from .ray_runtime import quiet_ray_data

    without_fsspec_http()
    quiet_ray_data()

    files = check_columns(spec)            # a missing column is an input error before any task starts
    resources = ray.cluster_resources()
    gpus = 1 if spec.model is not None and resources.get("GPU", 0) >= 1 else 0
    # Leave one CPU for the read tasks: a pool that takes every CPU starves read_parquet and never finishes.
    actors = max(1, min(actors, int(resources.get("CPU", 1)) - 1))
    ds = ray.data.read_parquet([str(f) for f in files], columns=spec.columns())
    stats = ds.map_batches(_StatsActor, fn_constructor_kwargs={"spec": spec}, batch_size=batch_size,
                           batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=actors),
                           num_gpus=gpus, num_cpus=1)
    total = PredictionStats(spec.roles, spec.sensitive, len(spec.classes), spec.seed, spec.sample_size)
    import pyarrow.parquet as pq

    rows_total = sum(pq.read_metadata(f).num_rows for f in files)
    bar = Progress(f"scan {spec.path.name} on Ray ({actors} actors)", rows_total, "rows")
    for batch in stats.iter_batches(batch_size=None, batch_format="pandas"):
        for text, rows in zip(batch["stats"], batch["rows"]):
            total = total.merge(from_json(text))
            bar.update(int(rows))
    bar.close()
    return total
