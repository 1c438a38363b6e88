"""Where a run computes: the device (--device), torch's thread count, and the offline switches of the Hugging Face
libraries. All of it is set when a run starts, never at import, and the environment is restored when it ends."""
from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


@contextmanager
def offline():
    """Nothing downloads during a run (models and data load with local_files_only as well); a variable the user
    set is kept as it is."""
    saved = {k: os.environ.get(k) for k in OFFLINE_VARS}
    for k in OFFLINE_VARS:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- threads ----------------------------------------------------------------------------------------------------
def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs the cgroup quota allows (cgroup v2 cpu.max, else v1 cfs quota/period), None when unlimited."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (affinity), all of them where the platform cannot say."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _cpu_times(stat_path: str) -> dict[int, tuple[int, int]]:
    """{cpu: (idle jiffies, total jiffies)} from /proc/stat."""
    out = {}
    with open(stat_path) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0].startswith("cpu") and parts[0] != "cpu":
                values = [int(v) for v in parts[1:9]]
                out[int(parts[0][3:])] = (values[3] + values[4], sum(values))   # idle + iowait, all
    return out


def idle_cpus(cpus: list[int], sample_s: float = 0.3, stat_path: str = "/proc/stat") -> float | None:
    """How many of `cpus` sat idle over a short sample (others' work; ours has not started), None if unknown."""
    try:
        before = _cpu_times(stat_path)
        time.sleep(sample_s)      # a measurement window, not a synchronisation
        after = _cpu_times(stat_path)
    except (OSError, ValueError):
        return None
    return idle_between(before, after, cpus)


def idle_between(before: dict, after: dict, cpus: list[int]) -> float:
    """Idle CPUs between two /proc/stat readings, counted over `cpus` (a CPU that did not tick counts idle)."""
    idle = 0.0
    for c in cpus:
        if c in before and c in after:
            total = after[c][1] - before[c][1]
            idle += (after[c][0] - before[c][0]) / total if total > 0 else 1.0
    return idle


def choose_threads(cpus: int | None = None, quota: float | None = None, idle: float | None = None) -> int:
    """Threads for torch: the CPUs we may use (affinity, cgroup quota), fewer when others keep some busy.
    Torch's intra-op threads wait for one another, so a thread on a busy core stalls all of them: with one of two
    cores busy, one thread ran MiniLM inference at 171 seq/s and two at 116 (issue 14)."""
    n = cpus if cpus is not None else len(allowed_cpus())
    if quota is not None:
        n = min(n, max(1, int(quota)))
    if idle is not None:
        n = min(n, max(1, int(idle + 0.5)))
    return max(1, n)


def training_threads() -> int:
    """Threads for fine-tuning: every CPU this process may use, whatever the load. A backward pass sums gradients
    in an order that depends on the thread count, so trained weights (and all that follows) would otherwise
    depend on how busy the machine was. Forward passes do not (inference and attribution gave identical bytes
    with 1 and 2 threads), so only they fall back to fewer threads."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return choose_threads(len(allowed_cpus()), cgroup_cpu_limit())


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to n for a block, then restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_threads() -> int:
    """Set torch's threads for this run's forward passes (OMP_NUM_THREADS, when set, wins) and silence per-load
    progress bars. Fine-tuning sets its own (training_threads)."""
    import torch
    from transformers.utils import logging as hf_logging

    from .progress import say

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()      # the "classifier.* MISSING" load report is expected before fine-tuning
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cpus = allowed_cpus()
    quota = cgroup_cpu_limit()
    idle = idle_cpus(cpus)
    n = choose_threads(len(cpus), quota, idle)
    torch.set_num_threads(n)
    say(f"threads: {n} (CPUs allowed {len(cpus)}, cgroup quota {quota if quota is not None else 'none'}, "
        f"idle now {'unknown' if idle is None else f'{idle:.1f}'})")
    return n


# ---- devices ----------------------------------------------------------------------------------------------------
def check_device(text: str) -> str:
    """The --device value, validated without importing torch."""
    from .errors import MSG_BAD_VALUE, InputError

    if not isinstance(text, str) or not DEVICE_PATTERN.match(text):
        raise InputError.make(MSG_BAD_VALUE, where="command line", field="--device", expected=DEVICE_CHOICES,
                              value=text)
    return text


def resolve_device(request: str = "auto"):
    """A torch.device: auto is CUDA when present, else the CPU; a device that is not there is a usage error."""
    import torch

    from .errors import InputError

    check_device(request)
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(request)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"command line: --device {request}: no CUDA device is available to this process "
                             "(torch.cuda.is_available() is False). Use --device cpu or auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"command line: --device {request}: there are {torch.cuda.device_count()} CUDA "
                             "device(s). Got an index past them.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"command line: --device {request}: MPS is not available here. Use --device cpu or auto.")
    return device


def autocast_dtype(device):
    """Mixed precision where the device supports it: bf16 on CUDA that has it, else fp16; none on the CPU, whose
    results stay exactly those of full precision."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def precision_tag(device) -> str | None:
    """What a device and its autocast add to cache keys: None on the CPU, so CPU keys are what they always were."""
    dtype = autocast_dtype(device)
    return None if dtype is None else f"{device.type}-{str(dtype).replace('torch.', '')}"
