"""Progress lines for long work (fine-tuning, inference, attribution) through `logging`, rate-limited.

The library only logs (logger "transfer_audit", a NullHandler, no level set): a notebook or pipeline decides what
to show. The command line installs the stderr handler (`install_cli_handler`), quiet or not.
"""
from __future__ import annotations

import logging
import sys
import time

LOGGER = logging.getLogger("transfer_audit")
LOGGER.addHandler(logging.NullHandler())
CLI_FORMAT = "[transfer-audit] %(message)s"


class Progress:
    def __init__(self, what: str, total: int, unit: str = "items", every_s: float = 5.0):
        self.what, self.total, self.unit, self.every_s = what, max(total, 1), unit, every_s
        self.start = self.last = time.perf_counter()
        self.done = 0
        say(f"{what}: 0/{total} {unit}")

    def update(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            say(f"{self.what}: {self.done}/{self.total} {self.unit} ({rate:.1f}/s, ~{eta:.0f} s left)"
                + (f" {extra}" if extra else ""))

    def close(self, extra: str = "") -> float:
        elapsed = time.perf_counter() - self.start
        say(f"{self.what}: {self.done}/{self.total} {self.unit} in {elapsed:.1f} s" + (f" {extra}" if extra else ""))
        return elapsed


def say(line: str) -> None:
    LOGGER.info(line)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test capture and redirection replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class cli_logging:
    """The command line's progress on stderr (warnings only with --quiet), for the duration of one command;
    the logger is left as it was found (main() is also called in-process, by tests and wrappers)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def __enter__(self):
        self.saved = (LOGGER.level, LOGGER.propagate)
        self.handler = _StderrHandler()
        self.handler.setFormatter(logging.Formatter(CLI_FORMAT))
        LOGGER.addHandler(self.handler)
        LOGGER.setLevel(logging.WARNING if self.quiet else logging.INFO)
        LOGGER.propagate = False        # each line once, whatever the root logger does
        return self

    def __exit__(self, *exc):
        LOGGER.removeHandler(self.handler)
        LOGGER.setLevel(self.saved[0])       # setLevel, not .level =: it clears logging's per-logger cache
        LOGGER.propagate = self.saved[1]
        return False


class hushed:
    """No progress lines inside (per-chunk forward passes of a streamed split, which has its own bar)."""

    def __enter__(self):
        self.level = LOGGER.level
        LOGGER.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        LOGGER.setLevel(self.level)
        return False
