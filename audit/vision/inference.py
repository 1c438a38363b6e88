"""The forward pass over a split: logits, pooled features and (optionally) pooled stage states, in one pass,
batch by batch from the decoded uint8 images."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .preprocess import Preprocess, normalise


@dataclass(frozen=True)
class ImageOutputs:
    logits: np.ndarray              # N x classes, float32
    features: np.ndarray            # N x D pooled features (the head's input)
    stages: tuple[np.ndarray, ...]  # per stage N x C_i, empty unless asked

    @property
    def probabilities(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def run_model(model, images: np.ndarray, preprocess: Preprocess | None = None, batch_size: int = 64,
              stages: bool = False, channels_last: bool = True, what: str | None = None,
              fused: bool = True) -> ImageOutputs:
    """model: an ImageClassifier; images: uint8 N x H x W x 3 at the model's input size. fused: run the
    model's inference form (EfficientNet: batch norms folded into convolutions)."""
    import torch

    from ..progress import Progress

    pre = preprocess or model.preprocess
    if fused:
        model = model.for_inference()
    if channels_last:
        model.channels_last()
    model.eval()
    logits, feats, pooled = [], [], []
    bar = Progress(what, len(images), "images") if what else None
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = normalise(images[start:start + batch_size], pre, channels_last=channels_last)
            out = model.forward_all(x, stages=stages)
            logits.append(out.logits.float().numpy())
            feats.append(out.features.float().numpy())
            if stages:
                pooled.append([s.float().numpy() for s in out.stages])
            if bar:
                bar.update(len(x))
    if bar:
        bar.close()
    stage_arrays = tuple(np.concatenate(parts) for parts in zip(*pooled)) if stages else ()
    return ImageOutputs(np.concatenate(logits), np.concatenate(feats), stage_arrays)
