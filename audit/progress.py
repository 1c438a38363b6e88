"""Progress lines for long work (fine-tuning, inference, attribution), on stderr, rate-limited."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, what: str, total: int, unit: str = "items", every_s: float = 5.0, stream=None):
        self.what, self.total, self.unit, self.every_s = what, max(total, 1), unit, every_s
        self.stream = stream or sys.stderr
        self.start = self.last = time.perf_counter()
        self.done = 0
        self._print(f"{what}: 0/{total} {unit}")

    def _print(self, line: str) -> None:
        print(f"[transfer-audit] {line}", file=self.stream, flush=True)

    def update(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            self._print(f"{self.what}: {self.done}/{self.total} {self.unit} ({rate:.1f}/s, ~{eta:.0f} s left)"
                        + (f" {extra}" if extra else ""))

    def close(self, extra: str = "") -> float:
        elapsed = time.perf_counter() - self.start
        self._print(f"{self.what}: {self.done}/{self.total} {self.unit} in {elapsed:.1f} s" + (f" {extra}" if extra else ""))
        return elapsed


def say(line: str) -> None:
    print(f"[transfer-audit] {line}", file=sys.stderr, flush=True)
