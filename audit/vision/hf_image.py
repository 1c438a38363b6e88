"""Hugging Face `AutoModelForImageClassification` models (ViT, ConvNeXt, EfficientNet, ResNet...) behind
the ImageClassifier interface."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .classifier import ImageClassifier, Outputs, pool_state
from .preprocess import PREPROCESSOR_FILE, Preprocess


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
        pooled = [pool_state(h) for h in out.hidden_states[1:]] if stages else []
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
