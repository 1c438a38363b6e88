"""Reading one table from where users keep it: CSV, TSV, Parquet and JSON Lines files (optionally compressed with
gzip, bz2, xz, zip or zstd), folders of Parquet files, Hugging Face `datasets` folders (save_to_disk), datasets
in the local Hugging Face cache, and fsspec URLs (s3://, gs://, memory://, ...) when their filesystem is
installed.

Label, sensitive and text columns are read as strings with no missing-value guessing: "NA", "None" and "null" are
values there (an empty field is still missing). Other columns keep pandas' usual parsing.
Format detection is plain string work, so the spec can validate paths without importing pandas.
"""
from __future__ import annotations

import io
from pathlib import Path, PurePosixPath

from .errors import MSG_BAD_FILE, InputError

MAX_DATA_BYTES = 2 << 30
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".jsonl": "jsonl",
           ".ndjson": "jsonl"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd"}
SUPPORTED = ("a .csv, .tsv, .parquet or .jsonl file (optionally .gz, .bz2, .xz, .zip or .zst), a folder of "
             "Parquet files, or a Hugging Face datasets folder")
# pandas' default missing markers, applied to every column that is not read as a string
PANDAS_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def file_format(name: str) -> tuple[str, str | None] | None:
    """(format, compression) from a file name: 'train.csv.gz' -> ('csv', 'gzip'); None when unsupported."""
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and compression):
        return None
    return fmt, compression


def folder_format(folder: Path) -> str | None:
    """'hf_datasets' for a save_to_disk folder, 'parquet_dir' for a folder of Parquet files, else None."""
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return "hf_datasets"
    if any(folder.rglob("*.parquet")):
        return "parquet_dir"
    return None


def is_url(text: str) -> bool:
    return "://" in text


