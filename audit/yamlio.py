"""Strict YAML: safe_load semantics, duplicate keys rejected, errors that name file, line and key. Numbers follow
YAML 1.2 (2e-5, 1E3 and .5 are floats; PyYAML alone follows YAML 1.1, where 2e-5 is a string)."""
from __future__ import annotations

import re
from pathlib import Path

from .errors import MSG_BAD_FILE, MSG_MISSING_FILE, InputError

MAX_YAML_BYTES = 1 << 20
# YAML 1.2 core schema floats: optional sign, digits with an optional point or a point with digits, optional
# exponent with an optional sign. Whole numbers without point or exponent stay ints (PyYAML's int resolver).
YAML12_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                          r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


def _strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise InputError(
                    f"{loader.name}: duplicate key {key!r} at line {key_node.start_mark.line + 1}. "
                    "Each key may appear once; remove or rename one of them."
                )
            seen.add(key)
        return loader.construct_mapping_orig(node, deep=deep)

    StrictLoader.construct_mapping_orig = yaml.SafeLoader.construct_mapping
    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    # Replace YAML 1.1's float pattern (it needs a point and a signed exponent) with YAML 1.2's. The resolver
    # table is per first character; copying it keeps yaml.SafeLoader itself unchanged.
    float_tag = "tag:yaml.org,2002:float"
    StrictLoader.yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in resolvers if tag != float_tag]
        for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    StrictLoader.add_implicit_resolver(float_tag, YAML12_FLOAT, list("-+0123456789."))
    return StrictLoader


def load_yaml_file(path: str | Path, what: str) -> dict:
    """Read a YAML mapping from path; every failure is an InputError naming the file."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise InputError.make(MSG_MISSING_FILE, where=what, field="path", value=str(path))
    if path.is_dir():
        raise InputError.make(MSG_BAD_FILE, where=what, field="path", value=str(path), reason="it is a folder")
    raw = path.read_bytes()
    if len(raw) > MAX_YAML_BYTES:
        raise InputError.make(MSG_BAD_FILE, where=str(path), field="(file)", value=str(path),
                              reason=f"larger than {MAX_YAML_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError.make(MSG_BAD_FILE, where=str(path), field="(file)", value=str(path),
                              reason=f"not UTF-8 at byte {e.start}") from None
    loader = None
    try:
        loader = _strict_loader()(text)      # the reader rejects control characters here already
        loader.name = str(path)
        data = loader.get_single_data()
    except InputError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if mark is None and isinstance(e, yaml.reader.ReaderError):
            char = e.character if isinstance(e.character, str) else f"U+{int(e.character):04X}"
            problem = f"character {char} at position {e.position} is not allowed in YAML (is it a binary file?)"
        raise InputError(f"{path}: malformed YAML{where}: {problem}. Fix the syntax and run again.") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise InputError(f"{path}: the file is empty. Expected a YAML mapping of {what} fields.")
    if not isinstance(data, dict):
        raise InputError(f"{path}: the top level must be a mapping of {what} fields. "
                         f"Got {type(data).__name__} instead.")
    return data
