"""The check registry: one literal dict. Nothing registers itself on import."""
from __future__ import annotations

from ..errors import InputError, did_you_mean
from . import attribution, bias, drift, performance, transfer
from .base import CheckDef, StatsConfig, no_options

CHECKS: dict[str, CheckDef] = {
    "performance": CheckDef(
        name="performance", description="accuracy, macro F1 and ROC AUC of every model role, with bootstrap CIs",
        metrics=performance.METRICS, option_names=frozenset(), parse_config=no_options, run=performance.run),
    "bias": CheckDef(
        name="bias", description="group and intersectional fairness for every model role, inherited vs introduced "
        "bias, counterfactual identity swaps", metrics=bias.METRICS, option_names=bias.OPTIONS,
        parse_config=bias.parse_config, run=bias.run, needs_models=True),
    "transfer": CheckDef(
        name="transfer", description="negative transfer (paired bootstrap, McNemar), per-group gains, LogME, "
        "forgetting, layer-wise CKA", metrics=transfer.METRICS, option_names=transfer.OPTIONS,
        parse_config=transfer.parse_config, run=transfer.run),
    "drift": CheckDef(
        name="drift", description="reference vs current drift in raw columns and text descriptors (evidently), "
        "base embeddings (MMD² permutation test, domain classifier) and predictions", metrics=drift.METRICS,
        option_names=drift.OPTIONS, parse_config=drift.parse_config, run=drift.run),
    "attribution": CheckDef(
        name="attribution", description="integrated-gradients token attributions of adapted vs base probe: "
        "convergence, top words, sensitive share, shift", metrics=attribution.METRICS,
        option_names=attribution.OPTIONS, parse_config=attribution.parse_config, run=attribution.run,
        needs_models=True),
}


def available_checks() -> list[str]:
    return sorted(CHECKS)


def available_metrics() -> list[str]:
    return sorted(m for c in CHECKS.values() for m in c.metrics)


def get_check(name: str) -> CheckDef:
    if name not in CHECKS:
        raise InputError(f"unknown check {name!r}{did_you_mean(name, CHECKS)}. "
                         f"Available: {', '.join(available_checks())}.")
    return CHECKS[name]


__all__ = ["CHECKS", "CheckDef", "StatsConfig", "available_checks", "available_metrics", "get_check"]
