"""Load the base encoder and the adapted classifier, offline (local_files_only; runtime.offline() sets the HF
offline switches for the run), safetensors only, never remote code."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..progress import say
from .references import resolve_model
from .safety import check_model_dir

# sentence-transformers Pooling config keys -> our pooling names, in sentence-transformers' concatenation order
POOLING_KEYS = (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                ("pooling_mode_mean_tokens", "mean"), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
                ("pooling_mode_weightedmean_tokens", "weightedmean"), ("pooling_mode_lasttoken", "lasttoken"))


def resolve_base(ref: str, field: str = "model.base") -> Path:
    """The local folder of a model reference (see models/references.py)."""
    return resolve_model(ref, field).path


def pooling_modes(folder: Path) -> tuple[str, ...]:
    """How a sentence-transformers model pools token states into its embedding (modules.json -> Pooling
    config); mean pooling for a plain Hugging Face encoder."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        entry = next(m for m in modules if str(m.get("type", "")).endswith("models.Pooling"))
        config = json.loads((folder / entry.get("path", "") / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return ("mean",)
    modes = tuple(name for key, name in POOLING_KEYS if config.get(key))
    return modes or ("mean",)


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


def set_threads() -> int:
    from ..runtime import set_threads as set_run_threads

    return set_run_threads()


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


def adapter_base(path: Path, base_path: Path, field: str) -> Path:
    """The base a PEFT adapter declares (a folder or a Hub id, resolved like model.base), or the spec's base when
    the declared one is not on this machine."""
    cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    declared = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not declared or not isinstance(declared, str):
        return base_path
    try:
        return resolve_model(declared, f"{field}: adapter_config.json base_model_name_or_path").path
    except InputError:
        say(f"the adapter's declared base {declared!r} is not on this machine; using model.base instead")
        return base_path


def load_classifier(path: Path, base_path: Path, n_classes: int, allow_pickle: bool = False,
                    field: str = "model.adapted"):
    """A sequence classifier from an HF folder, or base + PEFT adapter (merged for fast inference)."""
    from transformers import AutoModelForSequenceClassification

    info = check_model_dir(path, allow_pickle, field)
    if is_adapter(path):
        from peft import PeftModel

        base_dir = adapter_base(path, base_path, field)
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
