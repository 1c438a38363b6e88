"""`transfer-audit convert`: a pickled checkpoint -> a safetensors model folder this package loads.

Only torch.load(weights_only=True) reads the source: a pickle that needs anything beyond tensors and plain
containers is refused (exit 3) and none of its code runs. Keys can be renamed by a mapping file; the weights
must then fit the architecture exactly (strict load); one forward pass must give finite logits; the folder
is written beside its destination and renamed into place only after it reloads to the same logits.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, UnsafeArtifactError
from ..fileio import sha256_file
from .folders import publish
from .models import Architecture, EfficientNetClassifier, build_efficientnet, default_preprocess, load_strict

MAX_CHECKPOINT_BYTES = 4 << 30
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
HEAD_WEIGHT = "_fc.weight"


@dataclass(frozen=True)
class Conversion:
    out: Path
    architecture: str
    tensors: int
    parameters: int
    renamed: int
    dropped: int
    num_classes: int
    source_sha256: str
    weights_sha256: str


def read_checkpoint(src: Path) -> dict:
    """A flat {name: tensor} from a torch checkpoint, read with weights_only=True (or a safetensors file)."""
    import torch

    from ..models.loading import require_safe_torch
    from ..models.safety import check_safetensors, looks_like_pickle

    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        raise UnsafeArtifactError("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set in the environment, which makes "
                                  "torch.load run pickled code; unset it to convert a checkpoint.")
    if not src.is_file():
        raise InputError(f"convert: SRC {str(src)!r} is not a file.")
    size = src.stat().st_size
    if size == 0 or size > MAX_CHECKPOINT_BYTES:
        raise InputError(f"convert: SRC {str(src)!r} has {size} bytes; a checkpoint must have 1 to "
                         f"{MAX_CHECKPOINT_BYTES} bytes.")
    if src.suffix == ".safetensors":
        from safetensors.torch import load_file

        check_safetensors(src)
        return load_file(str(src))
    if not looks_like_pickle(src):
        raise InputError(f"convert: {str(src)!r} is not a torch checkpoint (neither a torch zip archive nor a "
                         "pickle stream) nor a .safetensors file.")
    require_safe_torch()
    try:
        obj = torch.load(str(src), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeArtifactError(f"convert: {str(src)!r} was refused by torch.load(weights_only=True) "
                                  f"({_unpickler_reason(str(e))}). It needs more than tensors and plain "
                                  "containers to load (possibly code), so none of it was run.") from None
    except Exception as e:       # not a torch file at all: bad zip, bad magic number, truncated stream
        raise InputError(f"convert: {str(src)!r} is not a readable torch checkpoint "
                         f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})."
                         ) from None
    return _state_dict_of(obj, src)


def _unpickler_reason(message: str) -> str:
    """The specific refusal in torch's long message (e.g. 'Unsupported global: GLOBAL io.open ...')."""
    m = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\. Please|\n|$)", message)
    text = m.group(1) if m and m.group(1).strip() else message.strip().splitlines()[0]
    return re.sub(r"\x1b\[[0-9;]*m", "", text)[:200]


def _is_tensor_dict(obj) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _state_dict_of(obj, src: Path) -> dict:
    if _is_tensor_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:         # training checkpoints wrap the weights with optimiser state etc.
            if _is_tensor_dict(obj.get(key)):
                return dict(obj[key])
    raise InputError(f"convert: {str(src)!r} holds no state_dict (a mapping of names to tensors), neither at "
                     f"the top level nor under {', '.join(WRAPPER_KEYS)}.")


def read_key_map(path: Path) -> list[tuple[re.Pattern, str | None]]:
    """A YAML/JSON mapping {regex: replacement}; rules apply in order with re.sub; null drops the key."""
    from ..yamlio import load_yaml_file

    data = load_yaml_file(path, "key map")
    rules = []
    for pattern, repl in data.items():
        if not isinstance(pattern, str) or not (repl is None or isinstance(repl, str)):
            raise InputError(f"{path}: key map entry {pattern!r}: {repl!r} must map a regular expression to a "
                             "replacement string (or null to drop the matching keys).")
        try:
            rules.append((re.compile(pattern), repl))
        except re.error as e:
            raise InputError(f"{path}: key map pattern {pattern!r} is not a valid regular expression ({e}).") \
                from None
    return rules


def rename_keys(state: dict, rules, where: str) -> tuple[dict, int, int]:
    """Apply the rules to every key; returns (new state, renamed count, dropped count)."""
    out, renamed, dropped, origin = {}, 0, 0, {}
    for key, tensor in state.items():
        new = key
        for pattern, repl in rules:
            if repl is None and pattern.search(new):
                new = None
                break
            new = pattern.sub(repl, new) if repl is not None else new
        if new is None:
            dropped += 1
            continue
        if new in origin:
            raise InputError(f"{where}: keys {origin[new]!r} and {key!r} are both renamed to {new!r}.")
        origin[new] = key
        renamed += new != key
        out[new] = tensor
    return out, renamed, dropped


def forward_check(model, size: int):
    """Logits for one fixed input (a smooth gradient image); finite and of the head's width, or an error."""
    import torch

    ramp = torch.linspace(-1.0, 1.0, size)
    x = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                     (ramp[None, :] * ramp[:, None])])[None]
    with torch.inference_mode():
        logits = model.forward_all(x).logits
    if logits.shape != (1, model.num_classes) or not torch.isfinite(logits).all():
        raise InputError(f"convert: the converted model's forward pass gave logits of shape "
                         f"{tuple(logits.shape)} with non-finite values; the weights are not usable.")
    return x, logits


def convert(src: str | Path, arch: str, out: str | Path, key_map: str | Path | None = None,
            image_size: int | None = None) -> Conversion:
    import torch

    from .models import load_image_model

    src, out = Path(src), Path(out)
    architecture = Architecture.parse(arch, "convert", "--arch")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"convert: --out {str(out)!r} already exists and is not an empty folder; choose a new "
                         "folder (nothing is overwritten).")
    state = read_checkpoint(src)
    renamed = dropped = 0
    if key_map is not None:
        state, renamed, dropped = rename_keys(state, read_key_map(Path(key_map)), f"convert: {key_map}")
    state = {k: v.detach().to(torch.float32) if v.is_floating_point() else v.detach() for k, v in state.items()}
    head = state.get(HEAD_WEIGHT)
    num_classes = int(head.shape[0]) if head is not None and head.ndim == 2 else 1000
    net = build_efficientnet(architecture, num_classes)
    load_strict(net, state, f"convert: {src} as {architecture.value}")
    pre = default_preprocess(architecture)
    if image_size is not None:
        pre = pre.resized(int(image_size))
    model = EfficientNetClassifier(net.eval(), architecture, pre)
    x, logits = forward_check(model, pre.height)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save(tmp)
        again = load_image_model(tmp, "convert --out")
        with torch.inference_mode():
            if not torch.equal(again.forward_all(x).logits, logits):
                raise InputError(f"convert: the written model in {tmp} does not reproduce the checked logits.")
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Conversion(out, architecture.value, len(state), sum(int(v.numel()) for v in state.values()),
                      renamed, dropped, num_classes, sha256_file(src), sha256_file(out / "model.safetensors"))
