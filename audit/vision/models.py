"""Loading image classifiers from a folder of safetensors + a config that names the architecture:
config.json with "architecture" (built here, see efficientnet.py) or a Hugging Face "model_type"
(AutoModelForImageClassification, see hf_image.py). Offline, safetensors only, no remote code."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import MSG_BAD_VALUE, InputError
from ..models.safety import check_model_dir
from .classifier import CONFIG_FILE, WEIGHTS_FILE, ImageClassifier, Outputs
from .efficientnet import Architecture, EfficientNetClassifier, build_efficientnet, default_preprocess
from .hf_image import HFImageClassifier
from .preprocess import PREPROCESSOR_FILE, read_preprocess

__all__ = ["Architecture", "EfficientNetClassifier", "HFImageClassifier", "ImageClassifier", "Outputs",
           "build_efficientnet", "default_preprocess", "load_image_model", "load_strict", "read_config",
           "CONFIG_FILE", "WEIGHTS_FILE"]


def read_config(folder: Path, field: str) -> dict:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{field}: {str(folder)!r} has no {CONFIG_FILE} naming the architecture.")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{field}: {path} is not valid JSON ({e}).") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{field}: {path} must be a JSON object.")
    return cfg


def load_image_model(folder: str | Path, field: str = "model.base") -> ImageClassifier:
    """An image classifier from a folder of safetensors + config (either family), in eval mode."""
    folder = Path(folder)
    check_model_dir(folder, allow_pickle=False, field=field)
    cfg = read_config(folder, field)
    if "model_type" in cfg:
        return _load_hf(folder, field)
    if "architecture" not in cfg:
        raise InputError(f"{field}: {folder / CONFIG_FILE} names no architecture: it needs 'architecture' "
                         f"(one of {', '.join(a.value for a in Architecture)}) or a Hugging Face 'model_type'.")
    arch = Architecture.parse(str(cfg["architecture"]), str(folder / CONFIG_FILE))
    return _load_efficientnet(folder, arch, cfg, field)


def _load_efficientnet(folder: Path, arch: Architecture, cfg: dict, field: str) -> EfficientNetClassifier:
    from safetensors.torch import load_file

    num_classes = cfg.get("num_classes")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InputError.make(MSG_BAD_VALUE, where=str(folder / CONFIG_FILE), field="num_classes",
                              expected="a positive integer", value=num_classes)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(f"{field}: {str(folder)!r} has no {WEIGHTS_FILE}.")
    net = build_efficientnet(arch, num_classes)
    state = load_file(str(weights))
    load_strict(net, state, f"{field}: {weights}")
    labels = cfg.get("id2label")
    classes = [labels[str(i)] for i in range(num_classes)] if isinstance(labels, dict) else None
    model = EfficientNetClassifier(net, arch, read_preprocess(folder) or default_preprocess(arch), classes)
    return model.eval()


def load_strict(net, state: dict, where: str) -> None:
    """load_state_dict(strict=True), with missing/unexpected keys and shape mismatches in one sentence."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in sorted(set(own) & set(state)) if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} with the wrong shape (first: {k} is {tuple(state[k].shape)}, the "
                         f"architecture needs {tuple(own[k].shape)})")
        raise InputError(f"{where}: the weights do not match the architecture: " + "; ".join(parts) + ".")
    net.load_state_dict(state, strict=True)


def _load_hf(folder: Path, field: str) -> HFImageClassifier:
    from transformers import AutoModelForImageClassification

    from ..models.loading import _guarded

    module = _guarded(lambda: AutoModelForImageClassification.from_pretrained(
        str(folder), local_files_only=True, trust_remote_code=False, use_safetensors=True), field, folder)
    pre = read_preprocess(folder)
    if pre is None:
        raise InputError(f"{field}: {str(folder)!r} has no {PREPROCESSOR_FILE}; the image size and "
                         "normalisation the model expects must come from the model folder.")
    return HFImageClassifier(module, pre).eval()
