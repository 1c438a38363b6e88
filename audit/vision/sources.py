"""Image data sources as pandas DataFrames: one row per image, an absolute `path` column, a label column and
any group columns. Pixels are not read here (decode.open_image reads them when a split is used).

Sources: a folder of class sub-folders; a CSV/Parquet table with an image path column (relative paths
resolve against the table's folder); the builtin ELPV solar-cell set (read from the elpv-dataset package's
files, never imported); scikit-learn's 8x8 digits written once as PNG files. Sampling is `sample_rows`,
the same rule as transfer_audit.data.read_table: same seed + same source => same rows.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import InputError
from .decode import bad_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
PATH_COLUMN = "path"
ELPV_PACKAGE = "elpv_dataset"
ELPV_REQUIREMENT = "elpv-dataset==1.0.0.post1"
ELPV_DEFECTIVE_AT = 0.5


def sample_rows(df, sample: int | None, skip: int, seed: int, where: str):
    """Rows skip..skip+sample of a seeded permutation, kept in file order (read_table's rule)."""
    if len(df) == 0:
        raise InputError(f"{where} has no rows.")
    if skip or sample:
        order = np.random.default_rng(seed).permutation(len(df))
        stop = None if sample is None else skip + sample
        rows = np.sort(order[skip:stop])
        if rows.size == 0:
            raise InputError(f"{where}: skip={skip} leaves no rows of the {len(df)} available.")
        df = df.iloc[rows].reset_index(drop=True)
    return df


def is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def folder_source(root: str | Path, label: str = "label", where: str | None = None):
    """root/<class>/**/<image>: one row per image file, label = the class folder's name, sorted by path."""
    import pandas as pd

    root = Path(root)
    where = where or str(root)
    if not root.is_dir():
        raise InputError(f"{where}: {str(root)!r} is not a folder of class sub-folders.")
    loose = sorted(p.name for p in root.iterdir() if is_image_file(p))
    if loose:
        raise InputError(f"{where}: image {loose[0]!r} lies directly in {str(root)!r}; images must sit in one "
                         "sub-folder per class (e.g. defective/, functional/).")
    rows = []
    for cls in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in cls.rglob("*") if is_image_file(p))
        if not files:
            raise InputError(f"{where}: class folder {cls.name!r} holds no image files "
                             f"({', '.join(IMAGE_SUFFIXES)}).")
        rows.extend((str(p.resolve()), cls.name) for p in files)
    if not rows:
        raise InputError(f"{where}: {str(root)!r} has no class sub-folders with images.")
    return pd.DataFrame(rows, columns=[PATH_COLUMN, label])


def table_source(table: str | Path, path_column: str = PATH_COLUMN, where: str | None = None):
    """A table (CSV, TSV, Parquet, JSONL, compressed; see tables.py) with an image path column; relative paths resolve
    against the table's folder and become absolute in the returned frame. Every file must exist (checked now, decoded
    later)."""
    from ..data import read_file

    table = Path(table)
    where = where or str(table)
    df = read_file(table, where, "path", (path_column,))
    if path_column not in df.columns:
        raise InputError(f"{where}: the image path column {path_column!r} is not in {table.name}. "
                         f"Columns: {', '.join(map(str, df.columns))}.")
    base = table.resolve().parent
    resolved = []
    for i, value in enumerate(df[path_column].tolist()):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{where}: {table.name} row {i} column {path_column!r} must be an image path. "
                             f"Got {value!r} instead.")
        p = Path(value)
        p = (p if p.is_absolute() else base / p).resolve()
        if not p.is_file():
            raise bad_image(f"{where}: {table.name} row {i} column {path_column!r}", value,
                            "the file does not exist" if not p.exists() else "it is not a regular file")
        resolved.append(str(p))
    df = df.copy()
    df[path_column] = resolved
    return df


def elpv_dir() -> Path:
    """The elpv-dataset package's data folder, found without importing the package."""
    spec = importlib.util.find_spec(ELPV_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"builtin data 'elpv' needs the package {ELPV_PACKAGE!r}, which is not installed. "
                         f"Install it with `pip install {ELPV_REQUIREMENT}`.")
    return Path(spec.submodule_search_locations[0]) / "data"


def load_elpv(split: str = "all", module_type: str | None = None):
    """ELPV (Buerhop-Lutz et al. 2018; Deitsch et al. 2019): 2,624 electroluminescence images of solar cells,
    300x300 gray. Columns: path, probability (expert defect probability 0, 1/3, 2/3, 1), type (mono/poly),
    condition ('defective' when probability >= 0.5, else 'functional'). split: train/test (the fixed 70/30
    split, seed 0, that every builtin without a published split uses) or all; module_type: mono/poly/None."""
    import pandas as pd

    from ..builtin_data import SPLITS, _fixed_split

    if split not in SPLITS:
        raise InputError(f"builtin elpv: split must be one of {', '.join(SPLITS)}. Got {split!r} instead.")
    if module_type not in (None, "mono", "poly"):
        raise InputError(f"builtin elpv: type must be mono or poly. Got {module_type!r} instead.")
    root = elpv_dir()
    df = pd.read_csv(root / "labels.csv", sep=r"\s+", header=None, names=["path", "probability", "type"],
                     dtype={"path": str, "probability": float, "type": str})
    df["path"] = [str(root / p) for p in df["path"]]
    df["condition"] = np.where(df["probability"] >= ELPV_DEFECTIVE_AT, "defective", "functional")
    df = _fixed_split(df, split)
    if module_type is not None:
        df = df[df["type"] == module_type].reset_index(drop=True)
    return df


def digits_source(folder: str | Path):
    """scikit-learn's 1,797 handwritten digits (8x8, UCI) written once as gray PNG files under `folder`
    (values 0-16 scaled to 0-255); columns path, label ('0'..'9'). A second real image source for tests."""
    import pandas as pd
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, target) in enumerate(zip(d.images, d.target)):
        p = folder / f"digit{i:04d}.png"
        if not p.exists():
            tmp = p.with_suffix(".tmp.png")
            Image.fromarray(np.rint(img * 255 / 16).astype(np.uint8), mode="L").save(tmp)
            tmp.replace(p)
        rows.append((str(p), str(int(target))))
    return pd.DataFrame(rows, columns=[PATH_COLUMN, "label"])
