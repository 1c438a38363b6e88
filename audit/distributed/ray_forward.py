"""One audit's forward passes on Ray Data (`transfer-audit run --executor ray`): the driver tokenizes a split and
plans its length buckets exactly as a local run does (tasks.text_inference.bucket_plan); each bucket becomes one
Ray Data row; map_batches with an actor pool runs forward_batch on it, each actor loading the model once from its
folder and using the driver's torch thread count; the driver writes the outputs back by row index. Same batches,
same padding, same threads: the arrays are bit-identical to the local executor's, so the forward cache and
results.json are too."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Progress

BUCKETS_PER_CALL = 4       # buckets handed to an actor per map_batches call (each still runs as its own batch)


@dataclass(frozen=True)
class ModelRef:
    """How a worker loads one of the audit's models: from its folder, with the same safe loaders as the driver."""

    which: str                  # "base" (encoder) or "adapted" (classifier)
    path: Path
    base_path: Path
    n_classes: int
    allow_pickle: bool
    field: str
    pooling: tuple = ("mean",)  # the base's sentence-transformers pooling (the adapted model's is mean)

    def load(self):
        from ..models.loading import load_classifier, load_encoder

        if self.which == "base":
            return load_encoder(self.path, self.allow_pickle, field=self.field)
        return load_classifier(self.path, self.base_path, self.n_classes, self.allow_pickle, field=self.field)[0]


class _ForwardActor:
    """Ray Data's stateful transform: constructed once per actor, so each model loads once per worker."""

    def __init__(self, refs: dict, threads: int, pad: int):
        import torch
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(threads)        # the driver's count: same kernels, same float summation order
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.models = {which: ref.load() for which, ref in refs.items()}
        self.pooling = {which: ref.pooling for which, ref in refs.items()}
        self.pad = pad

    def __call__(self, batch):
        import pandas as pd

        from ..tasks.text_inference import forward_batch

        parts = []
        for which, rows, ids, layer_rows in zip(batch["which"], batch["rows"], batch["ids"], batch["layer_rows"]):
            part = forward_batch(self.models[which], rows, list(ids), self.pad, which == "adapted", int(layer_rows),
                                 self.pooling[which])
            buf = io.BytesIO()
            np.savez(buf, **part)
            parts.append(buf.getvalue())
        return pd.DataFrame({"job": batch["job"], "part": parts, "n": [len(r) for r in batch["rows"]]})


class RayForward:
    """evidence.build_evidence's `forward`: one Ray Data pipeline (one actor pool, each actor loading the models
    it needs once) for every (model, split) not in the cache; model_info (prepare_models) names the folders."""

    def __init__(self, model_info: dict, n_classes: int, allow_pickle: bool, where: str, actors: int = 2):
        self.model_info, self.n_classes, self.allow_pickle = model_info, n_classes, allow_pickle
        self.where, self.actors = where, actors

    @staticmethod
    def supports(modality) -> None:
        """Text on CPU actors only: the image pass and GPU autocast would not be the local run's computation."""
        from ..runtime import resolve_device

        if getattr(modality, "name", None) != "text":
            raise InputError(f"command line: --executor ray runs the text modality's forward pass; this spec's "
                             f"modality is {getattr(modality, 'name', modality)!r} (use --executor local).")
        device = resolve_device(modality.device)
        if device.type != "cpu":
            raise InputError(f"command line: --executor ray runs the forward passes on CPU actors, but --device "
                             f"resolves to {device}; add --device cpu.")

    def many(self, models, jobs: list) -> list[dict]:
        """jobs: [(which, inputs, layer_rows, what)] -> one output dict per job, as modality.forward returns it."""
        import ray
        import torch

        from ..tasks.text_inference import Assembly, bucket_plan
        from .ray_runtime import quiet_ray_data

        quiet_ray_data()
        tok = models.processor
        items, assemblies = [], []
        for j, (which, inputs, layer_rows, _) in enumerate(jobs):
            ids, buckets = bucket_plan(tok, inputs, models.modality.max_length)
            assemblies.append(Assembly(len(ids)))
            items += [{"job": j, "which": which, "rows": rows.tolist(), "ids": [ids[i] for i in rows],
                       "layer_rows": layer_rows} for rows in buckets]
        if items:
            info = self.model_info
            refs = {w: ModelRef(w, Path(info[w]["path"]), Path(info["base"]["path"]), self.n_classes,
                                self.allow_pickle, f"{self.where}: model.{w}",
                                tuple(models.pooling) if w == "base" else ("mean",))
                    for w in sorted({j[0] for j in jobs})}
            actors = max(1, min(self.actors, int(ray.cluster_resources().get("CPU", 1)), len(items)))
            ds = ray.data.from_items(items).map_batches(
                _ForwardActor, fn_constructor_kwargs={"refs": refs, "threads": torch.get_num_threads(),
                                                      "pad": tok.pad_token_id or 0},
                batch_size=BUCKETS_PER_CALL, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1)
            bar = Progress(f"forward passes on Ray ({len(jobs)} model-split pairs, {len(items)} batches, "
                           f"{actors} actor{'s' if actors > 1 else ''})",
                           sum(a.n for a in assemblies), "rows")
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                for j, blob, n in zip(batch["job"], batch["part"], batch["n"]):
                    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                        assemblies[int(j)].add({k: z[k] for k in z.files})
                    bar.update(int(n))
            bar.close()
        return [a.result() for a in assemblies]
