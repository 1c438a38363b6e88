"""One split stored as Parquet (a file or a folder of files), reduced to mergeable sufficient statistics of its
predictions (sufficient_stats.PredictionStats), on this machine (file by file, row group by row group) or on Ray
(distributed.ray_scan). Both reduce the same rows with the same exact merge, so both give the same answer.

Scores come either from a model (an adapted classifier folder; one forward pass per row) or from columns the
Parquet files already hold (`score_columns`: predictions-only checks)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MSG_MISSING_COLUMN, InputError
from .sufficient_stats import SAMPLE_SIZE, PredictionStats, row_priority

READ_ROWS = 65_536         # rows per local chunk (and per Ray batch): bounded memory whatever the split's size


@dataclass(frozen=True)
class ScanSpec:
    """What to read and how to score it. classes[positive] is the positive class of a binary task."""

    path: Path
    label: str
    classes: tuple[str, ...]
    sensitive: tuple[str, ...] = ()
    score_columns: dict = field(default_factory=dict)     # role -> column of the positive-class score
    model: Path | None = None                             # adapted classifier folder (role "adapted")
    base: Path | None = None                              # its base, when model is a PEFT adapter
    text: str | None = None
    template: str | None = None
    max_length: int = 128
    seed: int = 0
    sample_size: int = SAMPLE_SIZE
    where: str = "scan"

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(sorted(self.score_columns)) if self.model is None else ("adapted",)

    def columns(self) -> list[str]:
        from .spec import template_fields

        cols = [self.label, *self.sensitive, *self.score_columns.values()]
        if self.model is not None or self.text or self.template:
            cols += template_fields(self.template) if self.template else [self.text]
        return list(dict.fromkeys(cols))


def parquet_files(path: Path, where: str) -> list[Path]:
    """The Parquet files of a split: the file itself or every *.parquet under the folder, in name order."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet")) if path.is_dir() else []
    if not files:
        raise InputError(f"{where}: {path} holds no Parquet files.")
    return files


def check_columns(spec: ScanSpec) -> list[Path]:
    """Every declared column in every file's schema, before any row is read: a missing one is an input error."""
    import pyarrow.parquet as pq

    files = parquet_files(spec.path, spec.where)
    for f in files:
        names = pq.read_schema(f).names
        for col in spec.columns():
            if col not in names:
                raise InputError.make(MSG_MISSING_COLUMN, where=spec.where, field="columns", value=col,
                                      source=str(f), columns=", ".join(names))
    return files


class BlockScorer:
    """Turns a block of rows (a pandas DataFrame) into PredictionStats; loads the model once (Ray: per actor)."""

    def __init__(self, spec: ScanSpec):
        self.spec = spec
        self.index = {c: i for i, c in enumerate(spec.classes)}
        self.model = self.tokenizer = None
        if spec.model is not None:
            from .models.loading import load_classifier, load_tokenizer

            base = spec.base or spec.model
            self.model, _, _ = load_classifier(spec.model, base, len(spec.classes), False, field=f"{spec.where}: model")
            self.tokenizer = load_tokenizer(spec.model if (spec.model / "tokenizer_config.json").exists() else base)

    def texts(self, frame) -> list[str]:
        s = self.spec
        if s.template:
            return [s.template.format_map(r) for r in frame.to_dict("records")]
        if s.text:
            return frame[s.text].astype(str).tolist()
        return [frame.iloc[i].to_json() for i in range(len(frame))]     # content of the row, for the sample

    def stats(self, frame) -> PredictionStats:
        s = self.spec
        labels = frame[s.label].astype(str).map(self.index)
        if labels.isna().any():
            bad = frame[s.label].astype(str)[labels.isna()].iloc[0]
            raise InputError(f"{s.where}: column {s.label!r} has label {bad!r}, which is not one of "
                             f"{', '.join(s.classes)}.")
        if self.model is not None:
            from .evidence import softmax
            from .tasks.text_inference import forward_split

            texts = self.texts(frame)
            probs = softmax(forward_split(self.model, self.tokenizer, texts, s.max_length, True,
                                          what="scan")["logits"])
            scores = {"adapted": probs[:, -1]}
            preds = {"adapted": probs.argmax(1)}
        else:
            scores = {r: frame[c].to_numpy(dtype=np.float64) for r, c in s.score_columns.items()}
            preds = {r: (v >= 0.5).astype(np.int64) for r, v in scores.items()}
        out = PredictionStats(s.roles, s.sensitive, len(s.classes), s.seed, s.sample_size)
        return out.add(labels.to_numpy(), preds, {c: frame[c].to_numpy() for c in s.sensitive}, scores,
                       row_priority(frame, s.seed), _RowText(self, frame))


class _RowText:
    """What the sample keeps of row i (its model input), built only for the rows kept."""

    def __init__(self, scorer: BlockScorer, frame):
        self.scorer, self.frame = scorer, frame

    def __getitem__(self, i: int) -> str:
        return self.scorer.texts(self.frame.iloc[[int(i)]])[0]


def scan_local(spec: ScanSpec) -> PredictionStats:
    """File by file, row group by row group: memory bounded by READ_ROWS whatever the split's size."""
    import pyarrow.parquet as pq

    files = check_columns(spec)
    scorer = BlockScorer(spec)
    total = PredictionStats(spec.roles, spec.sensitive, len(spec.classes), spec.seed, spec.sample_size)
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=READ_ROWS, columns=spec.columns()):
            total = total.merge(scorer.stats(batch.to_pandas()))
    return total
