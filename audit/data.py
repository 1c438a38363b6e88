"""Tables for each split: read (builtin, CSV, Parquet, JSONL), sample, turn rows into model inputs (through the
modality), encode labels."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MSG_BAD_FILE, MSG_MISSING_COLUMN, InputError
from .spec import DataSpec, SplitSource

MAX_DATA_BYTES = 2 << 30


@dataclass(frozen=True)
class Split:
    """One split as every check sees it: model inputs, encoded labels, the raw columns, and a content digest."""

    name: str
    inputs: tuple            # what the models read, one per row (texts; image paths)
    y: np.ndarray            # class indices into Dataset.classes
    frame: object            # pandas DataFrame of the sampled rows (raw columns)
    digest: str
    source: str              # where the rows came from (for the manifest and the report)
    template: str | None = None   # the format string that rendered the texts from the rows, if any

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class Dataset:
    classes: tuple[str, ...]
    positive: int | None     # index of the positive class for binary tasks
    splits: dict
    sensitive: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def read_table(src: SplitSource, spec_file: str, seed: int, label: str = "label"):
    """The rows of one split, sampled deterministically (same seed + source => same rows). A folder (image
    tasks) is read as class sub-folders, the class named in the `label` column."""
    from .builtin_data import SPLITS, load_builtin
    from .sampling import sample_rows

    field = f"data.{src.name}"
    if src.builtin is not None:
        split = src.split or "train"
        if split not in SPLITS:
            raise InputError(f"{spec_file}: {field}.split must be one of {', '.join(SPLITS)}. "
                             f"Got {split!r} instead.")
        df = load_builtin(src.builtin, split)
    elif src.path.is_dir():
        from .vision.sources import folder_source

        df = folder_source(src.path, label, f"{spec_file}: {field}.path")
    else:
        df = _read_file(src.path, spec_file, f"{field}.path")
    if len(df) == 0:
        raise InputError(f"{spec_file}: {field} has no rows ({src.path or src.builtin}).")
    return sample_rows(df, src.sample, src.skip, seed, src.mix, f"{spec_file}: {field}")


def _read_file(path: Path, spec_file: str, field: str):
    import pandas as pd

    if path.is_dir():                 # a folder of Parquet files (Spark, Ray Data, Dask write them so)
        return _read_parquet_folder(path, spec_file, field)
    if path.stat().st_size == 0:
        raise InputError.make(MSG_BAD_FILE, where=spec_file, field=field, value=str(path), reason="the file is empty")
    if path.stat().st_size > MAX_DATA_BYTES:
        raise InputError.make(MSG_BAD_FILE, where=spec_file, field=field, value=str(path),
                              reason=f"it is larger than {MAX_DATA_BYTES} bytes")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            with open(path, "rb") as f:
                if f.read(4) != b"PAR1":
                    raise ValueError("it is not a Parquet file (no PAR1 magic bytes)")
            return pd.read_parquet(path)
        raw = path.read_bytes()
        _require_utf8(raw, path, spec_file, field)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_csv(path, encoding="utf-8", encoding_errors="strict")
    except InputError:
        raise
    except Exception as e:  # pandas/pyarrow raise many types; the message is what the user needs
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError.make(MSG_BAD_FILE, where=spec_file, field=field, value=str(path), reason=reason) from None


def _read_parquet_folder(path: Path, spec_file: str, field: str):
    """Every *.parquet under the folder, in name order (the order Ray Data and distributed.ray_scan read)."""
    import pandas as pd

    files = sorted(path.rglob("*.parquet"))
    if sum(f.stat().st_size for f in files) > MAX_DATA_BYTES:
        raise InputError.make(MSG_BAD_FILE, where=spec_file, field=field, value=str(path),
                              reason=f"its Parquet files hold more than {MAX_DATA_BYTES} bytes; run it with Ray "
                                     "(distributed.ray_scan)")
    try:
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    except Exception as e:  # pyarrow raises many types; the message is what the user needs
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError.make(MSG_BAD_FILE, where=spec_file, field=field, value=str(path), reason=reason) from None


def _require_utf8(raw: bytes, path: Path, spec_file: str, field: str) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError.make(MSG_BAD_FILE, where=spec_file, field=field, value=str(path),
                              reason=f"text is not UTF-8 at line {line} (byte {e.start}: {raw[e.start:e.start+1]!r})"
                              ) from None


def missing_column(spec_file: str, field: str, column: str, source: str, df) -> InputError:
    return InputError.make(MSG_MISSING_COLUMN, where=spec_file, field=field, value=column, source=source,
                           columns=", ".join(map(str, df.columns)))


def source_label(src: SplitSource) -> str:
    """'data.train (train.csv)': the spec field and the file it read, for error messages."""
    origin = src.path.name if src.path is not None else f"builtin:{src.builtin}"
    return f"data.{src.name} ({origin})"


def _labels(df, label: str, src: SplitSource, spec_file: str) -> list[str]:
    field = source_label(src)
    if label not in df.columns:
        raise missing_column(spec_file, "data.label", label, field, df)
    values = df[label]
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise InputError(f"{spec_file}: {field} column {label!r} has a missing (NaN) label at row {row}. "
                         "Drop or fill such rows before the audit.")
    return values.astype(str).tolist()


def _digest(inputs, labels, df, columns) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([inputs, labels], ensure_ascii=False).encode())
    if columns:
        h.update(df[list(columns)].to_json(orient="values", force_ascii=False).encode())
    return h.hexdigest()


def load_dataset(data: DataSpec, seed: int, spec_file: str, modality) -> Dataset:
    """Every split of the spec, checked against one another (columns, label set)."""
    frames = {name: read_table(src, spec_file, seed, src.label or data.label)
              for name, src in data.splits().items()}
    needed = set(data.sensitive) | set(data.features)
    for name in ("train", "reference", "current"):
        missing = sorted(c for c in needed if c not in frames[name].columns)
        if missing:
            key = "sensitive" if missing[0] in data.sensitive else "features"
            raise missing_column(spec_file, f"data.{key}", missing[0], source_label(data.splits()[name]), frames[name])

    for name in ("reference", "current"):
        for col in data.sensitive:
            values = frames[name][col]
            if values.isna().any():
                row = int(np.flatnonzero(values.isna().to_numpy())[0])
                raise InputError(f"{spec_file}: data.sensitive column {col!r} is missing at row {row} of "
                                 f"{source_label(data.splits()[name])}. Fill it (e.g. 'unknown') so the row is "
                                 "counted in a group.")
            if values.nunique() < 2:
                raise InputError(f"{spec_file}: data.sensitive column {col!r} has a single group "
                                 f"{str(values.iloc[0])!r} in {source_label(data.splits()[name])}; the other groups "
                                 "are empty there, so no comparison is possible. Sample a split that contains them.")
    train_labels = _labels(frames["train"], data.label, data.train, spec_file)
    classes = sorted(set(train_labels))
    if len(classes) < 2:
        raise InputError(f"{spec_file}: {source_label(data.train)} has a single label value {classes!r} in "
                         f"{data.label!r}; a classifier needs at least two.")
    positive = None
    if data.positive_label is not None:
        if data.positive_label not in classes:
            raise InputError(f"{spec_file}: data.positive_label is {data.positive_label!r}, which is not a value "
                             f"of {data.label!r} in {source_label(data.train)}. Values: {', '.join(classes)}.")
        if len(classes) == 2:
            classes = [c for c in classes if c != data.positive_label] + [data.positive_label]
            positive = 1
    elif len(classes) == 2:
        positive = 1
    index = {c: i for i, c in enumerate(classes)}

    splits = {}
    for name, df in frames.items():
        src = data.splits()[name]
        if name == "source_eval":
            splits[name] = _source_split(df, src, data, spec_file, modality)
            continue
        labels = train_labels if name == "train" else _labels(df, data.label, src, spec_file)
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise InputError(f"{spec_file}: {source_label(src)} has label {unknown[0]!r} in {data.label!r}, which "
                             f"data.train does not have. Train labels: {', '.join(classes)}.")
        inputs = modality.read_inputs(df, src, data, spec_file)
        y = np.array([index[v] for v in labels], dtype=np.int64)
        digest = _digest(modality.fingerprint(inputs), labels, df, sorted(needed))
        template = src.template or (None if src.text else data.template)
        splits[name] = Split(name, tuple(inputs), y, df, digest,
                             str(src.path or f"builtin:{src.builtin}/{src.split or 'train'}"), template)
    return Dataset(tuple(classes), positive, splits, data.sensitive, data.features)


def _source_split(df, src: SplitSource, data: DataSpec, spec_file: str, modality) -> Split:
    """The source task's evaluation set: its own labels, its own class list (stored in frame.attrs)."""
    labels = _labels(df, src.label, src, spec_file)
    inputs = modality.read_inputs(df, src, data, spec_file)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InputError(f"{spec_file}: data.source_eval has a single label value {classes!r}.")
    y = np.array([classes.index(v) for v in labels], dtype=np.int64)
    df = df.copy()
    df.attrs["classes"] = classes
    return Split("source_eval", tuple(inputs), y, df, _digest(modality.fingerprint(inputs), labels, df, []),
                 str(src.path or f"builtin:{src.builtin}/{src.split or 'train'}"))
