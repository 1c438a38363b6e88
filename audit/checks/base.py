"""What every check shares: its registry entry and the statistics settings it runs under."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..options import option_names, parse_into
from ..stats import StatsConfig

__all__ = ["CheckDef", "StatsConfig"]


@dataclass(frozen=True)
class CheckDef:
    """A registry entry. Options come from the `config` dataclass (each declared once, with its constraint)."""

    name: str
    description: str
    metrics: tuple[str, ...]
    config: type                   # frozen dataclass of options, fields declared with options.option()
    run: Callable                  # (evidence, config, stats) -> CheckResult; (..., models) when needs_models
    needs_models: bool = False     # bias (counterfactual swaps) and attribution call the models themselves

    @property
    def option_names(self) -> frozenset[str]:
        return option_names(self.config)

    def parse_config(self, section):
        return parse_into(section, self.config)
