"""Per-image descriptors for drift: what an inspector would notice first when the camera or line changes.

brightness  mean gray level in [0, 1]
contrast    standard deviation of the gray level (RMS contrast)
sharpness   variance of the 4-neighbour Laplacian of the gray level (Pech-Pacheco et al. 2000); blur
            lowers it. Computed at the image's own resolution, so compare sets of similar sizes.
width, height, aspect (width / height)
Each is a plain function of a decoded image; `describe` gives one row, `descriptor_frame` the table.
"""
from __future__ import annotations

import numpy as np

DESCRIPTORS = ("brightness", "contrast", "sharpness", "width", "height", "aspect")

# ITU-R BT.601 luma weights, the ones Pillow's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114])


def gray(img) -> np.ndarray:
    """A decoded PIL image (or H x W / H x W x 3 uint8 array) as float gray in [0, 1]."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[..., :3] @ LUMA
    return arr / 255.0


def laplacian_variance(g: np.ndarray) -> float:
    """Variance of the discrete Laplacian over interior pixels (0 for images smaller than 3x3)."""
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1])
    return float(lap.var())


def describe(img) -> dict:
    g = gray(img)
    h, w = g.shape
    return {"brightness": float(g.mean()), "contrast": float(g.std()), "sharpness": laplacian_variance(g),
            "width": int(w), "height": int(h), "aspect": float(w / h)}


def descriptor_frame(rows):
    """The descriptor rows as a DataFrame with the columns in DESCRIPTORS order."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(DESCRIPTORS))
