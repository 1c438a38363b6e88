"""Modalities: everything that depends on what a row is (tasks/base.py documents the interface; tasks/text.py
is the reference implementation). Evidence, checks and the gate never import a modality module; the runner
picks one from the spec's task with `modality_for`."""
from __future__ import annotations

from .base import Attribution, Modality, Models


def modality_for(spec, device: str = "auto") -> Modality:
    """The modality of a spec's task, configured from the spec and the --device value (one literal mapping)."""
    from ..spec import Task
    from .image import ImageModality
    from .text import TextModality

    if spec.task in (Task.TEXT, Task.TABULAR):      # tabular rows are serialised to text by the spec's template
        return TextModality(max_length=spec.model.finetune.max_length, device=device)
    if spec.task is Task.IMAGE:
        if device not in ("auto", "cpu"):
            from ..errors import InputError
            raise InputError(f"--device {device}: the image task runs on the CPU in this version; use --device cpu "
                             "(or auto).")
        return ImageModality(spec.data.image, spec.model.finetune)
    raise ValueError(f"no modality for task {spec.task!r}")


__all__ = ["Attribution", "Modality", "Models", "modality_for"]
