"""Pass 2 of a streamed split (stream.py) on Ray Data: read_parquet of the declared columns, map_batches with an
actor pool whose actors load the audit's models once each and reduce every batch to PredictionStats (as JSON:
no pickle comes back), merged on the driver as they stream in. The driver holds one merged PredictionStats
(bounded by the cells and the score grid), never rows."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..progress import Progress
from ..stream import READ_ROWS, ChunkScorer
from ..sufficient_stats import PredictionStats, from_json, to_json


class _ScoreActor:
    """Ray Data's stateful transform: constructed once per actor; the scorer loads the models on first use."""

    def __init__(self, scorer: ChunkScorer):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.scorer = scorer

    def __call__(self, batch):
        import pandas as pd

        try:
            stats, error = to_json(self.scorer(batch)), ""
        except InputError as e:         # Ray keeps only the text of a worker's exception: send it as data
            stats, error = "", str(e)
        return pd.DataFrame({"stats": [stats], "rows": [len(batch)], "error": [error]})


def worker_scorer(scorer: ChunkScorer, model_info: dict, n_classes: int, allow_pickle: bool, where: str):
    """The scorer as it travels to the actors: model folders instead of loaded models, the driver's threads."""
    import torch

    from .ray_forward import ModelRef

    base = Path(model_info["base"]["path"])
    refs = {w: ModelRef(w, Path(model_info[w]["path"]), base, n_classes, allow_pickle, f"{where}: model.{w}",
                        tuple(scorer.models.pooling) if w == "base" else ("mean",)) for w in ("base", "adapted")}
    return scorer.for_workers(refs, torch.get_num_threads())


def score_ray(files: list[Path], columns: list[str], scorer: ChunkScorer, total: int, actors: int = 2
              ) -> PredictionStats:
    import ray

    from .ray_runtime import quiet_ray_data
    from .ray_scan import without_fsspec_http

    without_fsspec_http()
    quiet_ray_data()
    # Leave one CPU for the read tasks: a pool that takes every CPU starves read_parquet and never finishes.
    actors = max(1, min(actors, int(ray.cluster_resources().get("CPU", 1)) - 1))
    ds = ray.data.read_parquet([str(f) for f in files], columns=columns)
    stats = ds.map_batches(_ScoreActor, fn_constructor_kwargs={"scorer": scorer}, batch_size=READ_ROWS,
                           batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
    merged = PredictionStats(scorer.roles, scorer.sensitive, len(scorer.classes), sample_size=0)
    bar = Progress(f"stream current on Ray ({actors} actor{'s' if actors > 1 else ''}): scoring every row with "
                   f"{len(scorer.roles)} model roles", total, "rows")
    for batch in stats.iter_batches(batch_size=None, batch_format="pandas"):
        for text, rows, error in zip(batch["stats"], batch["rows"], batch["error"]):
            if error:
                raise InputError(error)
            merged = merged.merge(from_json(text))
            bar.update(int(rows))
    bar.close()
    return merged
