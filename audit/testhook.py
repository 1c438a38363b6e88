"""A test hook: make a run wait at a named stage, so a test can interrupt or inspect it at a known point
without sleeping and hoping (docs/testing.md).

    TRANSFER_AUDIT_TEST_PAUSE_AT=<stage>:<file>

When the run reaches <stage> (one of STAGES) it prints "transfer-audit: test hook: paused at <stage>" on stderr
and waits until <file> exists; the test reads that line, then signals the process or creates the file to let
it go on. Unset, it costs one environment lookup per stage.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ENV = "TRANSFER_AUDIT_TEST_PAUSE_AT"
STAGES = ("data", "models", "evidence", "checks", "outputs")
POLL_S = 0.02


def pause_at(stage: str) -> None:
    value = os.environ.get(ENV)
    if not value:
        return
    name, _, release = value.partition(":")
    if name not in STAGES or not release:
        from .errors import InputError

        raise InputError(f"environment: {ENV} must be STAGE:FILE with STAGE one of {', '.join(STAGES)}. "
                         f"Got {value!r} instead.")
    if name != stage:
        return
    print(f"transfer-audit: test hook: paused at {stage}", file=sys.stderr, flush=True)
    while not Path(release).exists():      # a signal sent now interrupts this wait like any other work
        time.sleep(POLL_S)


DIE_ENV = "TRANSFER_AUDIT_TEST_DIE_ONCE"


def die_once() -> None:
    """TRANSFER_AUDIT_TEST_DIE_ONCE=<file>: the first process to get here creates <file> and exits at once, as a
    worker killed for memory would (no cleanup, no exception); later ones go on. Lets a test see Ray retry a
    dead worker without killing processes at a guessed moment."""
    marker = os.environ.get(DIE_ENV)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(137)
