"""The image modality: image files decoded once per run, EfficientNet-Lite and Hugging Face image classifiers,
a small CNN and a pixel logistic regression as no-pretraining controls, per-image descriptors, label-irrelevant
perturbations as counterfactuals, and integrated gradients on pixels summarised on a grid of cells.

Like tasks/text.py, each method is thin: the work is done by transfer_audit.vision (docs/vision.md).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import say
from .base import Attribution, Models

CNN_SIDE = 96          # the small CNN reads at most 96 x 96 (docs/vision.md: no gain above it on ELPV, 1.8x slower)
PIXEL_SIDE = 32        # the pixel logistic regression reads a 32 x 32 gray image
ENV_THREADS = "OMP_NUM_THREADS"
AXES = (("exposure +10%", "brightness", 0.1), ("blur 1 px", "blur", 1.0), ("sensor noise 2%", "noise", 0.02),
        ("mirrored", "flip_horizontal", 0.0))


@dataclass(frozen=True)
class PerturbedImage:
    """A counterfactual input: an image file under one label-irrelevant change (vision/perturb.py)."""

    path: str
    kind: str
    strength: float
    label: str

    def __str__(self) -> str:          # how the counterfactual table shows it
        return f"{Path(self.path).name}, {self.label}"


class ImageModality:
    name = "image"
    unit_name = "image cell"
    control_features_name = "HOG on 64 x 64 gray images"

    def __init__(self, image, recipe):
        from ..spec_image import ImageSpec

        self.image = image or ImageSpec()
        self.recipe = recipe             # spec.model.finetune: M2's recipe, and the small CNN's budget
        self.preprocess = None           # the audit's input geometry, set by prepare_models
        self._decoded: dict = {}         # path -> (uint8 H x W x 3 at the input size, descriptor row)
        self._hashes: dict = {}

    # ---- rows -> inputs ---------------------------------------------------------------------------------------
    def read_inputs(self, frame, src, data, spec_file: str) -> list[str]:
        """Absolute image paths from the path column; relative ones resolve against the table's folder."""
        from ..data import missing_column, source_label
        from ..vision.decode import bad_image

        where, column = source_label(src), self.image.column
        if column not in frame.columns:
            raise missing_column(spec_file, "data.image.column", column, where, frame)
        base = src.path.parent if src.path is not None and src.path.is_file() else Path.cwd()
        out = []
        for i, value in enumerate(frame[column].tolist()):
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{spec_file}: {where} row {i} column {column!r} must be an image path. "
                                 f"Got {value!r} instead.")
            p = (base / value).resolve()
            if not p.is_file():
                raise bad_image(f"{spec_file}: {where} row {i} column {column!r}", value,
                                "the file does not exist" if not p.exists() else "it is not a regular file")
            out.append(str(p))
        return out

    def fingerprint(self, inputs) -> list[str]:
        """The files' SHA-256: the rows' digest (and so every cache) follows the pixels, not the paths."""
        from ..fileio import sha256_file

        for p in inputs:
            if p not in self._hashes:
                self._hashes[p] = sha256_file(p)
        return [self._hashes[p] for p in inputs]

    def images(self, inputs) -> np.ndarray:
        """uint8 N x H x W x 3 at the audit's input size; each file is decoded once per run."""
        from ..vision.descriptors import describe
        from ..vision.perturb import Perturbation, perturb
        from ..vision.preprocess import load_images

        paths = [x.path if isinstance(x, PerturbedImage) else x for x in inputs]
        new = [p for p in dict.fromkeys(paths) if p not in self._decoded]
        if new:
            t = time.perf_counter()
            pixels, rows = load_images(new, self.preprocess, "data", describe=describe)
            self._decoded.update(zip(new, zip(pixels, rows)))
            say(f"decoded {len(new)} images in {time.perf_counter() - t:.1f} s")
        out = np.stack([self._decoded[p][0] for p in paths]) if paths else np.zeros((0, 1, 1, 3), np.uint8)
        for i, x in enumerate(inputs):
            if isinstance(x, PerturbedImage):
                out[i] = perturb(out[i:i + 1], Perturbation(x.kind), x.strength, seed=i)[0]
        return out

    # ---- models -----------------------------------------------------------------------------------------------
    def prepare_models(self, spec, dataset, cache_root: Path, timings: dict) -> tuple[Models, dict]:
        """Load (or convert, for package:NAME) the base; load or fine-tune (cached by content) the adapted model."""
        from ..fileio import sha256_tree
        from ..vision.finetune import cached_finetune, finetune, finetune_key
        from ..vision.models import load_image_model
        from ..vision.packages import resolve_image_base

        set_run_threads()
        t = time.perf_counter()
        where = str(spec.source_file)
        base_path, facts = resolve_image_base(spec.model.base, cache_root, f"{where}: model.base")
        base = load_image_model(base_path, f"{where}: model.base")
        size = self.image.size
        self.preprocess = base.preprocess.resized(size) if size else base.preprocess
        base.preprocess = self.preprocess
        info = {"base": {"ref": spec.model.base, "path": str(base_path), "sha256": sha256_tree(base_path),
                         "architecture": base.architecture, **facts}}
        if spec.model.adapted is not None:
            adapted_path = Path(spec.model.adapted)
            info["adapted"] = {"ref": spec.model.adapted, "source": "given"}
        else:
            train, recipe = dataset.splits["train"], self._recipe()
            ft_seed = spec.model.finetune.seed_or(spec.seed)     # a sweep varies it; the data sample keeps spec.seed
            key = finetune_key(info["base"]["sha256"], train.digest, dataset.classes, recipe, ft_seed,
                               self.preprocess.height)
            adapted_path = cached_finetune(cache_root, key)
            if adapted_path is not None:
                say(f"fine-tuned model found in cache: {adapted_path}")
            else:
                t_ft, images = time.perf_counter(), self.images(train.inputs)
                with training_threads():
                    adapted_path = finetune(base_path, images, train.y, dataset.classes, recipe, ft_seed,
                                            cache_root, key, preprocess=self.preprocess)
                timings["finetune_s"] = round(time.perf_counter() - t_ft, 2)
            info["adapted"] = {"ref": None, "source": "fine-tuned by transfer-audit",
                               "recipe": {"method": recipe.method.value, "epochs": recipe.epochs,
                                          "learning_rate": recipe.learning_rate, "batch_size": recipe.batch_size,
                                          "blocks": recipe.blocks, "image_size": self.preprocess.height,
                                          "seed": ft_seed, "train_rows": len(train)}}
        adapted = load_image_model(adapted_path, f"{where}: model.adapted")
        if adapted.num_classes != dataset.n_classes:
            raise InputError(f"{where}: model.adapted: the model in {str(adapted_path)!r} has a head with "
                             f"{adapted.num_classes} classes, but the data has {dataset.n_classes}. Use the model "
                             "trained for this label set, or fine-tune one (model.adapted: null).")
        info["adapted"].update({"path": str(adapted_path), "sha256": sha256_tree(adapted_path),
                                "relation": "finetune", "architecture": adapted.architecture})
        timings["models_s"] = round(time.perf_counter() - t, 2)
        return Models(self, base, adapted, self.preprocess), info

    def _recipe(self):
        from ..vision.finetune import ImageFinetuneMethod, ImageFinetuneRecipe

        f = self.recipe
        return ImageFinetuneRecipe(method=ImageFinetuneMethod(f.method.value), epochs=f.epochs,
                                   learning_rate=f.learning_rate, batch_size=f.batch_size, blocks=f.blocks,
                                   lora_r=f.lora_r, lora_alpha=f.lora_alpha)

    # ---- the forward pass -------------------------------------------------------------------------------------
    def cache_key(self) -> tuple:
        p = self.preprocess
        return ("image", p.height, p.width, p.resample.value, p.crop_pct)

    def forward(self, models: Models, which: str, inputs, *, layer_rows: int = 0, what: str = "inference") -> dict:
        """Pooled features (the head's input), logits of the adapted model and, for the first layer_rows
        images, one pooled state per stage (their widths differ: a list)."""
        from ..vision.inference import run_model

        model = models.adapted if which == "adapted" else models.base
        out = run_model(model, self.images(inputs), stages=layer_rows > 0, what=what)
        result = {"pooled": out.features.astype(np.float32)}
        if which == "adapted":
            result["logits"] = out.logits.astype(np.float32)
        if layer_rows > 0:
            result["layers"] = [s[:layer_rows].astype(np.float32) for s in out.stages]
            n = len(out.stages)
            head = model.architecture.startswith("efficientnet")      # its last state is the pooled head features
            result["layer_names"] = np.array([f"stage {i + 1}" for i in range(n - head)] + ["head"] * head)
        return result

    # ---- controls and descriptors -----------------------------------------------------------------------------
    def input_controls(self, train, seed: int) -> dict:
        """M0 candidates: a small CNN from random weights (the fine-tune's epochs and batch size) and a
        standardised logistic regression on 32 x 32 gray pixels."""
        from ..results import ModelRole
        from ..vision.controls import CNNBudget, PixelControl, SmallCNNControl

        images = self.images(train.inputs)
        side = images.shape[1]
        budget = CNNBudget(epochs=self.recipe.epochs, batch_size=self.recipe.batch_size,
                           input_size=min(side, CNN_SIDE))
        with training_threads():
            cnn = SmallCNNControl(budget, seed).fit(images, train.y)
        pixels = PixelControl("pixels", size=min(side, PIXEL_SIDE), seed=seed).fit(images, train.y)
        return {ModelRole.NO_TRANSFER_CNN.value: _OnImages(cnn, self),
                ModelRole.NO_TRANSFER_PIXELS.value: _OnImages(pixels, self)}

    def descriptors(self, inputs, train_inputs):
        """Brightness, contrast, sharpness, width, height, aspect of each decoded image (before resizing)."""
        from ..vision.descriptors import descriptor_frame

        self.images(inputs)
        return descriptor_frame(self._decoded[p][1] for p in inputs)

    def control_features(self, inputs, dim: int, seed: int) -> np.ndarray:
        """HOG features squeezed to `dim` with a seeded Gaussian random projection (the LogME control)."""
        import warnings

        from ..vision.controls import control_features

        with warnings.catch_warnings():          # more components than HOG features on tiny images
            warnings.simplefilter("ignore")
            return control_features(self.images(inputs), dim, seed)

    def counterfactual_axes(self, dataset, split, rng, links=()) -> dict:
        """Image counterfactuals are label-irrelevant changes, not identity swaps: exposure, focus, sensor
        noise, mirroring. A flip means the prediction depends on the camera, not on the part."""
        rows = list(range(len(split)))
        return {label: (rows, [PerturbedImage(p, kind, strength, label) for p in split.inputs])
                for label, kind, strength in AXES}

    # ---- attribution ------------------------------------------------------------------------------------------
    def explainers(self, models: Models) -> dict:
        """Differentiable pixel -> logits functions: the adapted model, and the frozen base through the probe."""
        import torch

        from ..models.baselines import probe_as_linear
        from ..results import ModelRole

        adapted, base = models.adapted.for_inference().channels_last(), models.base.for_inference().channels_last()
        for p in [*adapted.parameters(), *base.parameters()]:
            p.requires_grad_(False)                    # gradients for the pixels only
        w, b = (torch.as_tensor(a, dtype=torch.float32) for a in probe_as_linear(models.probe))
        return {ModelRole.ADAPTED.value: _PixelModel(lambda x: adapted.forward_all(x).logits, adapted.preprocess),
                ModelRole.BASE_PROBE.value: _PixelModel(lambda x: base.forward_all(x).features @ w.T + b,
                                                        base.preprocess)}

    def attribute(self, module, inputs, targets, schedule, tolerance: float, what: str):
        from ..vision.attribution import Baseline, attribute_images
        from ..vision.preprocess import normalise

        t = time.perf_counter()
        x = normalise(self.images(inputs), module.preprocess, channels_last=True)
        runs = attribute_images(module.forward, x, targets, Baseline(self.image.baseline), module.preprocess,
                                schedule, tolerance, what)
        attrs = [Attribution([str(p)], r.scores, r.target, r.delta, r.gap, r.steps, r.passes, r.converged)
                 for p, r in zip(inputs, runs)]
        return attrs, time.perf_counter() - t

    def attribution_units(self, attribution: Attribution) -> list[tuple[str, float]]:
        from ..vision.cells import cell_masses

        return cell_masses(attribution.scores)

    def sensitive_units(self, dataset, extra_terms) -> set[str]:
        """The grid cells at least half inside the region of interest (data.image.region or region_mask),
        and any cells named in checks.attribution.sensitive_terms."""
        from ..vision.attribution import box_mask, load_mask
        from ..vision.cells import cells_inside

        p, spec = self.preprocess, self.image
        if spec.region:
            mask = np.zeros((p.height, p.width), dtype=bool)
            for box in spec.region:
                mask |= box_mask(p.height, p.width, box)
        elif spec.region_mask is not None:
            mask = load_mask(spec.region_mask, p, "data.image.region_mask")
        else:
            mask = np.zeros((p.height, p.width), dtype=bool)
        return cells_inside(mask) | set(extra_terms)

    def sensitive_note(self, dataset) -> str:
        if self.image.region or self.image.region_mask is not None:
            return ("Sensitive image cells: those at least half inside the region of interest (data.image.region "
                    "or region_mask); sensitive_lift compares their share of the attribution with their share of "
                    "the image.")
        return "No region of interest given (data.image.region or region_mask): no sensitive image cells."

    def quality_scores(self, module, input_, attribution, seed: int, sensitivity: bool) -> dict:
        from ..vision.attribution import Baseline, quality_scores
        from ..vision.preprocess import normalise

        x = normalise(self.images([input_]), module.preprocess)
        return quality_scores(module.forward, x, Baseline(self.image.baseline), module.preprocess,
                              attribution.target, attribution.steps, seed, sensitivity=sensitivity)

    def attribution_note(self, n: int, schedule, tolerance: float) -> str:
        from ..vision.cells import GRID

        return (f"IntegratedGradients on pixels, {n} label-stratified examples of the current split, "
                f"{self.image.baseline} baseline; steps tried per example: {', '.join(map(str, schedule))} "
                f"until |delta| <= {tolerance:.0%} of |F(x) - F(baseline)|. Attributions are summed over colour "
                f"channels and reported per cell of a {GRID} x {GRID} grid (r1c1 is the top-left cell).")

    def illustrate(self, inputs, attributions, limit: int) -> list[str]:
        """Saliency overlays (96-pixel PNG thumbnails, base64) of the first `limit` explained images."""
        from ..vision.overlay import overlay_png, png_base64

        k = min(limit, len(inputs))
        return [png_base64(overlay_png(img, a.scores)) for img, a in zip(self.images(inputs[:k]), attributions)]


