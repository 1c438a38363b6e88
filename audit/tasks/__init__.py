"""Modalities: everything that depends on what a row is (tasks/base.py documents the interface; tasks/text.py
is the reference implementation). Evidence, checks and the gate never import a modality module; the runner
picks one from the spec's task with `modality_for`."""
from __future__ import annotations

from .base import Attribution, Modality, Models


def modality_for(spec, device: str = "auto") -> Modality:
    """The modality of a spec's task, configured from the spec and the --device value (one literal mapping)."""
    from ..spec import Task
    from .text import TextModality

    if spec.task in (Task.TEXT, Task.TABULAR):      # tabular rows are serialised to text by the spec's template
        return TextModality(max_length=spec.model.finetune.max_length, device=device)
    raise ValueError(f"no modality for task {spec.task!r}")


__all__ = ["Attribution", "Modality", "Models", "modality_for"]
