"""Fine-tuning recipes (full, lora, head): seeded, with progress, saved as safetensors, cached by content."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..fileio import digest_of
from ..progress import Progress, say
from ..spec import FinetuneMethod, FinetuneSpec

DONE_MARKER = "transfer_audit_finetune.json"


def finetune_key(base_digest: str, train_digest: str, classes, recipe: FinetuneSpec, seed: int,
                 precision: str | None = None) -> str:
    """Content key of a fine-tune: base weights (their tree digest), training rows, recipe, seed, and the device
    precision off the CPU (runtime.precision_tag; None on the CPU keeps the keys CPU runs always had)."""
    parts = ["finetune-v1", base_digest, train_digest, list(classes),
             {k: getattr(recipe, k).value if hasattr(getattr(recipe, k), "value") else getattr(recipe, k)
              for k in recipe.__dataclass_fields__ if k != "seed"}, seed]   # the seed is its own part
    return digest_of(*parts, precision) if precision else digest_of(*parts)


def cached_finetune(cache_root: Path, key: str) -> Path | None:
    folder = cache_root / "models" / key
    return folder if (folder / DONE_MARKER).exists() else None


def recipe_record(recipe: FinetuneSpec, seed: int, train_rows: int) -> dict:
    """The recipe as results.json and the model card show it."""
    return {"method": recipe.method.value, "epochs": recipe.epochs, "learning_rate": recipe.learning_rate,
            "batch_size": recipe.batch_size, "max_length": recipe.max_length, "seed": seed, "train_rows": train_rows}


def finetune(base_path: Path, tokenizer, texts, y: np.ndarray, classes, recipe: FinetuneSpec, seed: int,
             cache_root: Path, key: str, device=None) -> Path:
    """Train on `device` (the CPU by default), save into cache_root/models/<key>/ (atomic folder rename), return
    the folder."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    model = _trainable_model(base_path, classes, recipe)
    if device is not None:
        model = model.to(device)
    enc = tokenizer(list(texts), truncation=True, max_length=recipe.max_length)
    from ..runtime import torch_threads, training_threads

    with torch_threads(training_threads()):     # never fewer when the machine is busy: see training_threads
        losses, steps, seconds = _train(model, enc["input_ids"], torch.as_tensor(y, dtype=torch.long), recipe,
                                        seed, tokenizer.pad_token_id or 0)
    meta = {"cache_key": key, "method": recipe.method.value, "epochs": recipe.epochs,
            "learning_rate": recipe.learning_rate, "batch_size": recipe.batch_size, "max_length": recipe.max_length,
            "seed": seed, "train_rows": len(texts), "steps": steps,
            "final_loss": float(np.mean(losses[-20:])), "classes": list(classes)}
    final = _save(model, tokenizer, meta, cache_root / "models" / key)
    say(f"fine-tuned model saved to {final} ({seconds:.0f} s)")
    return final


def _trainable_model(base_path: Path, classes, recipe: FinetuneSpec):
    """The base with a fresh classification head; frozen body (head) or LoRA adapters (lora) as the recipe says."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(base_path), num_labels=len(classes), local_files_only=True, trust_remote_code=False,
        use_safetensors=True, id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)})
    if recipe.method is FinetuneMethod.HEAD:
        for p in model.base_model.parameters():
            p.requires_grad_(False)
    elif recipe.method is FinetuneMethod.LORA:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=recipe.lora_r,
                                                 lora_alpha=recipe.lora_alpha, lora_dropout=0.1,
                                                 target_modules=["query", "value"]))
    return model


def _train(model, ids, labels, recipe: FinetuneSpec, seed: int, pad: int) -> tuple[list, int, float]:
    """AdamW with linear warm-up and decay over seeded shuffles, on the model's device with autocast off the CPU
    (a loss scaler for fp16); returns (losses, steps, seconds)."""
    import contextlib

    import torch
    from transformers import get_linear_schedule_with_warmup

    from ..runtime import autocast_dtype

    device = next(model.parameters()).device
    dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    n, bs = len(ids), recipe.batch_size
    steps = recipe.epochs * ((n + bs - 1) // bs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = Progress(f"fine-tuning ({recipe.method.value}, {recipe.epochs} epoch(s), {n} rows)", steps, "steps")
    losses = []
    for _ in range(recipe.epochs):
        for batch in torch.randperm(n, generator=gen).split(bs):
            input_ids, mask = _pad([ids[i] for i in batch.tolist()], pad)
            with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
                out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                            labels=labels[batch].to(device))
            if scaler is None:
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
            else:
                scaler.scale(out.loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(opt)
                scaler.update()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(out.loss.detach()))
            bar.update(1, f"loss {np.mean(losses[-20:]):.3f}")
    seconds = bar.close(f"final loss {np.mean(losses[-20:]):.3f}")
    model.eval()
    return losses, steps, seconds


def _pad(rows, pad: int):
    """Token id lists padded to the batch's longest row, with the attention mask."""
    import torch

    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        input_ids[j, : len(r)] = torch.as_tensor(r)
        mask[j, : len(r)] = 1
    return input_ids, mask


def _save(model, tokenizer, meta: dict, final: Path) -> Path:
    """Write into a temporary sibling folder, then rename: a cache entry is whole or absent."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:12]}.", dir=final.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        # No absolute paths here: this file is part of the model's content digest, which must not depend on
        # where the base happens to be installed.
        (tmp / DONE_MARKER).write_text(json.dumps(meta, indent=2))
        if final.exists():           # another run finished first: keep its copy, drop ours
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
