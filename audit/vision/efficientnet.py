"""EfficientNet (Lite0-4, B0-B7) built by efficientnet-lite-pytorch's `EfficientNet.from_name` (never its
from_pretrained, which unpickles), with dynamic 'same' padding so one model serves any input size. A folder
holds model.safetensors + config.json {"architecture": "efficientnet-lite0", "num_classes": ...} +
preprocessor_config.json."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

from ..errors import MSG_BAD_VALUE, InputError, did_you_mean
from .classifier import CONFIG_FILE, WEIGHTS_FILE, ImageClassifier, Outputs, pool_state
from .preprocess import PREPROCESSOR_FILE, Preprocess

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
    def parse(cls, name: str, where: str, field: str = "architecture") -> Architecture:
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


def build_efficientnet(arch: Architecture, num_classes: int):
    """The bare architecture with random weights (dynamic padding: any input size)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(arch.value, num_classes=int(num_classes), image_size=None)
    _plain_same_convs(net)
    return net


def _plain_same_convs(module) -> None:
    """TensorFlow 'same' padding at stride 1 with an odd kernel is symmetric, (k - 1) / 2 per side, which a
    plain nn.Conv2d does without the library's separate pad-and-copy. Swapping those layers (same weights,
    same state-dict names) gives identical outputs and lets peft wrap them; stride-2 layers, whose padding
    is asymmetric, keep the library's class."""
    import torch

    for parent in list(module.modules()):
        for name, conv in list(parent.named_children()):
            if (isinstance(conv, torch.nn.Conv2d) and type(conv) is not torch.nn.Conv2d
                    and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
                    and all(k % 2 == 1 for k in conv.kernel_size)):
                plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                        padding=tuple((k - 1) // 2 for k in conv.kernel_size), groups=conv.groups,
                                        bias=conv.bias is not None)
                plain.load_state_dict(conv.state_dict())
                plain.train(conv.training)
                setattr(parent, name, plain)


def _fold_batch_norms(net) -> None:
    """Fold every eval-mode BatchNorm into the convolution before it (inference only; about 1.5x faster on
    CPU here, outputs equal to ~1e-5)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, torch.nn.Identity())


def _stage_ends(blocks) -> list[int]:
    """Index of the last block of each stage: a block repeats its predecessor when its arguments are the
    predecessor's with input = output filters and stride 1 (how the architecture builds repeats)."""
    ends = []
    for i in range(1, len(blocks)):
        prev, cur = blocks[i - 1]._block_args, blocks[i]._block_args
        if cur != prev._replace(input_filters=prev.output_filters, stride=1):
            ends.append(i - 1)
    return ends + [len(blocks) - 1]


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
                pooled.append(pool_state(h))
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

    def for_inference(self) -> EfficientNetClassifier:
        """A copy with batch norms folded into the convolutions (eval mode; never trained or saved)."""
        import copy

        net = copy.deepcopy(self.module).eval()
        _fold_batch_norms(net)
        return EfficientNetClassifier(net, Architecture(self.architecture), self.preprocess, self.classes)

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
