"""Saliency overlays for the report: small PNG thumbnails (a few KB) as base64, so the report stays one
offline file. The image is shown in gray; the attribution magnitude, scaled by its 99th percentile, is
blended in red on top. 64 colours (median cut) keep the PNG small."""
from __future__ import annotations

import base64
import io

import numpy as np

from .descriptors import LUMA

HEAT = np.array([255.0, 32.0, 0.0])


def overlay_png(image: np.ndarray, scores: np.ndarray, size: int = 96, colors: int = 64) -> bytes:
    """image: uint8 H x W x 3 (the model's input, before normalisation); scores: H x W attributions."""
    from PIL import Image

    g = (np.asarray(image, dtype=np.float64) @ LUMA)[..., None] * 0.8
    a = np.abs(np.asarray(scores, dtype=np.float64))
    top = np.percentile(a, 99)
    alpha = np.clip(a / top, 0.0, 1.0)[..., None] if top > 0 else np.zeros_like(a)[..., None]
    rgb = np.clip((1 - alpha) * g + alpha * HEAT, 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, mode="RGB")
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    img = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_base64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def data_uri(png: bytes) -> str:
    """For an <img src=...> in the report (the template's autoescape leaves base64 unchanged)."""
    return "data:image/png;base64," + png_base64(png)
