"""Where an audit's work runs: in this process, or on Ray (the optional extra `transfer-audit[ray]`)."""
from __future__ import annotations

from enum import Enum


class Executor(str, Enum):
    LOCAL = "local"
    RAY = "ray"
