"""Tables for each split: read (builtin data, files, folders, URLs, Hugging Face datasets: tables.py, or DataFrames
given to transfer_audit.run), sample, turn rows into model inputs (through the modality), encode labels."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MSG_BAD_FILE, MSG_MISSING_COLUMN, AuditError, InputError
from .spec import DataSpec, SplitSource


@dataclass(frozen=True)
class Split:
    """One split as every check sees it: model inputs, encoded labels, the raw columns, and a content digest."""

    name: str
    inputs: tuple            # what the models read, one per row (texts; image paths)
    y: np.ndarray            # class indices into Dataset.classes
    frame: object            # pandas DataFrame of the sampled rows (raw columns)
    digest: str
    source: str              # where the rows came from, as reports show it: never an absolute path
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


def read_table(src: SplitSource, spec_file: str, seed: int, string_columns=(), frames=None, base_dir=None,
               label: str = "label"):
    """The rows of one split, sampled deterministically (same seed + source => same rows). A folder that holds
    no table (image tasks) is read as class sub-folders, the class named in the `label` column."""
    from .builtin_data import SPLITS, load_builtin
    from .sampling import sample_rows

    field = f"data.{src.name}"
    if src.frame or src.stream:     # a streamed split arrives as its sample (stream.sample_split)
        df = _given_frame(frames, src.name, spec_file)
    elif src.builtin is not None:
        split = src.split or "train"
        if split not in SPLITS:
            raise InputError(f"{spec_file}: {field}.split must be one of {', '.join(SPLITS)}. "
                             f"Got {split!r} instead.")
        df = load_builtin(src.builtin, split)
    elif src.path is not None and src.path.is_dir() and _is_class_folder(src.path):
        from .vision.sources import folder_source

        df = folder_source(src.path, label, f"{spec_file}: {field}.path")
    else:
        df = _read_source(src, spec_file, string_columns)
    if len(df) == 0:
        raise InputError(f"{spec_file}: {field} has no rows ({display_source(src, base_dir)}).")
    return sample_rows(df, src.sample, src.skip, seed, src.mix, f"{spec_file}: {field}")


def _is_class_folder(path: Path) -> bool:
    """A folder that is not a table (Parquet or Hugging Face datasets): class sub-folders of images."""
    from .tables import folder_format

    return folder_format(path) is None


def _given_frame(frames, name: str, spec_file: str):
    import pandas as pd

    df = (frames or {}).get(name)
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{spec_file}: data[{name!r}] must be a pandas DataFrame. Got {type(df).__name__} instead.")
    return df.reset_index(drop=True)


def _read_source(src: SplitSource, spec_file: str, string_columns):
    """A file, folder, URL or cached Hub dataset; any reader failure becomes one sentence naming the source."""
    from . import tables

    field = f"data.{src.name}." + ("hub" if src.hub else "path")
    value = src.hub or (tables.public_url(src.url) if src.url else str(src.path))
    try:
        if src.hub is not None:
            return tables.read_hub_dataset(src.hub, src.config, src.split, spec_file, field)
        if src.url is not None:
            return tables.read_url(src.url, string_columns, spec_file, field)
        if src.path.is_dir() and tables.folder_format(src.path) == "hf_datasets":
            return tables.read_hf_folder(src.path, src.split, spec_file, field)
        return read_file(src.path, spec_file, field, string_columns)
    except AuditError:
        raise
    except Exception as e:  # pandas/pyarrow raise many types; the message is what the user needs
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError.make(MSG_BAD_FILE, where=spec_file, field=field, value=value, reason=reason) from None


def read_file(path: Path, spec_file: str, field: str, string_columns=()):
    """One local file or folder (tables.read_local), any reader failure as one sentence naming it."""
    from . import tables

    try:
        return tables.read_local(Path(path), string_columns, spec_file, field)
    except AuditError:
        raise
    except Exception as e:  # pandas/pyarrow raise many types; the message is what the user needs
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError.make(MSG_BAD_FILE, where=spec_file, field=field, value=str(path), reason=reason) from None


def display_source(src: SplitSource, base_dir: Path | None = None) -> str:
    """Where a split came from, as results.json and the reports show it: a file by its path relative to the
    spec's folder (else its name), a URL without credentials, never an absolute path."""
    from .tables import public_url

    if src.frame:
        return f"dataframe:{src.name}"
    if src.builtin is not None:
        return f"builtin:{src.builtin}/{src.split or 'train'}"
    if src.hub is not None:
        return f"hf:{src.hub}" + (f"/{src.config}" if src.config else "") + f"/{src.split or 'train'}"
    if src.url is not None:
        return public_url(src.url)
    if base_dir is not None and src.path.is_relative_to(base_dir):
        return src.path.relative_to(base_dir).as_posix()
    return src.path.name


def missing_column(spec_file: str, field: str, column: str, source: str, df) -> InputError:
    return InputError.make(MSG_MISSING_COLUMN, where=spec_file, field=field, value=column, source=source,
                           columns=", ".join(map(str, df.columns)))


def source_label(src: SplitSource) -> str:
    """'data.train (train.csv)': the spec field and the file it read, for error messages."""
    return f"data.{src.name} ({display_source(src)})"


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


def string_columns(data: DataSpec, src: SplitSource) -> tuple[str, ...]:
    """Columns read as text with no missing-value guessing: labels, sensitive columns, the text column."""
    return tuple(c for c in (data.label, src.label, data.text, src.text, *data.sensitive) if c)


def load_dataset(data: DataSpec, seed: int, spec_file: str, modality, frames=None, base_dir: Path | None = None
                 ) -> Dataset:
    """Every split of the spec, checked against one another (columns, label set). `frames` holds the DataFrames
    given to transfer_audit.run; base_dir is the spec's folder (sources are shown relative to it)."""
    given = frames
    if data.current.stream and "current" not in (frames or {}):      # a streamed split arrives as its sample
        from .stream import sample_split

        given = dict(frames or {}, current=sample_split(data.current, data, seed, spec_file)[0])
    frames = {name: read_table(src, spec_file, seed, string_columns(data, src), given, base_dir,
                               label=src.label or data.label)
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
            splits[name] = _source_split(df, src, data, spec_file, modality, base_dir)
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
        splits[name] = Split(name, tuple(inputs), y, df, digest, display_source(src, base_dir), template)
    return Dataset(tuple(classes), positive, splits, data.sensitive, data.features)


def _source_split(df, src: SplitSource, data: DataSpec, spec_file: str, modality, base_dir=None) -> Split:
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
                 display_source(src, base_dir))
