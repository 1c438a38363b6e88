"""Resize and normalise images from a preprocessing config (Pillow + numpy; no torchvision).

The config is read from and written as Hugging Face's `preprocessor_config.json` (image_mean, image_std,
size, resample, rescale_factor, crop_pct), so one reader serves HF model folders and converted ones.
Images are kept as uint8 HxWx3 after resizing (4x smaller than float, decoded once per split) and turned
into normalised float tensors batch by batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from ..errors import MSG_BAD_VALUE, InputError
from .decode import DEFAULT_LIMITS, ImageLimits, open_image

PREPROCESSOR_FILE = "preprocessor_config.json"


class Resample(str, Enum):
    """Pillow's filters; the numbers are Pillow's (and so Hugging Face's) integer codes."""

    NEAREST = "nearest"
    LANCZOS = "lanczos"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"

    @property
    def code(self) -> int:
        return list(Resample).index(self)

    @classmethod
    def from_code(cls, code: int) -> Resample:
        return list(cls)[code]


@dataclass(frozen=True)
class Preprocess:
    """How pixels become model input. crop_pct None: resize straight to height x width (squash). crop_pct c:
    resize the shorter side to size / c keeping the aspect, then centre-crop height x width (HF ConvNeXt)."""

    height: int = 224
    width: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: Resample = Resample.BILINEAR
    rescale_factor: float = 1 / 255
    crop_pct: float | None = None

    def __post_init__(self):
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std > 0")

    def resized(self, size: int) -> Preprocess:
        """The same normalisation at another square input size (EfficientNet-Lite is size-agnostic)."""
        return Preprocess(size, size, self.mean, self.std, self.resample, self.rescale_factor, self.crop_pct)

    def to_hf(self) -> dict:
        out = {"do_resize": True, "size": {"height": self.height, "width": self.width},
               "resample": self.resample.code, "do_rescale": True, "rescale_factor": self.rescale_factor,
               "do_normalize": True, "image_mean": list(self.mean), "image_std": list(self.std)}
        if self.crop_pct is not None:
            out["crop_pct"] = self.crop_pct
        return out

    @classmethod
    def from_hf(cls, cfg: dict, where: str = PREPROCESSOR_FILE) -> Preprocess:
        size = cfg.get("size", cfg.get("crop_size", 224))
        crop_pct = cfg.get("crop_pct")
        if isinstance(size, int):
            height = width = size
        elif isinstance(size, dict) and "height" in size and "width" in size:
            height, width = int(size["height"]), int(size["width"])
        elif isinstance(size, dict) and "shortest_edge" in size:
            height = width = int(size["shortest_edge"])
            crop = cfg.get("crop_size") if cfg.get("do_center_crop") else None
            if isinstance(crop, dict) and "height" in crop and "width" in crop:
                # resize the shorter side to shortest_edge, then centre-crop crop_size (DeiT, BiT, MobileNet)
                height, width = int(crop["height"]), int(crop["width"])
                crop_pct = max(height, width) / int(size["shortest_edge"])
            crop_pct = 1.0 if crop_pct is None else crop_pct
        else:
            raise InputError.make(MSG_BAD_VALUE, where=where, field="size",
                                  expected="an integer or {height, width} or {shortest_edge}", value=size)
        mean = tuple(float(v) for v in cfg.get("image_mean", (0.5, 0.5, 0.5))) if cfg.get("do_normalize", True) \
            else (0.0, 0.0, 0.0)
        std = tuple(float(v) for v in cfg.get("image_std", (0.5, 0.5, 0.5))) if cfg.get("do_normalize", True) \
            else (1.0, 1.0, 1.0)
        if len(mean) == 1:
            mean, std = mean * 3, std * 3
        resample = cfg.get("resample", 2)
        try:
            resample = Resample.from_code(int(resample)) if not isinstance(resample, str) else Resample(resample)
        except (ValueError, IndexError):
            raise InputError.make(MSG_BAD_VALUE, where=where, field="resample",
                                  expected="a Pillow filter code 0-5", value=resample) from None
        rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
        try:
            return cls(height, width, mean, std, resample, rescale,
                       None if crop_pct is None else float(crop_pct))
        except ValueError as e:
            raise InputError(f"{where}: {e}.") from None


def resize(img, cfg: Preprocess) -> np.ndarray:
    """A decoded 'L' or 'RGB' image -> uint8 array height x width x 3 (gray replicated to three channels
    after resizing, which costs a third of resizing RGB)."""
    filt = _pil_filter(cfg.resample)
    if cfg.crop_pct is None:
        img = img.resize((cfg.width, cfg.height), filt)
    else:
        w, h = img.size
        short = max(cfg.height, cfg.width) / cfg.crop_pct
        scale = short / min(w, h)
        img = img.resize((max(cfg.width, round(w * scale)), max(cfg.height, round(h * scale))), filt)
        w, h = img.size
        left, top = (w - cfg.width) // 2, (h - cfg.height) // 2
        img = img.crop((left, top, left + cfg.width, top + cfg.height))
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr


def _pil_filter(resample: Resample):
    from PIL import Image

    return Image.Resampling(resample.code)


def load_images(paths, cfg: Preprocess, where: str = "image", limits: ImageLimits = DEFAULT_LIMITS,
                describe=None):
    """Decode and resize every image once: (uint8 N x H x W x 3, [describe(image) per image] or None).
    `describe` sees the decoded image before resizing (descriptors for drift come from the same decode)."""
    paths = list(paths)
    out = np.empty((len(paths), cfg.height, cfg.width, 3), dtype=np.uint8)
    described = [] if describe is not None else None
    for i, p in enumerate(paths):
        img = open_image(p, f"{where} row {i}", limits)
        if described is not None:
            described.append(describe(img))
        out[i] = resize(img, cfg)
    return out, described


def normalise(batch, cfg: Preprocess, channels_last: bool = False):
    """uint8 N x H x W x 3 (numpy or torch) -> float32 N x 3 x H x W tensor, (x * rescale - mean) / std.
    channels_last keeps the NHWC strides the array already has (torch.channels_last memory format), which
    skips one copy and suits convolutions on CPU."""
    import torch

    x = torch.as_tensor(np.asarray(batch) if not isinstance(batch, torch.Tensor) else batch)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    scale = torch.tensor([cfg.rescale_factor / s for s in cfg.std], dtype=torch.float32)
    shift = torch.tensor([m / s for m, s in zip(cfg.mean, cfg.std)], dtype=torch.float32)
    x = x.to(torch.float32) * scale - shift          # broadcasts over the last (channel) axis
    x = x.permute(0, 3, 1, 2)
    return x if channels_last else x.contiguous()


def denormalise(x, cfg: Preprocess) -> np.ndarray:
    """Inverse of normalise for display: float N x 3 x H x W -> uint8 N x H x W x 3."""
    arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).transpose(0, 2, 3, 1)
    arr = (arr * np.asarray(cfg.std) + np.asarray(cfg.mean)) / cfg.rescale_factor
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def read_preprocess(folder: Path) -> Preprocess | None:
    import json

    path = Path(folder) / PREPROCESSOR_FILE
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: must be a JSON object.")
    return Preprocess.from_hf(cfg, str(path))
