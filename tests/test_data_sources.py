"""Data where users keep it: CSV/TSV/Parquet/JSONL (compressed too), Parquet folders, Hugging Face datasets folders
and cached dataset ids, fsspec URLs; label and sensitive columns read as strings ("NA" and "None" are values)."""
from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from hf_cache import add_to_cache

from transfer_audit.errors import InputError
from transfer_audit.spec import SplitSource

ROWS = pd.DataFrame({
    "text": ["good film", "bad film", "None", "fine film", "NA", "great film"],
    "label": ["pos", "neg", "neg", "pos", "neg", "pos"],
    "region": ["NA", "EU", "None", "NA", "null", "EU"],      # North America, Europe, ...: values, not missing
    "age": [31, 45, 27, 60, 38, 52],
})
STRINGS = ("label", "region", "text")


def read(path=None, url=None, hub=None, split=None, config=None):
    from transfer_audit.data import read_table

    src = SplitSource("train", path=path, url=url, hub=hub, split=split, config=config)
    return read_table(src, "audit.yaml", 0, STRINGS)


def check(df):
    assert df["region"].tolist() == ROWS["region"].tolist()
    assert df["text"].tolist() == ROWS["text"].tolist()
    assert df["label"].tolist() == ROWS["label"].tolist()
    assert df["age"].tolist() == ROWS["age"].tolist() and pd.api.types.is_integer_dtype(df["age"])


def _write(folder: Path, name: str) -> Path:
    path = folder / name
    csv = ROWS.to_csv(index=False).encode()
    tsv = ROWS.to_csv(index=False, sep="\t").encode()
    jsonl = ROWS.to_json(orient="records", lines=True).encode()
    writers = {
        "t.csv": lambda: path.write_bytes(csv), "t.tsv": lambda: path.write_bytes(tsv),
        "t.csv.gz": lambda: path.write_bytes(gzip.compress(csv)),
        "t.csv.bz2": lambda: path.write_bytes(bz2.compress(csv)),
        "t.tsv.xz": lambda: path.write_bytes(lzma.compress(tsv)), "t.jsonl": lambda: path.write_bytes(jsonl),
        "t.jsonl.gz": lambda: path.write_bytes(gzip.compress(jsonl)), "t.parquet": lambda: ROWS.to_parquet(path),
        "t.csv.zip": lambda: zipfile.ZipFile(path, "w").writestr("t.csv", csv),
    }
    writers[name]()
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.csv.gz", "t.csv.bz2", "t.tsv.xz", "t.csv.zip", "t.jsonl",
                                  "t.jsonl.gz", "t.parquet"])
def test_files_of_every_format(tmp_path, name):
    check(read(path=_write(tmp_path, name)))


def test_a_folder_of_parquet_files(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    ROWS.iloc[:3].to_parquet(folder / "part-0.parquet")
    ROWS.iloc[3:].to_parquet(folder / "part-1.parquet")
    check(read(path=folder))


def test_hugging_face_datasets_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_pandas(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))
    check(read(path=tmp_path / "one"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 1])}).save_to_disk(str(tmp_path / "dict"))
    check(read(path=tmp_path / "dict", split="train"))
    assert len(read(path=tmp_path / "dict", split="test")) == 2
    with pytest.raises(InputError, match="it has splits test, train"):
        read(path=tmp_path / "dict")


def test_a_dataset_id_in_the_hub_cache(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    ROWS.to_parquet(repo / "data" / "train-00000-of-00001.parquet")
    ROWS.iloc[:2].to_parquet(repo / "data" / "test-00000-of-00001.parquet")
    cache = tmp_path / "hub"
    add_to_cache(cache, "org/reviews", repo, repo_type="dataset")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    check(read(hub="org/reviews", split="train"))
    assert len(read(hub="org/reviews@main", split="test")) == 2
    with pytest.raises(InputError, match="hf download org/absent --repo-type dataset"):
        read(hub="org/absent", split="train")


def test_fsspec_urls(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    with fsspec.open("memory://bucket/t.csv.gz", "wb", compression="gzip") as f:
        f.write(ROWS.to_csv(index=False).encode())
    check(read(url="memory://bucket/t.csv.gz"))
    check(read(url=_write(tmp_path, "t.parquet").as_uri()))
    with pytest.raises(InputError, match="memory://bucket/absent.csv"):
        read(url="memory://bucket/absent.csv")
    with pytest.raises(InputError) as e:
        read(url="nosuchproto://user:secret@host/t.csv?token=abc")
    assert "secret" not in e.value.message and "token" not in e.value.message


def test_empty_sensitive_field_is_still_missing(tmp_path):
    from transfer_audit.data import read_table

    path = tmp_path / "t.csv"
    path.write_text("text,label,region\nx,pos,NA\ny,neg,\n")
    df = read_table(SplitSource("train", path=path), "audit.yaml", 0, STRINGS)
    assert df["region"].iloc[0] == "NA" and pd.isna(df["region"].iloc[1])


def test_decompressed_size_is_capped(tmp_path, monkeypatch):
    import transfer_audit.tables as tables

    monkeypatch.setattr(tables, "MAX_DATA_BYTES", 1000)
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" + b"1,2\n" * 10_000))       # 40 KB from a few hundred bytes
    with pytest.raises(InputError, match="more than 1000 bytes"):
        read(path=path)


def test_spec_paths_are_validated_and_sources_never_absolute(tmp_path):
    from transfer_audit.data import display_source
    from transfer_audit.spec import parse_spec

    data = tmp_path / "data"
    data.mkdir()
    _write(data, "t.csv.gz")
    spec = tmp_path / "audit.yaml"
    body = ("name: x\ndata:\n  train: {path: data/t.csv.gz}\n  reference: {path: %s}\n  current: {path: "
            "'s3://bucket/c.parquet'}\n  text: text\n  label: label\nmodel: {base: org/name@v1}\n")
    spec.write_text(body % "data/t.csv.gz")
    parsed = parse_spec(spec)
    assert parsed.data.current.url == "s3://bucket/c.parquet" and parsed.model.base == "org/name@v1"
    assert display_source(parsed.data.train, tmp_path) == "data/t.csv.gz"
    assert display_source(parsed.data.train) == "t.csv.gz"
    (data / "t.xlsx").write_bytes(b"x")
    spec.write_text(body % "data/t.xlsx")
    with pytest.raises(InputError, match="data.reference.path must be a .csv, .tsv, .parquet or .jsonl file"):
        parse_spec(spec)
