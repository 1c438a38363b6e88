"""Connecting to Ray: a cluster at --address (checked to answer before anything is written), or a local
instance started for this command and shut down after it."""
from __future__ import annotations

import socket
from contextlib import contextmanager

from ..errors import InputError

CONNECT_TIMEOUT_S = 3.0


def require_ray():
    try:
        import ray
    except ImportError:
        raise InputError("command line: --executor ray needs Ray (pip install 'transfer-audit[ray]').") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """host and port of 'host:port' or 'ray://host:port'; None for 'auto' and the local default."""
    if address in ("auto", "local"):
        return None
    text = address.split("://", 1)[-1]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InputError(f"command line: --address must be auto, HOST:PORT or ray://HOST:PORT. Got {address!r} "
                         "instead.")
    return host, int(port)


def check_answers(address: str) -> None:
    """A Ray head that does not answer is an input error in seconds, not a long hang inside ray.init."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__).lower()
        raise InputError(f"command line: --address {address} does not answer ({reason} within "
                         f"{CONNECT_TIMEOUT_S:g} s); start the head with `ray start --head` or give the address "
                         "it printed.") from None


WORKER_SETUP = "transfer_audit.distributed.ray_scan.without_fsspec_http"


def init_kwargs() -> dict:
    """What every ray.init of this tool passes (tests and benchmarks too): each worker runs the setup hook."""
    return {"include_dashboard": False, "logging_level": "warning",
            "runtime_env": {"worker_process_setup_hook": WORKER_SETUP}}


def quiet_ray_data() -> None:
    """Ray Data's own progress bars and info logs off: this tool's progress line says how far a pass is."""
    import logging

    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False     # first: importing ray.data sets its logging
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local instance when address is None and Ray is not already up.
    Returns True when this call started or joined Ray (the caller then shuts it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    if address is not None:
        check_answers(address)
    try:
        ray.init(address=address, log_to_driver=True, **init_kwargs())
    except ConnectionError as e:
        raise InputError(f"command line: --address {address or 'auto'} does not answer: "
                         f"{str(e).splitlines()[0]}") from None
    return True


@contextmanager
def ray_session(address: str | None):
    started = connect(address)
    try:
        yield require_ray()
    finally:
        if started:
            require_ray().shutdown()
