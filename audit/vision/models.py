"""Image classifiers behind one small interface, loaded from safetensors + a config that names the
architecture. Two families:

- EfficientNet (Lite0-4 and B0-B7) built by efficientnet-lite-pytorch's `EfficientNet.from_name` (never its
  from_pretrained, which unpickles), with dynamic 'same' padding so one model serves any input size. Its
  folder: model.safetensors + config.json {"architecture": "efficientnet-lite0", "num_classes": ...} +
  preprocessor_config.json.
- Hugging Face `AutoModelForImageClassification` folders (ViT, ConvNeXt, EfficientNet, ResNet...),
  offline, safetensors only, no remote code.

Every model gives, from one forward pass: logits, pooled features (what the classifier head reads) and,
on request, one pooled state per stage (for CKA).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from ..errors import MSG_BAD_VALUE, InputError, did_you_mean
from ..models.safety import check_model_dir
from .preprocess import PREPROCESSOR_FILE, Preprocess, read_preprocess

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


class Architecture(str, Enum):
    """Architectures this package builds itself (efficientnet-lite-pytorch); HF folders name their own."""

    LITE0 = "efficientnet-lite0"
    LITE1 = "efficientnet-lite1"
    LITE2 = "efficientnet-lite2"
    LITE3 = "efficientnet-lite3"
    LITE4 = "efficientnet-lite4"
    B0 = "efficientnet-b0"
    B1 = "efficientnet-b1"
    B2 = "efficientnet-b2"
    B3 = "efficientnet-b3"
    B4 = "efficientnet-b4"
    B5 = "efficientnet-b5"
    B6 = "efficientnet-b6"
    B7 = "efficientnet-b7"

    @classmethod
    def parse(cls, name: str, where: str, field: str = "architecture") -> "Architecture":
        try:
            return cls(name)
        except ValueError:
            names = [a.value for a in cls]
            raise InputError.make(MSG_BAD_VALUE, where=where, field=field,
                                  expected=f"one of {', '.join(names)}{did_you_mean(name, names)}",
                                  value=name) from None

    @property
    def native_size(self) -> int:
        from efficientnet_lite_pytorch.utils import efficientnet_params

        return int(efficientnet_params(self.value)[2])


def default_preprocess(arch: Architecture) -> Preprocess:
    """Lite: inputs scaled to [0, 1] then (x - 0.5) / 0.5 (the TF-Lite checkpoints' convention, checked on
    ImageNet photos); B-series: ImageNet mean/std."""
    size = arch.native_size
    if arch.value.startswith("efficientnet-lite"):
        return Preprocess(size, size)
    return Preprocess(size, size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class Outputs:
    logits: object          # torch tensor B x classes
    features: object        # B x D pooled features (the head's input)
    stages: list            # [B x C_i] pooled per stage, empty unless asked


def build_efficientnet(arch: Architecture, num_classes: int):
    """The bare architecture with random weights (dynamic padding: any input size)."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(arch.value, num_classes=int(num_classes), image_size=None)


def _stage_ends(blocks) -> list[int]:
    """Index of the last block of each stage: a block repeats its predecessor when its arguments are the
    predecessor's with input = output filters and stride 1 (how the architecture builds repeats)."""
    ends = []
    for i in range(1, len(blocks)):
        prev, cur = blocks[i - 1]._block_args, blocks[i]._block_args
        if cur != prev._replace(input_filters=prev.output_filters, stride=1):
            ends.append(i - 1)
    return ends + [len(blocks) - 1]


def _pool(h):
    """Global average pool of a stage state: B x C x H x W -> B x C; B x T x D (tokens) -> B x D."""
    return h.mean(dim=(2, 3)) if h.ndim == 4 else h.mean(dim=1) if h.ndim == 3 else h


