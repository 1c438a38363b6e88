"""Frozen result records. results.json is the single source every renderer reads."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

SCHEMA_VERSION = "1.0"


class Status(str, Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"
    MEASURED = "MEASURED"          # a number with no rule attached yet; the gate decides


class ModelRole(str, Enum):
    ADAPTED = "adapted"
    BASE_PROBE = "base_probe"
    NO_TRANSFER = "no_transfer"                   # the stronger of the two controls below
    NO_TRANSFER_TEXT = "no_transfer_text"         # TF-IDF + logistic regression on the text
    NO_TRANSFER_TABULAR = "no_transfer_tabular"   # gradient-boosted trees on the raw columns
    NO_TRANSFER_CNN = "no_transfer_cnn"           # images: a small CNN trained from random weights
    NO_TRANSFER_PIXELS = "no_transfer_pixels"     # images: logistic regression on downsampled gray pixels
    BASE = "base"                                 # the frozen encoder itself (embeddings, LogME)
    DATA = "data"                                 # measurements of the data alone (input drift)


MAIN_ROLES = (ModelRole.ADAPTED, ModelRole.BASE_PROBE, ModelRole.NO_TRANSFER)


def clean(x):
    """JSON-safe floats (NaN/inf -> None), rounded to keep results stable and readable."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, 10)
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, Enum):
        return x.value
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):   # numpy scalar
        return clean(x.item())
    return x


@dataclass(frozen=True)
class Measurement:
    check: str
    metric: str
    model: str
    value: float | None
    ci: tuple[float, float] | None
    n: int
    status: Status = Status.MEASURED
    group: dict | None = None
    details: dict | None = None

    def to_dict(self) -> dict:
        d = {"check": self.check, "metric": self.metric, "model": self.model, "value": self.value,
             "ci": list(self.ci) if self.ci is not None else None, "n": self.n, "status": self.status}
        if self.group is not None:
            d["group"] = self.group
        if self.details:
            d["details"] = self.details
        return clean(d)


@dataclass(frozen=True)
class CheckResult:
    """Everything one check produced: flat measurements, small tables the report can draw, notes, and what it
    cost beyond Evidence (`forward_rows` of new model inputs, `seconds` per model role). The cost goes to the
    manifest and the evidence summary, not into the check's own results.json entry."""

    check: str
    status: Status
    measurements: tuple[Measurement, ...] = ()
    tables: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    cost: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return clean({"check": self.check, "status": self.status, "notes": list(self.notes),
                      "tables": self.tables})


def skipped(check: str, reason: str) -> CheckResult:
    return CheckResult(check=check, status=Status.SKIPPED, notes=(reason,))


def read_results(path) -> dict:
    """A results.json (or a run folder holding one), checked for this schema version; InputError otherwise."""
    import json
    from pathlib import Path

    from .errors import InputError

    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise InputError(f"{path}: no such results file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION or "gate" not in data:
        raise InputError(f"{path}: not a transfer-audit results.json: schema_version must be {SCHEMA_VERSION!r} "
                         f"and a 'gate' must be present. Got schema_version {version!r} instead.")
    return data
