"""Options declared once: a dataclass field carries its default, its constraint and its documentation, and
everything else (the allowed keys of a YAML section, validation with the uniform error sentence, the field
tables in the docs) is derived from that one declaration.

    @dataclass(frozen=True)
    class DriftConfig:
        alpha: float = option(0.01, "family-wise level of drift.detected", lo=1e-6, hi=0.5)

    parse_into(section, DriftConfig)   # -> DriftConfig(alpha=...) or an InputError naming file, field, value
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from enum import Enum
from functools import cache

_MISSING = dataclasses.MISSING


def option(default, doc: str, *, lo=None, hi=None, choices=None):
    """A dataclass field with its constraint: numbers in [lo, hi], strings among `choices` (Enums: their values)."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": tuple(choices) if choices is not None else None}
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


@cache
def _declared(cls) -> tuple:
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls) if f.init and "doc" in f.metadata)


def option_names(cls) -> frozenset[str]:
    return frozenset(f.name for f, _ in _declared(cls))


def defaults(cls) -> dict:
    return {f.name: f.default for f, _ in _declared(cls)}


def _kind(annotation):
    """The value type a field holds, with Optional[...] unwrapped: (type, optional)."""
    args = typing.get_args(annotation)
    if args and type(None) in args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def parse_into(section, cls, **fixed):
    """Build cls from a validated YAML section (validate.Section); `fixed` supplies fields not read from YAML."""
    kwargs = dict(fixed)
    for f, annotation in _declared(cls):
        if f.name in kwargs:
            continue
        kind, _ = _kind(annotation)
        meta = f.metadata
        if isinstance(kind, type) and issubclass(kind, Enum):
            choices = {e.value for e in kind}
            raw = section.str(f.name, f.default.value if f.default is not None else None, choices=choices)
            kwargs[f.name] = None if raw is None else kind(raw)
        elif kind is bool:
            kwargs[f.name] = section.bool(f.name, f.default)
        elif kind is int:
            kwargs[f.name] = section.int(f.name, f.default, lo=meta["lo"], hi=meta["hi"])
        elif kind is float:
            kwargs[f.name] = section.float(f.name, f.default, lo=meta["lo"], hi=meta["hi"])
        elif kind is str:
            kwargs[f.name] = section.str(f.name, f.default, choices=set(meta["choices"]) if meta["choices"] else None)
        elif typing.get_origin(kind) is tuple:
            value = section.str_list(f.name, None)
            kwargs[f.name] = f.default if value is None else tuple(value)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no parser for options of type {annotation}")
    return cls(**kwargs)


def _show_default(value) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "`[]`" if not value else "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"


def _constraint(kind, meta) -> str:
    kind, optional = _kind(kind)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "one of " + ", ".join(f"`{e.value}`" for e in kind)
    if meta["choices"]:
        return "one of " + ", ".join(f"`{c}`" for c in meta["choices"])
    if kind in (int, float) and (meta["lo"] is not None or meta["hi"] is not None):
        lo = "-inf" if meta["lo"] is None else f"{meta['lo']:g}"
        hi = "inf" if meta["hi"] is None else f"{meta['hi']:g}"
        return f"{'whole number' if kind is int else 'number'} in [{lo}, {hi}]"
    return {bool: "true or false", int: "whole number", float: "number", str: "text"}.get(
        kind, "list of strings" if typing.get_origin(kind) is tuple else str(kind))


def options_table(cls) -> str:
    """The Markdown field table of an options dataclass, as the docs show it (kept equal by a test)."""
    lines = ["| field | meaning | allowed | default |", "|---|---|---|---|"]
    for f, annotation in _declared(cls):
        doc = f.metadata["doc"].replace("|", "\\|")     # a pipe would end the Markdown cell
        lines.append(f"| `{f.name}` | {doc} | {_constraint(annotation, f.metadata)} | "
                     f"{_show_default(f.default)} |")
    return "\n".join(lines)


_BLOCK = re.compile(r"(<!-- options: ([\w.]+) -->\n)(.*?)(<!-- /options -->)", re.S)


def sync_tables(text: str) -> str:
    """Rewrite every `<!-- options: module.Class -->` ... `<!-- /options -->` block of a Markdown text with the
    table generated from that class, so the docs cannot drift from the declarations (`make docs`)."""
    import importlib

    def table(m):
        module, _, name = m.group(2).rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return f"{m.group(1)}{options_table(cls)}\n{m.group(4)}"

    return _BLOCK.sub(table, text)


def main(paths) -> int:
    """`python -m transfer_audit.options FILE...`: rewrite the option tables in place."""
    from pathlib import Path

    for path in map(Path, paths):
        text = path.read_text(encoding="utf-8")
        new = sync_tables(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
