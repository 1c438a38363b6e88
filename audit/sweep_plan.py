"""What a sweep audits: one entry per adapted model or per fine-tuning seed, from the spec's `sweep:` block and the
command line's --adapted, each turned into the spec of one ordinary audit. Plain data; no model is touched here."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import MSG_MISSING_FILE, InputError

MODEL_MARKERS = ("config.json", "adapter_config.json")     # a Hugging Face model or a PEFT adapter folder


@dataclass(frozen=True)
class SweepEntry:
    """One audit of the sweep: an adapted model (folder or package:NAME) or a fine-tuning seed of the recipe."""

    label: str                   # short, folder-safe: the run folder's name and the summary's row
    adapted: str | None = None
    finetune_seed: int | None = None


@dataclass(frozen=True)
class SweepBlock:
    """The spec's `sweep:` block: adapted models, or fine-tuning seeds of model.finetune (not both)."""

    adapted: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()


def parse_sweep_block(section, base_dir: Path) -> SweepBlock:
    adapted = tuple(resolve_model_ref(v, section.file, section.field("adapted"), base_dir)
                    for v in section.str_list("adapted", []) or [])
    raw_seeds = section.data.get("seeds") or []
    if not isinstance(raw_seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32
                                                  for s in raw_seeds):
        raise section.fail("seeds", "a list of whole numbers in [0, 4294967295]", raw_seeds)
    if len(set(raw_seeds)) != len(raw_seeds):
        raise section.fail("seeds", "a list of distinct seeds", raw_seeds)
    if adapted and raw_seeds:
        raise section.fail("seeds", "absent when sweep.adapted is given (a sweep varies one thing)", raw_seeds)
    if not adapted and not raw_seeds:
        raise section.fail("adapted", "a list of adapted models or a list of fine-tuning seeds (sweep.seeds)", None)
    return SweepBlock(adapted=adapted, seeds=tuple(raw_seeds))


def resolve_model_ref(value: str, where: str, field: str, base_dir: Path) -> str:
    """A folder (relative to base_dir) that looks like a model, or package:NAME; else a one-sentence InputError."""
    if value.startswith("package:"):
        return value
    path = (base_dir / value).resolve()
    if not path.exists():
        raise InputError.make(MSG_MISSING_FILE, where=where, field=field, value=value)
    if not path.is_dir() or not any((path / m).is_file() for m in MODEL_MARKERS):
        raise InputError(f"{where}: {field} {value!r} is not a model: expected a folder holding config.json "
                         f"(a Hugging Face model) or adapter_config.json (a PEFT adapter).")
    return str(path)


def _label(ref: str, taken: set[str]) -> str:
    stem = ref.split(":", 1)[1] if ref.startswith("package:") else Path(ref).name
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip(".-") or "model"
    out, n = label, 2
    while out in taken:
        out, n = f"{label}-{n}", n + 1
    taken.add(out)
    return out


def plan_entries(spec, cli_adapted=()) -> list[SweepEntry]:
    """The command line's --adapted (resolved against the working folder) replaces the spec's block."""
    taken: set[str] = set()
    if cli_adapted:
        refs = [resolve_model_ref(v, "command line", "--adapted", Path.cwd()) for v in cli_adapted]
        return [SweepEntry(_label(r, taken), adapted=r) for r in refs]
    block = spec.sweep
    if block is None:
        raise InputError(f"{spec.source_file}: sweep is missing. Give adapted models with --adapted DIR ... or a "
                         "`sweep:` block with `adapted: [...]` or `seeds: [...]`.")
    if block.adapted:
        return [SweepEntry(_label(r, taken), adapted=r) for r in block.adapted]
    if spec.model.adapted is not None:
        raise InputError(f"{spec.source_file}: sweep.seeds varies the fine-tuning seed, but model.adapted is given; "
                         "set model.adapted to null so model.finetune trains one model per seed.")
    return [SweepEntry(f"seed{s}", finetune_seed=s) for s in block.seeds]


def entry_spec(spec, entry: SweepEntry):
    """The ordinary audit spec of one entry: same data, base, checks and policy; its own adapted model or seed."""
    model = spec.model
    if entry.adapted is not None:
        model = replace(model, adapted=entry.adapted)
    if entry.finetune_seed is not None:
        model = replace(model, adapted=None, finetune=replace(model.finetune, seed=entry.finetune_seed))
    return replace(spec, name=f"{spec.name}-{entry.label}", model=model, sweep=None)
