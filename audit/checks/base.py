"""What every check shares: its registry entry, the statistics settings, and small helpers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class StatsConfig:
    """Statistics settings from the policy's defaults; one object instead of options repeated per check."""

    n_boot: int = 2000
    ci_level: float = 0.95
    seed: int = 0
    min_group_n: int = 30
    min_pos: int = 10
    min_neg: int = 10


@dataclass(frozen=True)
class CheckDef:
    """A registry entry: how to read the check's options and how to run it."""

    name: str
    description: str
    metrics: tuple[str, ...]
    option_names: frozenset
    parse_config: Callable
    run: Callable                  # (evidence, config, stats) -> CheckResult
    needs_models: bool = False     # attribution alone gets the models themselves


def no_options(section):
    return {}