def set_run_threads() -> int:
    """Threads for forward passes, attribution and the statistics after them (torch and BLAS): OMP_NUM_THREADS
    when set; else one while the machine is busier than its cores, every core otherwise. Threads of one
    operation wait for each other, so one thread on a core others keep busy stalls them all: under load 7 on
    2 cores, the transfer check took 55 s with two threads and 3.6 s with one, pixel attribution 4 times longer."""
    import torch
    from threadpoolctl import threadpool_limits

    if os.environ.get(ENV_THREADS):
        return torch.get_num_threads()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    n = 1 if load >= cpus else cpus
    torch.set_num_threads(n)
    threadpool_limits(n)                  # kept for the run (BLAS in scikit-learn, scipy, numpy)
    say(f"threads: {n} for inference and statistics (load average {load:.1f} on {cpus} CPUs)")
    return n


class training_threads:
    """One thread while a model trains (OMP_NUM_THREADS overrides), whatever the machine: the order in which a
    backward pass sums gradients depends on the thread count, so the weights must not depend on how many cores
    there are or how busy they were. On this 2-core machine under load one thread also trained fastest (last two
    Lite0 blocks, 600 cells at 128 px: 113 s with two threads, about 35 s with one)."""

    def __enter__(self):
        import torch
        from threadpoolctl import threadpool_limits

        self.before = torch.get_num_threads()
        n = self.before if os.environ.get(ENV_THREADS) else 1
        torch.set_num_threads(n)
        self.blas = threadpool_limits(n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)
        self.blas.restore_original_limits()


class _OnImages:
    """An image control (fit on uint8 arrays) as controls.build_controls calls it: predict_proba(paths)."""

    def __init__(self, control, modality: ImageModality):
        self.control, self.modality = control, modality
        self.classes_ = control.classes_

    def predict_proba(self, inputs) -> np.ndarray:
        return self.control.predict_proba(self.modality.images(inputs))


@dataclass(frozen=True)
class _PixelModel:
    forward: object          # normalised N x 3 x H x W -> logits
    preprocess: object
