"""A streamed split (`data.current.stream: true`): Parquet files too large to hold, read in chunks and never held
whole, on this machine or on Ray (distributed/ray_stream.py).

Pass 1 keeps a seeded uniform sample of the rows (bottom-k of a content hash: the same rows however the files are
split into blocks), which the audit loads as the split for whatever needs rows (drift, transfer, slices,
attribution, counterfactual swaps). Pass 2 scores every row with every model role and reduces it to mergeable
sufficient statistics (sufficient_stats.PredictionStats: joint cells of label, every role's prediction and every
sensitive value, and score histograms); the performance and bias checks read those cells weighted by their rows
(Evidence.weights), so their numbers and intervals are over every row: the paired bootstrap depends on rows only
through the cells, so it is the same draw as on the rows themselves.
"""
from __future__ import annotations

import glob as globlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import MSG_MISSING_COLUMN, InputError
from .progress import Progress, hushed
from .results import ModelRole
from .sufficient_stats import GRID, PredictionStats, row_priority

READ_ROWS = 16_384            # rows per chunk: memory bounded by a chunk's token ids and embeddings, whatever
                              # the split's size (65,536 held ~1.3 GB with a tiny BERT; per-chunk overhead is small)
DEFAULT_SAMPLE = 2_000        # rows kept for the checks that need rows (data.current.sample overrides)
COUNTS_CHECKS = ("performance", "bias")   # checks that read a streamed split's cells instead of its sample


def stream_files(src, where: str) -> list[Path]:
    """The Parquet files of a streamed split, in name order: the file, every *.parquet under the folder, or the
    files matching the glob."""
    if src.pattern is not None:
        files = sorted(Path(f) for f in globlib.glob(src.pattern, recursive=True) if f.endswith(".parquet"))
    elif src.path.is_file():
        files = [src.path]
    else:
        files = sorted(src.path.rglob("*.parquet"))
    if not files:
        raise InputError(f"{where}: data.current.path {Path(src.pattern).name if src.pattern else src.path.name!r} "
                         "matches no Parquet files.")
    return files


def needed_columns(data, src) -> list[str]:
    from .spec import template_fields

    template = src.template or (None if src.text else data.template)
    text = [] if template else [src.text or data.text]
    cols = [data.label, *text, *(template_fields(template) if template else []), *data.sensitive, *data.features]
    return list(dict.fromkeys(c for c in cols if c))


def check_schema(files: list[Path], columns: list[str], where: str) -> int:
    """Every declared column in every file's schema before a row is read; returns the total rows."""
    import pyarrow.parquet as pq

    total = 0
    for f in files:
        meta = pq.read_metadata(f)
        names = meta.schema.to_arrow_schema().names
        for col in columns:
            if col not in names:
                raise InputError.make(MSG_MISSING_COLUMN, where=where, field="data.current", value=col,
                                      source=f.name, columns=", ".join(names))
        total += meta.num_rows
    return total


def chunks(files: list[Path], columns: list[str]):
    import pyarrow.parquet as pq

    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=READ_ROWS, columns=columns):
            yield batch.to_pandas()


def sample_split(src, data, seed: int, where: str):
    """Pass 1: (the seeded uniform sample of the split's rows as a DataFrame, rows in the split, files)."""
    import pandas as pd

    files = stream_files(src, where)
    columns = needed_columns(data, src)
    total = check_schema(files, columns, where)
    k = src.sample or DEFAULT_SAMPLE
    kept, bar = None, Progress(f"stream {src.name}: sampling {k:,} of {total:,} rows", total, "rows")
    for frame in chunks(files, columns):
        frame = frame.assign(_priority=row_priority(frame[columns], seed))
        kept = frame if kept is None else pd.concat([kept, frame], ignore_index=True)
        kept = kept.sort_values("_priority", kind="stable").head(k)
        bar.update(len(frame))
    bar.close()
    if kept is None or not len(kept):
        raise InputError(f"{where}: data.current has no rows ({src.pattern or src.path.name}).")
    return kept.drop(columns="_priority").reset_index(drop=True), total, files


