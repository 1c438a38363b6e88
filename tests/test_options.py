"""Options declared once: parsing, validation and the docs tables all come from the dataclass declaration."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest

from transfer_audit.errors import MSG_BAD_VALUE, MSG_UNKNOWN_KEY, MSG_WRONG_TYPE, InputError
from transfer_audit.options import option, option_names, options_table, parse_into, sync_tables
from transfer_audit.validate import Section

ROOT = Path(__file__).resolve().parent.parent
DOCS_WITH_TABLES = [ROOT / "docs" / "configuration.md", ROOT / "policies" / "README.md"]


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Example:
    count: int = option(3, "how many", lo=1, hi=10)
    level: float = option(0.5, "a level", lo=0.0, hi=1.0)
    name: str = option("a", "a name", choices=("a", "b"))
    flag: bool = option(True, "a flag")
    colour: Colour = option(Colour.RED, "a colour")
    words: tuple[str, ...] = option((), "some words")


def _parse(data: dict):
    return parse_into(Section(data, "f.yaml", "x", option_names(Example)), Example)


def test_defaults_and_values_come_from_the_declaration():
    assert _parse({}) == Example()
    got = _parse({"count": 7, "level": 0.25, "name": "b", "flag": False, "colour": "blue", "words": ["p", "q"]})
    assert got == Example(7, 0.25, "b", False, Colour.BLUE, ("p", "q"))


@pytest.mark.parametrize("data, code", [
    ({"count": 11}, MSG_BAD_VALUE.code), ({"count": "3"}, MSG_WRONG_TYPE.code), ({"level": -0.1}, MSG_BAD_VALUE.code),
    ({"name": "c"}, MSG_BAD_VALUE.code), ({"flag": "yes"}, MSG_WRONG_TYPE.code),
    ({"colour": "green"}, MSG_BAD_VALUE.code), ({"words": [1]}, MSG_WRONG_TYPE.code),
    ({"colr": "red"}, MSG_UNKNOWN_KEY.code)])
def test_bad_values_get_the_uniform_sentence(data, code):
    with pytest.raises(InputError) as e:
        _parse(data)
    assert e.value.code == code and e.value.message.startswith("f.yaml: ")
    key = next(iter(data))
    assert (f"x.{key}" in e.value.message) or (code == MSG_UNKNOWN_KEY.code and repr(key) in e.value.message)


def test_error_templates_are_distinct():
    from transfer_audit import errors

    messages = [v for v in vars(errors).values() if isinstance(v, errors.Message)]
    assert len({m.code for m in messages}) == len(messages) >= 8
    assert MSG_WRONG_TYPE is not MSG_BAD_VALUE


def test_table_lists_every_option_with_constraint_and_default():
    table = options_table(Example)
    assert table.count("\n") == 1 + 6
    assert "| `count` | how many | whole number in [1, 10] | `3` |" in table
    assert "one of `red`, `blue`" in table and "| `words` | some words | list of strings | `[]` |" in table


@pytest.mark.parametrize("path", DOCS_WITH_TABLES, ids=lambda p: p.name)
def test_docs_tables_match_the_declarations(path):
    text = path.read_text(encoding="utf-8")
    assert "<!-- options: " in text
    assert sync_tables(text) == text, f"{path} is out of date with the declarations: run `make docs`"


def test_a_stale_table_is_detected():
    text = "<!-- options: transfer_audit.checks.drift.DriftConfig -->\n| old |\n<!-- /options -->"
    assert sync_tables(text) != text and "`permutations`" in sync_tables(text)
