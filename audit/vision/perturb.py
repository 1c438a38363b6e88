"""Perturbations of images for counterfactual and robustness checks: changes an inspector would call
irrelevant to the label (exposure, contrast, focus, orientation, sensor noise, compression). Each maps uint8
N x H x W x 3 to the same shape, deterministically (noise is seeded), so the prediction flip rate between
the original and the perturbed batch measures sensitivity to that change alone."""
from __future__ import annotations

from enum import Enum

import numpy as np


class Perturbation(str, Enum):
    BRIGHTNESS = "brightness"        # add strength * 255 to every pixel
    CONTRAST = "contrast"            # scale deviations from the image mean by (1 + strength)
    BLUR = "blur"                    # Gaussian blur, sigma = strength pixels
    NOISE = "noise"                  # Gaussian noise, sd = strength * 255
    JPEG = "jpeg"                    # JPEG round trip at quality = strength
    FLIP_HORIZONTAL = "flip_horizontal"
    FLIP_VERTICAL = "flip_vertical"
    ROTATE_180 = "rotate_180"


def perturb(images: np.ndarray, kind: Perturbation, strength: float = 0.0, seed: int = 0) -> np.ndarray:
    x = np.asarray(images)
    if kind is Perturbation.FLIP_HORIZONTAL:
        return x[:, :, ::-1].copy()
    if kind is Perturbation.FLIP_VERTICAL:
        return x[:, ::-1].copy()
    if kind is Perturbation.ROTATE_180:
        return x[:, ::-1, ::-1].copy()
    f = x.astype(np.float64)
    if kind is Perturbation.BRIGHTNESS:
        f = f + strength * 255.0
    elif kind is Perturbation.CONTRAST:
        mean = f.mean(axis=(1, 2, 3), keepdims=True)
        f = mean + (f - mean) * (1.0 + strength)
    elif kind is Perturbation.NOISE:
        f = f + np.random.default_rng(seed).normal(0.0, strength * 255.0, f.shape)
    elif kind in (Perturbation.BLUR, Perturbation.JPEG):
        return _pillow(x, kind, strength)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def _pillow(x: np.ndarray, kind: Perturbation, strength: float) -> np.ndarray:
    import io

    from PIL import Image, ImageFilter

    out = np.empty_like(x)
    for i, arr in enumerate(x):
        img = Image.fromarray(arr)
        if kind is Perturbation.BLUR:
            img = img.filter(ImageFilter.GaussianBlur(strength))
        else:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=int(strength))
            img = Image.open(buf).convert("RGB")
        out[i] = np.asarray(img)
    return out


def flip_rate(pred_before: np.ndarray, pred_after: np.ndarray) -> float:
    """Share of images whose predicted class changed."""
    return float(np.mean(np.asarray(pred_before) != np.asarray(pred_after)))
