"""What every check shares: its registry entry and the statistics settings it runs under."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    check_config: Callable | None = None   # (section, config) -> None: checks beyond one option's constraint

    @property
    def option_names(self) -> frozenset[str]:
        return option_names(self.config)

    def parse_config(self, section):
        config = parse_into(section, self.config)
        if self.check_config is not None:
            self.check_config(section, config)
        return config
