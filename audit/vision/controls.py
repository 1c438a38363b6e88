"""M0 for images, the no-pretraining controls: nothing here has seen any data but the training split.

SmallCNN: four conv-BN-ReLU-pool stages (16-32-64-128 channels), global average pooling and a linear
classifier, trained from random weights with the fine-tune's epochs and batch size (a comparable budget)
on the same decoded images. PixelControl: HOG (Dalal & Triggs 2005) or downsampled gray pixels, then a
standardised logistic regression. Both follow scikit-learn's fit / predict_proba / classes_.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .descriptors import LUMA
from .preprocess import Preprocess, normalise


@dataclass(frozen=True)
class CNNBudget:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 3e-3      # from scratch: higher than a fine-tune's
    weight_decay: float = 1e-4
    width: int = 16                  # channels of the first stage (doubling per stage)
    input_size: int | None = None    # resize (area) to this side first; None keeps the given size


def _small_cnn(n_classes: int, width: int):
    import torch.nn as nn

    layers, c_in = [], 3
    for k in range(4):
        c_out = width * 2 ** k
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]
        c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes))


class SmallCNNControl:
    """A small CNN from scratch. Inputs are standardised with the training images' own per-channel mean
    and standard deviation (no ImageNet convention: this model has no pre-training); `preprocess_` holds
    that normalisation and `model_` the torch module, so attribution can run on it like on any model."""

    def __init__(self, budget: CNNBudget = CNNBudget(), seed: int = 0, progress: bool = True):
        self.budget, self.seed, self.progress = budget, seed, progress

    def _tensor(self, images: np.ndarray):
        import torch.nn.functional as F

        x = normalise(images, self.preprocess_, channels_last=True)
        size = self.budget.input_size
        if size is not None and (x.shape[2] != size or x.shape[3] != size):
            x = F.interpolate(x, size=(size, size), mode="area")
        return x

    def fit(self, images: np.ndarray, y: np.ndarray):
        import torch

        from ..progress import Progress

        torch.manual_seed(self.seed)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        index = {c: i for i, c in enumerate(self.classes_)}
        target = torch.as_tensor([index[v] for v in y], dtype=torch.long)
        flat = np.asarray(images, dtype=np.float64).reshape(-1, 3) / 255.0
        h, w = np.asarray(images).shape[1:3]
        self.preprocess_ = Preprocess(int(h), int(w), tuple(flat.mean(0)), tuple(np.maximum(flat.std(0), 1e-3)))
        b = self.budget
        self.model_ = _small_cnn(len(self.classes_), b.width).to(memory_format=torch.channels_last)
        n = len(images)
        gen = torch.Generator().manual_seed(self.seed)
        per_epoch = (n + b.batch_size - 1) // b.batch_size
        opt = torch.optim.AdamW(self.model_.parameters(), lr=b.learning_rate, weight_decay=b.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=b.learning_rate, total_steps=b.epochs * per_epoch)
        bar = Progress(f"small CNN from scratch ({b.epochs} epoch(s), {n} images)", b.epochs * per_epoch,
                       "steps") if self.progress else None
        self.model_.train()
        for _ in range(b.epochs):
            order = torch.randperm(n, generator=gen)
            for batch in order.split(b.batch_size):
                if len(batch) < 2:           # batch norm needs two rows
                    continue
                x = self._tensor(np.asarray(images)[batch.numpy()])
                loss = torch.nn.functional.cross_entropy(self.model_(x), target[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if bar:
                    bar.update(1, f"loss {loss.item():.3f}")
        if bar:
            bar.close()
        self.model_.eval()
        return self

    def predict_proba(self, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                out.append(torch.softmax(self.model_(self._tensor(images[s:s + batch_size])), 1).numpy())
        return np.concatenate(out).astype(np.float64)


def gray_stack(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N x H x W x 3 -> float N x size x size gray in [0, 1] (area resampling by Pillow)."""
    from PIL import Image

    out = np.empty((len(images), size, size))
    for i, img in enumerate(images):
        g = np.asarray(img, dtype=np.float64) @ LUMA
        out[i] = np.asarray(Image.fromarray(g.astype(np.float32), mode="F").resize((size, size),
                                                                                   Image.Resampling.BOX)) / 255.0
    return out


def hog_features(gray: np.ndarray, cell: int = 8, bins: int = 9, block: int = 2) -> np.ndarray:
    """Histogram of oriented gradients for N x S x S gray images: unsigned orientations in `bins` bins,
    magnitude-weighted and split linearly between the two nearest bins, per `cell` x `cell` cell; blocks of
    `block` x `block` cells, L2-Hys normalised (clip 0.2). Returns N x features."""
    n, h, w = gray.shape
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, :, 1:-1] = gray[:, :, 2:] - gray[:, :, :-2]
    gy[:, 1:-1, :] = gray[:, 2:, :] - gray[:, :-2, :]
    mag = np.hypot(gx, gy)
    ang = np.rad2deg(np.arctan2(gy, gx)) % 180.0
    pos = ang / (180.0 / bins) - 0.5
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    ch, cw = h // cell, w // cell
    per_image = ch * cw * bins
    rows = (np.arange(ch * cell) // cell)[:, None]
    cols = (np.arange(cw * cell) // cell)[None, :]
    base = ((rows * cw + cols) * bins)[None] + (np.arange(n) * per_image)[:, None, None]
    flat = np.zeros(n * per_image)
    for shift, weight in ((0, 1.0 - frac), (1, frac)):
        b = ((lo + shift) % bins)[:, : ch * cell, : cw * cell]
        vals = (mag * weight)[:, : ch * cell, : cw * cell]
        flat += np.bincount((base + b).ravel(), vals.ravel(), minlength=n * per_image)
    hist = flat.reshape(n, ch, cw, bins)
    blocks = []
    for r in range(ch - block + 1):
        for c in range(cw - block + 1):
            v = hist[:, r:r + block, c:c + block].reshape(n, -1)
            v = v / np.sqrt((v ** 2).sum(1, keepdims=True) + 1e-6)
            v = np.minimum(v, 0.2)
            blocks.append(v / np.sqrt((v ** 2).sum(1, keepdims=True) + 1e-6))
    return np.concatenate(blocks, axis=1)


class PixelControl:
    """features: 'hog' (HOG on a `size` x `size` gray image) or 'pixels' (the gray image itself, downsampled
    to `size` x `size`), then StandardScaler + logistic regression."""

    def __init__(self, features: str = "hog", size: int = 64, C: float = 0.1, seed: int = 0):
        if features not in ("hog", "pixels"):
            raise ValueError(f"features must be 'hog' or 'pixels', got {features!r}")
        self.features, self.size, self.C, self.seed = features, size, C, seed

    def transform(self, images: np.ndarray) -> np.ndarray:
        g = gray_stack(images, self.size)
        return hog_features(g) if self.features == "hog" else g.reshape(len(g), -1)

    def fit(self, images: np.ndarray, y: np.ndarray):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000,
                                                                         random_state=self.seed))
        self.model_.fit(self.transform(images), np.asarray(y))
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(self.transform(images))


def control_features(images: np.ndarray, dim: int, seed: int, size: int = 64) -> np.ndarray:
    """HOG features squeezed to `dim` columns by a seeded Gaussian random projection: features with no
    pre-training, as wide as the base's embeddings (the LogME control)."""
    from sklearn.random_projection import GaussianRandomProjection

    feats = hog_features(gray_stack(images, size))
    return GaussianRandomProjection(n_components=dim, random_state=seed).fit_transform(feats)