def public_url(url: str) -> str:
    """A URL as reports may show it: no user, password or query string."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _fail(where: str, field: str, value: str, reason: str) -> InputError:
    return InputError.make(MSG_BAD_FILE, where=where, field=field, value=value, reason=reason)


def read_bytes(opener, where: str, field: str, value: str) -> bytes:
    """At most MAX_DATA_BYTES of decompressed content: a compression bomb stops at the cap."""
    with opener() as f:
        raw = f.read(MAX_DATA_BYTES + 1)
    if len(raw) > MAX_DATA_BYTES:
        raise _fail(where, field, value, f"it holds more than {MAX_DATA_BYTES} bytes")
    if not raw:
        raise _fail(where, field, value, "the file is empty")
    return raw


def _local_opener(path: Path, compression: str | None, where: str, field: str):
    import bz2
    import gzip
    import lzma
    import zipfile

    def open_zip():
        z = zipfile.ZipFile(path)
        names = [n for n in z.namelist() if not n.endswith("/")]
        if len(names) != 1:
            raise _fail(where, field, str(path), f"a .zip must hold exactly one file (it holds {len(names)})")
        return z.open(names[0])

    def open_zstd():
        try:
            import zstandard
        except ImportError:
            raise _fail(where, field, str(path), "reading .zst needs the zstandard package "
                                                 "(pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))

    return {None: lambda: open(path, "rb"), "gzip": lambda: gzip.open(path, "rb"), "bz2": lambda: bz2.open(path, "rb"),
            "xz": lambda: lzma.open(path, "rb"), "zip": open_zip, "zstd": open_zstd}[compression]


def parse_bytes(raw: bytes, fmt: str, string_columns, where: str, field: str, value: str):
    """A DataFrame from the decompressed bytes of one file."""
    import pandas as pd

    if fmt == "parquet":
        if raw[:4] != b"PAR1":
            raise ValueError("it is not a Parquet file (no PAR1 magic bytes)")
        return pd.read_parquet(io.BytesIO(raw))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise _fail(where, field, value, f"text is not UTF-8 at line {line} (byte {e.start}: "
                                         f"{raw[e.start:e.start + 1]!r})") from None
    if fmt == "jsonl":
        return pd.read_json(io.BytesIO(raw), lines=True, dtype=False)
    sep = "\t" if fmt == "tsv" else ","
    header = pd.read_csv(io.BytesIO(raw), sep=sep, nrows=0, encoding="utf-8").columns
    strings = [c for c in header if c in set(string_columns)]
    # Only an empty field is missing in a string column; the other columns keep pandas' usual markers.
    na = {c: ([""] if c in strings else PANDAS_NA) for c in header}
    return pd.read_csv(io.BytesIO(raw), sep=sep, encoding="utf-8", encoding_errors="strict",
                       dtype=dict.fromkeys(strings, str), keep_default_na=False, na_values=na)


def read_local(path: Path, string_columns, where: str, field: str):
    """A file or folder on this machine."""
    import pandas as pd

    if path.is_dir():
        kind = folder_format(path)
        if kind == "hf_datasets":
            return read_hf_folder(path, None, where, field)
        if kind == "parquet_dir":
            return pd.read_parquet(path)
        raise _fail(where, field, str(path), "the folder holds no Parquet files and is not a Hugging Face datasets "
                                             "folder")
    found = file_format(path.name)
    if found is None:
        raise _fail(where, field, str(path), f"it is not {SUPPORTED}")
    fmt, compression = found
    if path.stat().st_size == 0:
        raise _fail(where, field, str(path), "the file is empty")
    if compression is None and path.stat().st_size > MAX_DATA_BYTES:
        raise _fail(where, field, str(path), f"it is larger than {MAX_DATA_BYTES} bytes")
    raw = read_bytes(_local_opener(path, compression, where, field), where, field, str(path))
    return parse_bytes(raw, fmt, string_columns, where, field, str(path))


def read_url(url: str, string_columns, where: str, field: str):
    """An fsspec URL; the protocol's filesystem package (s3fs, gcsfs, ...) must be installed."""
    found = file_format(PurePosixPath(url.split("?", 1)[0]).name)
    if found is None:
        raise _fail(where, field, public_url(url), f"it is not {SUPPORTED.split(', a folder')[0]}")
    try:
        import fsspec
    except ImportError:
        raise _fail(where, field, public_url(url), "URLs need fsspec (pip install fsspec)") from None
    fmt, compression = found
    try:
        opener = lambda: fsspec.open(url, "rb", compression=compression).open()  # noqa: E731
        raw = read_bytes(opener, where, field, public_url(url))
    except (ImportError, ValueError) as e:        # fsspec: "Install s3fs to access S3", unknown protocol
        raise _fail(where, field, public_url(url), str(e).splitlines()[0]) from None
    except (OSError, FileNotFoundError) as e:
        raise _fail(where, field, public_url(url), f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    return parse_bytes(raw, fmt, string_columns, where, field, public_url(url))


def _datasets(where: str, field: str, value: str):
    try:
        import datasets
    except ImportError:
        raise _fail(where, field, value, "Hugging Face datasets need the datasets package (pip install "
                                         "'transfer-audit[datasets]')") from None
    datasets.disable_progress_bars()
    return datasets


def _one_split(loaded, split: str | None, where: str, field: str, value: str):
    """A Dataset from a Dataset or DatasetDict, as a DataFrame."""
    if hasattr(loaded, "keys") and not hasattr(loaded, "to_pandas"):
        names = sorted(loaded.keys())
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            raise _fail(where, field, value, f"it has splits {', '.join(names)}; name one with 'split:'"
                        + ("" if split is None else f" (got {split!r})"))
        loaded = loaded[split]
    return loaded.to_pandas()


def read_hf_folder(folder: Path, split: str | None, where: str, field: str):
    """A folder written by Dataset.save_to_disk or DatasetDict.save_to_disk."""
    datasets = _datasets(where, field, str(folder))
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise _fail(where, field, str(folder), str(e).splitlines()[0][:300]) from None
    return _one_split(loaded, split, where, field, str(folder))


def read_hub_dataset(ref: str, config: str | None, split: str | None, where: str, field: str):
    """`org/name[@revision]` from the local Hugging Face cache only: the hub cache snapshot (symlinks checked as
    for models) read by `datasets` as a local folder, else what `datasets` prepared in its own cache before."""
    from .models.references import hub_cache_dir

    datasets = _datasets(where, field, ref)
    repo_id, _, revision = ref.partition("@")
    folder = _hub_snapshot(repo_id, revision or None, hub_cache_dir(), where, field)
    try:
        if folder is not None:
            loaded = datasets.load_dataset(str(folder), name=config, split=split)
        else:
            loaded = datasets.load_dataset(repo_id, name=config, split=split, revision=revision or None)
    except Exception as e:  # datasets raises many types offline (ConnectionError, FileNotFoundError, ValueError)
        raise _fail(where, field, ref, f"it is not in the local Hugging Face cache ({hub_cache_dir()}) nor in the "
                    f"datasets cache ({type(e).__name__}: {str(e).splitlines()[0][:200]}). Download it once with "
                    f"`hf download {repo_id} --repo-type dataset`; audits never download") from None
    return _one_split(loaded, split, where, field, ref)


def _hub_snapshot(repo_id: str, revision: str | None, cache: Path, where: str, field: str) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    from .models.safety import cache_blobs, check_link

    try:
        folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, cache_dir=str(cache),
                                        local_files_only=True))
    except LocalEntryNotFoundError:
        return None
    except HFValidationError as e:
        raise _fail(where, field, repo_id, f"not a valid Hub id ({str(e).splitlines()[0]})") from None
    blobs = cache_blobs(folder)
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            check_link(p, blobs, p.relative_to(folder).as_posix(), folder, field)
        elif p.suffix == ".py":
            from .errors import MSG_UNSAFE_CODE, UnsafeArtifactError

            raise UnsafeArtifactError.make(MSG_UNSAFE_CODE, where=f"{where}: {field}", value=repo_id,
                                           reason=f"loading script {p.name!r}")
    return folder
