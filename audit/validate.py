"""Declarative checks for YAML mappings: one uniform sentence per failure (file, dotted field, value)."""
from __future__ import annotations

import math

from .errors import MSG_BAD_VALUE, MSG_MISSING_KEY, MSG_WRONG_TYPE, InputError, did_you_mean, unknown_key


class Section:
    """A mapping being validated, with its file and dotted path, so every error names both."""

    def __init__(self, data, file: str, path: str, allowed: set[str], required: set[str] = frozenset()):
        where = f"{file}: {path}" if path else file
        if not isinstance(data, dict):
            raise InputError.make(MSG_WRONG_TYPE, where=file, field=path or "(top level)",
                                  expected="a mapping", value=data)
        for key in data:
            if key not in allowed:
                raise unknown_key(f"{file}: {path}" if path else file, str(key), allowed)
        for key in required:
            if key not in data:
                raise InputError.make(MSG_MISSING_KEY, where=where, key=key)
        self.data, self.file, self.path = data, file, path

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, expected: str, value=None) -> InputError:
        return InputError.make(MSG_BAD_VALUE, where=self.file, field=self.field(key), expected=expected,
                               value=self.data.get(key) if value is None else value)

    def child(self, key: str, allowed: set[str], required: set[str] = frozenset()) -> Section:
        return Section(self.data.get(key) or {}, self.file, self.field(key), allowed, required)

    def str(self, key: str, default=None, choices=None) -> str | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise InputError.make(MSG_WRONG_TYPE, where=self.file, field=self.field(key),
                                  expected="a non-empty string", value=value)
        if choices is not None and value not in choices:
            raise InputError.make(MSG_BAD_VALUE, where=self.file, field=self.field(key),
                                  expected="one of " + ", ".join(sorted(choices)) + did_you_mean(value, choices),
                                  value=value)
        return value

    def int(self, key: str, default=None, lo=None, hi=None) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError.make(MSG_WRONG_TYPE, where=self.file, field=self.field(key),
                                  expected="a whole number", value=value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(key, f"a whole number in [{lo if lo is not None else '-inf'}, "
                                 f"{hi if hi is not None else 'inf'}]", value)
        return value

    def float(self, key: str, default=None, lo=None, hi=None) -> float | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError.make(MSG_WRONG_TYPE, where=self.file, field=self.field(key),
                                  expected="a finite number", value=value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(key, f"a number in [{lo if lo is not None else '-inf'}, "
                                 f"{hi if hi is not None else 'inf'}]", value)
        return float(value)

    def bool(self, key: str, default=None) -> bool | None:
        value = self.data.get(key, default)
        if value is not None and not isinstance(value, bool):
            raise InputError.make(MSG_WRONG_TYPE, where=self.file, field=self.field(key),
                                  expected="true or false", value=value)
        return value

    def str_list(self, key: str, default=None) -> list[str] | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InputError.make(MSG_WRONG_TYPE, where=self.file, field=self.field(key),
                                  expected="a list of strings", value=value)
        return list(value)
