"""Fine-tuning an image classifier: head | last_blocks | full | lora, seeded, with progress lines, saved as
safetensors into a content-addressed cache folder (as models/finetune.py does for text).

What stays frozen runs in eval mode (batch-norm statistics untouched) and, when the architecture allows,
is computed once: `head` trains the new classifier on pooled features computed in one pass;
`last_blocks` on EfficientNet caches the activation entering the first trained block. Both give the same
model as running the frozen part every step, at a fraction of the cost.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from ..fileio import digest_of
from ..models.finetune import DONE_MARKER
from ..progress import Progress, say
from .folders import publish
from .preprocess import normalise

PREFIX_CACHE_BYTES = 1 << 30      # above this the frozen prefix is recomputed each step instead of cached


class ImageFinetuneMethod(str, Enum):
    HEAD = "head"
    LAST_BLOCKS = "last_blocks"
    FULL = "full"
    LORA = "lora"


@dataclass(frozen=True)
class ImageFinetuneRecipe:
    method: ImageFinetuneMethod = ImageFinetuneMethod.LAST_BLOCKS
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 32
    blocks: int = 2                  # last_blocks: how many of the backbone's blocks train (with the head)
    weight_decay: float = 0.01
    lora_r: int = 8
    lora_alpha: int = 16


@dataclass
class TrainLog:
    epoch_seconds: list = field(default_factory=list)
    setup_seconds: float = 0.0       # the one pass over frozen layers (head, cached last_blocks)
    losses: list = field(default_factory=list)
    steps: int = 0
    trainable_parameters: int = 0

    @property
    def final_loss(self) -> float:
        return float(np.mean(self.losses[-20:])) if self.losses else float("nan")


def finetune_key(base_digest: str, train_digest: str, classes, recipe: ImageFinetuneRecipe, seed: int,
                 image_size: int) -> str:
    return digest_of("image-finetune-v1", base_digest, train_digest, list(classes),
                     {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(recipe).items()},
                     seed, image_size)


def cached_finetune(cache_root: Path, key: str) -> Path | None:
    folder = Path(cache_root) / "models" / key
    return folder if (folder / DONE_MARKER).exists() else None


def _trainable_from(model, recipe: ImageFinetuneRecipe) -> int:
    """Index of the first trained block (last_blocks), len(blocks) for head, 0 for full."""
    n = len(model.blocks())
    if recipe.method is ImageFinetuneMethod.HEAD:
        return n
    if recipe.method is ImageFinetuneMethod.LAST_BLOCKS:
        return max(0, n - recipe.blocks)
    return 0


def _freeze_before(model, start: int) -> None:
    """Train blocks[start:] and every parameter registered after them (final norm, head): registration
    order is forward order in both families."""
    blocks = model.blocks()
    first = None if start >= len(blocks) else next(iter(blocks[start].parameters()))
    if start == 0:
        first = next(iter(model.module.parameters()))        # full: the stem too
    head = {id(p) for p in model.head().parameters()}
    trainable = False
    for p in model.module.parameters():
        if first is not None and p is first:
            trainable = True
        p.requires_grad_(trainable or id(p) in head)


def _train_mode(module) -> None:
    """train() for what learns; eval() for every sub-module whose parameters are all frozen, so frozen
    blocks behave exactly as at inference (batch-norm statistics kept, no dropout or stochastic depth),
    the same as the cached prefix they replace."""
    module.train()
    for m in module.modules():
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            m.eval()


def _batches(n: int, batch_size: int, gen):
    """Shuffled batches; a final batch of one row joins the previous one (batch norm needs two)."""
    import torch

    parts = list(torch.randperm(n, generator=gen).split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        last = parts.pop()
        parts[-1] = torch.cat([parts[-1], last])
    return parts


def _optimiser(params, recipe: ImageFinetuneRecipe, steps: int):
    """AdamW with 10% linear warm-up then linear decay (the text recipe's schedule)."""
    import torch

    opt = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    warm = max(1, int(0.1 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    return opt, sched


def _lora(model, recipe: ImageFinetuneRecipe):
    """LoRA on every linear layer and every ungrouped 1x1 convolution of the backbone; the new head trains in
    full. peft replaces the layers inside model.module in place, so the wrapper keeps working."""
    import torch
    from peft import LoraConfig, get_peft_model

    head = model.head()
    head_name = next(n for n, m in model.module.named_modules() if m is head)
    targets = [n for n, m in model.module.named_modules()
               if m is not head and (type(m) is torch.nn.Linear
                                     or (type(m) is torch.nn.Conv2d and m.groups == 1 and m.kernel_size == (1, 1)))]
    cfg = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=0.0, target_modules=targets,
                     modules_to_save=[head_name])
    return get_peft_model(model.module, cfg)


def train_classifier(model, images: np.ndarray, y: np.ndarray, classes, recipe: ImageFinetuneRecipe,
                     seed: int, channels_last: bool = True, log_every_s: float = 5.0) -> TrainLog:
    """Fine-tune `model` (an ImageClassifier) in place on uint8 images N x H x W x 3; returns the log."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    model.set_head(len(classes), classes, seed)
    if channels_last:
        model.channels_last()
    log = TrainLog()
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    start = _trainable_from(model, recipe)
    peft_model = None
    if recipe.method is ImageFinetuneMethod.LORA:
        for p in model.module.parameters():
            p.requires_grad_(False)
        peft_model = _lora(model, recipe)
    else:
        _freeze_before(model, start)
    params = [p for p in model.module.parameters() if p.requires_grad]
    log.trainable_parameters = int(sum(p.numel() for p in params))

    t0 = time.perf_counter()
    step_fn = _step_function(model, images, recipe, start, channels_last)
    log.setup_seconds = time.perf_counter() - t0
    n = len(images)
    gen = torch.Generator().manual_seed(seed)
    per_epoch = len(_batches(n, recipe.batch_size, torch.Generator().manual_seed(seed)))
    opt, sched = _optimiser(params, recipe, recipe.epochs * per_epoch)
    bar = Progress(f"fine-tuning ({recipe.method.value}, {recipe.epochs} epoch(s), {n} images)",
                   recipe.epochs * per_epoch, "steps", every_s=log_every_s)
    for _ in range(recipe.epochs):
        t_epoch = time.perf_counter()
        _train_mode(model.module)
        for batch in _batches(n, recipe.batch_size, gen):
            loss = torch.nn.functional.cross_entropy(step_fn(batch), y_t[batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            log.losses.append(float(loss.detach()))
            log.steps += 1
            bar.update(1, f"loss {log.final_loss:.3f}")
        log.epoch_seconds.append(time.perf_counter() - t_epoch)
    bar.close(f"final loss {log.final_loss:.3f}")
    if peft_model is not None:
        model.module = peft_model.merge_and_unload()
    model.eval()
    for p in model.module.parameters():
        p.requires_grad_(False)
    return log


def _step_function(model, images: np.ndarray, recipe: ImageFinetuneRecipe, start: int, channels_last: bool):
    """batch indices -> logits with gradients through the trained part only; frozen prefixes cached."""
    import torch.nn.functional as F

    pre = model.preprocess
    if recipe.method is ImageFinetuneMethod.HEAD:
        fast = model.for_inference()           # frozen: batch norms may be folded for the one pass
        feats = _frozen_pass(lambda x: fast.forward_all(x).features, fast, images, channels_last)
        head, p = model.head(), model.head_dropout
        return lambda b: head(F.dropout(feats[b], p=p, training=True))
    cacheable = recipe.method is ImageFinetuneMethod.LAST_BLOCKS and hasattr(model, "run_until") and start > 0
    if cacheable:
        one = model.run_until(normalise(images[:1], pre, channels_last), start)
        if one.numel() * 4 * len(images) <= PREFIX_CACHE_BYTES:
            fast = model.for_inference()
            acts = _frozen_pass(lambda x: fast.run_until(x, start), fast, images, channels_last)
            return lambda b: model.run_from(acts[b], start).logits
    return lambda b: model.forward_all(normalise(images[b.numpy()], pre, channels_last)).logits


def _frozen_pass(fn, model, images: np.ndarray, channels_last: bool, batch_size: int = 64):
    """fn over all images in eval mode without gradients (the frozen part runs once)."""
    import torch

    if channels_last:
        model.channels_last()
    model.module.eval()
    parts = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            parts.append(fn(normalise(images[s:s + batch_size], model.preprocess, channels_last)))
    return torch.cat(parts)


def finetune(base_folder: Path, images: np.ndarray, y: np.ndarray, classes, recipe: ImageFinetuneRecipe,
             seed: int, cache_root: Path, key: str, preprocess=None) -> Path:
    """Load the base, train, save into cache_root/models/<key>/ (atomic folder rename), return the folder.
    `preprocess`: the input geometry the images were resized to (saved with the model)."""
    from .models import load_image_model

    model = load_image_model(base_folder)
    if preprocess is not None:
        model.preprocess = preprocess
    log = train_classifier(model, images, y, classes, recipe, seed)
    final = Path(cache_root) / "models" / key
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=final.parent))
    try:
        model.save(tmp)
        meta = {"cache_key": key, "task": "image-classification", "architecture": model.architecture,
                **{k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(recipe).items()},
                "seed": seed, "train_rows": int(len(images)), "image_size": int(images.shape[1]),
                "steps": log.steps, "final_loss": log.final_loss, "classes": [str(c) for c in classes],
                "trainable_parameters": log.trainable_parameters}
        (tmp / DONE_MARKER).write_text(json.dumps(meta, indent=2))
        publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"fine-tuned image model saved to {final} ({sum(log.epoch_seconds) + log.setup_seconds:.0f} s)")
    return final