class ImageClassifier:
    """One interface over both families. Subclasses implement forward_all, head and set_head."""

    architecture: str
    preprocess: Preprocess
    classes: tuple[str, ...] | None

    def __init__(self, module, preprocess: Preprocess, classes=None):
        self.module, self.preprocess = module, preprocess
        self.classes = None if classes is None else tuple(str(c) for c in classes)

    def forward_all(self, x, stages: bool = False) -> Outputs:
        raise NotImplementedError

    def __call__(self, x):
        return self.forward_all(x).logits

    def logits(self, x):
        return self.forward_all(x).logits

    def features(self, x):
        return self.forward_all(x).features

    @property
    def num_classes(self) -> int:
        return int(self.head().out_features)

    def head(self):
        raise NotImplementedError

    def set_head(self, num_classes: int, classes, seed: int) -> None:
        raise NotImplementedError

    def blocks(self) -> list:
        raise NotImplementedError

    head_dropout = 0.0

    def eval(self):
        self.module.eval()
        return self

    def parameters(self):
        return self.module.parameters()

    def channels_last(self):
        import torch

        self.module.to(memory_format=torch.channels_last)
        return self

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    def as_module(self):
        """A torch.nn.Module whose forward(x) returns logits (for captum and peft)."""
        import torch

        owner = self

        class _Logits(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = owner.module

            def forward(self, x):
                return owner.forward_all(x).logits

        return _Logits()


class EfficientNetClassifier(ImageClassifier):
    def __init__(self, module, arch: Architecture, preprocess: Preprocess, classes=None):
        super().__init__(module, preprocess, classes)
        self.architecture = arch.value
        self._ends = _stage_ends(module._blocks)

    def run_until(self, x, stop: int):
        """Stem and blocks[:stop]: the frozen prefix, cached once when only later blocks are trained."""
        net = self.module
        h = net._swish(net._bn0(net._conv_stem(x)))
        for idx in range(stop):
            h = self._block(idx, h)
        return h

    def run_from(self, h, start: int, stages: bool = False) -> Outputs:
        """blocks[start:], the head convolution, pooling and the classifier."""
        net = self.module
        pooled, ends = [], set(self._ends) if stages else ()
        for idx in range(start, len(net._blocks)):
            h = self._block(idx, h)
            if idx in ends:
                pooled.append(_pool(h))
        h = net._swish(net._bn1(net._conv_head(h)))
        feats = h.mean(dim=(2, 3))
        if stages:
            pooled.append(feats)
        return Outputs(net._fc(net._dropout(feats)), feats, pooled)

    def _block(self, idx: int, h):
        net = self.module
        rate = net._global_params.drop_connect_rate     # stochastic depth grows with depth, as upstream
        return net._blocks[idx](h, drop_connect_rate=rate * float(idx) / len(net._blocks) if rate else rate)

    def forward_all(self, x, stages: bool = False) -> Outputs:
        return self.run_from(self.run_until(x, 0), 0, stages)

    @property
    def head_dropout(self) -> float:
        return float(self.module._dropout.p)

    def head(self):
        return self.module._fc

    def set_head(self, num_classes: int, classes, seed: int) -> None:
        import torch

        torch.manual_seed(seed)
        self.module._fc = torch.nn.Linear(self.module._fc.in_features, int(num_classes))
        self.classes = None if classes is None else tuple(str(c) for c in classes)

    def blocks(self) -> list:
        return list(self.module._blocks)

    def config(self) -> dict:
        cfg = {"transfer_audit_format": FORMAT_VERSION, "architecture": self.architecture,
               "library": "efficientnet-lite-pytorch", "num_classes": self.num_classes}
        if self.classes is not None:
            cfg["id2label"] = {str(i): c for i, c in enumerate(self.classes)}
        return cfg

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        (folder / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n")
        (folder / PREPROCESSOR_FILE).write_text(json.dumps(self.preprocess.to_hf(), indent=2) + "\n")


class HFImageClassifier(ImageClassifier):
    """transformers' AutoModelForImageClassification. Features are captured at the head's input by a hook,
    so they are exactly what the classifier reads (ViT: the normalised [CLS] token; ConvNeXt: the pooled,
    normalised map)."""

    def __init__(self, module, preprocess: Preprocess):
        labels = getattr(module.config, "id2label", None)
        classes = [labels[i] for i in sorted(labels)] if labels else None
        super().__init__(module, preprocess, classes)
        self.architecture = f"hf:{module.config.model_type}"

    def _head_path(self) -> tuple[object, str]:
        import torch

        parent = self.module
        head = getattr(parent, "classifier", None)
        if isinstance(head, torch.nn.Sequential):
            linears = [n for n, m in head.named_children() if isinstance(m, torch.nn.Linear)]
            if linears:
                return head, linears[-1]
        if isinstance(head, torch.nn.Linear):
            return parent, "classifier"
        raise InputError(f"the {self.architecture} model has no linear 'classifier' head this audit can read.")

    def head(self):
        parent, name = self._head_path()
        return getattr(parent, name)

    def forward_all(self, x, stages: bool = False) -> Outputs:
        captured = {}
        hook = self.head().register_forward_pre_hook(lambda m, args: captured.__setitem__("x", args[0]))
        try:
            out = self.module(pixel_values=x, output_hidden_states=stages)
        finally:
            hook.remove()
        feats = captured["x"].flatten(1)
        pooled = [_pool(h) for h in out.hidden_states[1:]] if stages else []
        return Outputs(out.logits, feats, pooled)

    def set_head(self, num_classes: int, classes, seed: int) -> None:
        import torch

        parent, name = self._head_path()
        torch.manual_seed(seed)
        setattr(parent, name, torch.nn.Linear(getattr(parent, name).in_features, int(num_classes)))
        cfg = self.module.config
        names = [str(c) for c in classes] if classes is not None else [f"LABEL_{i}" for i in range(num_classes)]
        cfg.num_labels = int(num_classes)
        cfg.id2label = dict(enumerate(names))
        cfg.label2id = {c: i for i, c in enumerate(names)}
        self.classes = tuple(names)

    def blocks(self) -> list:
        """The longest ModuleList in the model: ViT's encoder layers, ConvNeXt's stages, EfficientNet's blocks."""
        import torch

        lists = [m for m in self.module.modules() if isinstance(m, torch.nn.ModuleList)]
        if not lists:
            raise InputError(f"the {self.architecture} model has no list of blocks to fine-tune.")
        return list(max(lists, key=len))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        self.module.save_pretrained(str(folder), safe_serialization=True)
        (folder / PREPROCESSOR_FILE).write_text(json.dumps(self.preprocess.to_hf(), indent=2) + "\n")


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


def to_numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy()