@dataclass
class ChunkScorer:
    """Scores a chunk of rows with every model role the audit compares and reduces it to PredictionStats. On
    Ray it travels without its torch models (`refs` says how a worker loads them once)."""

    roles: tuple[str, ...]
    classes: tuple[str, ...]
    positive: int | None
    sensitive: tuple[str, ...]
    src: object
    data: object
    where: str
    modality: object
    probe: object
    controls: dict                  # role -> fitted input control (applied to the model inputs)
    tabular: object = None          # the fitted control on raw feature columns, if any
    chosen: str | None = None       # which control is no_transfer
    models: object = None           # tasks.base.Models (None on a Ray worker until loaded)
    refs: dict | None = None        # distributed.ray_forward.ModelRef per model, to load on a worker
    threads: int = 1

    def for_workers(self, refs: dict, threads: int) -> ChunkScorer:
        return replace(self, models=None, refs=refs, threads=threads)

    def _models(self):
        if self.models is None:
            import torch

            from .models.loading import load_tokenizer
            from .tasks.base import Models

            torch.set_num_threads(self.threads)
            loaded = {which: ref.load() for which, ref in self.refs.items()}
            self.models = Models(self.modality, loaded["base"], loaded["adapted"],
                                 load_tokenizer(self.refs["base"].path), pooling=self.refs["base"].pooling)
        return self.models

    def probabilities(self, frame) -> dict:
        from .evidence import softmax
        from .models.baselines import full_proba

        models, k = self._models(), len(self.classes)
        inputs = self.modality.read_inputs(frame, self.src, self.data, self.where)
        with hushed():
            adapted = self.modality.forward(models, "adapted", inputs, what="stream: adapted model")
            base = self.modality.forward(models, "base", inputs, what="stream: base model")
        probs = {ModelRole.ADAPTED.value: softmax(adapted["logits"]),
                 ModelRole.BASE_PROBE.value: self.probe.predict_proba(base["pooled"])}
        probs.update({role: full_proba(model, list(inputs), k) for role, model in self.controls.items()})
        if self.tabular is not None:
            probs[ModelRole.NO_TRANSFER_TABULAR.value] = full_proba(self.tabular, frame, k)
        if self.chosen is not None:
            probs[ModelRole.NO_TRANSFER.value] = probs[self.chosen]
        return probs

    def __call__(self, frame) -> PredictionStats:
        index = {c: i for i, c in enumerate(self.classes)}
        labels = frame[self.data.label].astype(str).map(index)
        if labels.isna().any():
            bad = frame[self.data.label].astype(str)[labels.isna()].iloc[0]
            raise InputError(f"{self.where}: data.current has label {bad!r} in {self.data.label!r}, which data.train "
                             f"does not have. Train labels: {', '.join(self.classes)}.")
        for col in self.sensitive:
            if frame[col].isna().any():
                raise InputError(f"{self.where}: data.sensitive column {col!r} is missing in a row of data.current. "
                                 "Fill it (e.g. 'unknown') so the row is counted in a group.")
        probs = self.probabilities(frame)
        pos = self.positive if self.positive is not None else len(self.classes) - 1
        out = PredictionStats(self.roles, self.sensitive, len(self.classes), sample_size=0)
        return out.add(labels.to_numpy(), {r: probs[r].argmax(1) for r in self.roles},
                       {c: frame[c].to_numpy() for c in self.sensitive}, {r: probs[r][:, pos] for r in self.roles})


def scorer_for(evidence, models, spec) -> ChunkScorer:
    """The scorer of the audit's roles, with the probe and controls fitted while the evidence was built."""
    ds = evidence.dataset
    fitted = models.controls or {"input": {}, "tabular": None}
    return ChunkScorer(tuple(sorted(evidence.roles("current"))), tuple(ds.classes), ds.positive, tuple(ds.sensitive),
                       spec.data.current, spec.data, spec.where, models.modality, models.probe, fitted["input"],
                       fitted["tabular"], evidence.info.get("controls", {}).get("chosen"), models)


def stream_evidence(evidence, models, spec, files: list[Path], total: int, on_ray: bool, timings: dict,
                    model_info: dict | None = None):
    """Pass 2 (locally, or on the connected Ray cluster) and the counts evidence built from it."""
    import time

    t = time.perf_counter()
    scorer = scorer_for(evidence, models, spec)
    columns = needed_columns(spec.data, spec.data.current)
    if on_ray:
        from .distributed.ray_stream import score_ray, worker_scorer

        workers = worker_scorer(scorer, model_info, len(scorer.classes), spec.model.allow_pickle, spec.where)
        stats = score_ray(files, columns, workers, total)
    else:
        stats = score_local(files, columns, scorer, total)
    timings["stream_s"] = round(time.perf_counter() - t, 2)
    out = counts_evidence(evidence, stats, len(evidence.dataset.splits["current"]))
    out.info["stream"]["files"] = len(files)
    return out


def score_local(files: list[Path], columns: list[str], scorer: ChunkScorer, total: int) -> PredictionStats:
    """Pass 2 on this machine: chunk by chunk, merged exactly."""
    merged = PredictionStats(scorer.roles, scorer.sensitive, len(scorer.classes), sample_size=0)
    bar = Progress(f"stream current: scoring every row with {len(scorer.roles)} model roles", total, "rows")
    for frame in chunks(files, columns):
        merged = merged.merge(scorer(frame))
        bar.update(len(frame))
    bar.close()
    return merged


def counts_evidence(evidence, stats: PredictionStats, n_sample: int):
    """The evidence the counts checks read: the current split as its distinct cells, weighted by their rows,
    with the score histograms; every other split as it was. rows_sample keeps the sample's evidence."""
    import pandas as pd

    from .data import Split

    ds = evidence.dataset
    keys = sorted(stats.cells)
    width = 1 + len(stats.roles)
    cells = np.array([key[:width] for key in keys], dtype=np.int64).reshape(len(keys), width)
    rows = np.array([stats.cells[key] for key in keys], dtype=np.int64)
    frame = pd.DataFrame({c: [str(key[width + j]) for key in keys] for j, c in enumerate(stats.sensitive)})
    sample = ds.splits["current"]
    split = Split("current", (), cells[:, 0], frame, sample.digest, sample.source, sample.template)
    k = ds.n_classes
    probs = {role: dict(evidence.probs[role]) for role in evidence.probs}
    hist = {}
    for i, role in enumerate(stats.roles):
        probs[role]["current"] = np.eye(k)[cells[:, 1 + i]]       # one-hot: the counts checks read argmax only
        hist[role] = {"current": stats.hist[role]}
    labels = np.bincount(cells[:, 0], weights=rows, minlength=k).astype(np.int64)
    info = dict(evidence.info, stream={"rows": stats.n, "sample_rows": n_sample, "score_grid_bins": GRID,
                                       "label_counts": {c: int(v) for c, v in zip(ds.classes, labels)},
                                       "counts_checks": list(COUNTS_CHECKS),
                                       "reading": "counts checks: every row; other checks: the seeded sample"})
    weights = dict(evidence.weights, current=rows)
    dataset = replace(ds, splits=dict(ds.splits, current=split))
    return replace(evidence, dataset=dataset, probs=probs, weights=weights, score_hist=hist, info=info,
                   rows_sample=evidence, _bootstraps={})
