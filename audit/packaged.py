"""Files installed inside the package, found the same way from a source checkout and from a wheel:
report templates and the compliance map (transfer_audit.reports), shipped policies (transfer_audit.policies),
example specs (transfer_audit.examples) and shipped data (transfer_audit/resources)."""
from __future__ import annotations

from pathlib import Path


def packaged(package: str, *parts: str) -> Path:
    """Path of a file shipped in `package` (a regular folder: the package is never installed zipped)."""
    from importlib.resources import files

    return Path(str(files(package).joinpath(*parts)))


def templates_dir() -> Path:
    return packaged("transfer_audit.reports", "templates")


def compliance_map() -> Path:
    return packaged("transfer_audit.reports", "compliance_map.yaml")


def default_policy() -> Path:
    return packaged("transfer_audit.policies", "default.yaml")


def example_spec(name: str) -> Path:
    return packaged("transfer_audit.examples", name, "audit.yaml")


def resource(name: str) -> Path:
    return packaged("transfer_audit", "resources", name)
