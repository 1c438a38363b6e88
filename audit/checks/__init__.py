"""The check registry: one literal dict, and `available_checks()` to list it. Nothing registers itself on import.

A check is a module with METRICS (every metric name it may emit), an options dataclass (fields declared with
options.option) and `run(evidence, config, stats) -> CheckResult` (plus `models` when it calls the models).
"""
from __future__ import annotations

from . import attribution, bias, drift, performance, slices, transfer
from .base import CheckDef, StatsConfig

CHECKS: dict[str, CheckDef] = {
    "performance": CheckDef(
        name="performance", description="accuracy, macro F1 and ROC AUC of every model role, with bootstrap CIs",
        metrics=performance.METRICS, config=performance.PerformanceConfig, run=performance.run),
    "bias": CheckDef(
        name="bias", description="group and intersectional fairness for every model role, inherited vs introduced "
        "bias, counterfactual identity swaps", metrics=bias.METRICS, config=bias.BiasConfig, run=bias.run,
        needs_models=True, check_config=bias.check_config),
    "transfer": CheckDef(
        name="transfer", description="negative transfer (paired bootstrap, McNemar), per-group gains, LogME, "
        "forgetting, layer-wise CKA", metrics=transfer.METRICS, config=transfer.TransferConfig, run=transfer.run),
    "drift": CheckDef(
        name="drift", description="reference vs current drift in raw columns and input descriptors (evidently), "
        "base embeddings (MMD² permutation test, domain classifier) and predictions", metrics=drift.METRICS,
        config=drift.DriftConfig, run=drift.run),
    "attribution": CheckDef(
        name="attribution", description="integrated-gradients attributions of adapted vs base probe: "
        "convergence, top words, sensitive share, shift", metrics=attribution.METRICS,
        config=attribution.AttributionConfig, run=attribution.run, needs_models=True),
    "slices": CheckDef(
        name="slices", description="paired slice scan: slices where the adapted model is worse than both the base "
        "probe and the no-transfer control (intersection-union McNemar test, Benjamini-Hochberg), and what drives "
        "each disparity", metrics=slices.METRICS, config=slices.SlicesConfig, run=slices.run),
}


def available_checks() -> list[str]:
    return sorted(CHECKS)


def available_metrics() -> list[str]:
    return sorted(m for c in CHECKS.values() for m in c.metrics)


__all__ = ["CHECKS", "CheckDef", "StatsConfig", "available_checks", "available_metrics"]
