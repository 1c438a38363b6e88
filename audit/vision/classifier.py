"""The interface every image model offers to the audit: from one forward pass, logits, pooled features
(what the classifier head reads) and, on request, one pooled state per stage (for CKA); plus the head and
the list of blocks that fine-tuning needs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .preprocess import Preprocess

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class Outputs:
    logits: object          # torch tensor B x classes
    features: object        # B x D pooled features (the head's input)
    stages: list            # [B x C_i] pooled per stage, empty unless asked


def pool_state(h):
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

    def for_inference(self) -> ImageClassifier:
        """A model for forward passes only (the same outputs, possibly restructured for speed)."""
        return self

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
