"""A sweep's entries as Ray tasks: each entry is one ordinary audit run by sweep.run_entry in a worker, with a
resource request (CPUs; a GPU when the cluster has one), the base's evidence from the object store, and Ray's
retries for a worker that dies. Results come back as they finish, each reported as a progress line."""
from __future__ import annotations

from ..errors import ExitCode
from ..progress import say

MAX_RETRIES = 2          # a worker that dies (OOM kill, lost node) is retried this many times before its entry fails


def _entry_task(spec, entry, policy_path, output, sweep_dir, shared_evidence):
    from ..sweep import run_entry
    from ..testhook import die_once

    die_once()

    return run_entry(spec, entry, policy_path, output, sweep_dir, "ray", shared_evidence)


def run_entries_on_ray(spec, entries, policy_path, output, sweep_dir, payload: dict,
                       cpus_per_entry: float = 1.0) -> list[dict]:
    import ray

    from ..runtime import training_threads

    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    # Ray gives a task OMP_NUM_THREADS = its CPUs (1); fine-tuning's weights depend on the thread count, so the
    # workers get the count a local run on this machine trains with, and train the same model.
    env = {"env_vars": {"OMP_NUM_THREADS": str(training_threads())}}
    task = ray.remote(num_cpus=cpus_per_entry, num_gpus=gpus, max_retries=MAX_RETRIES, runtime_env=env)(_entry_task)
    shared = ray.put(payload)           # once in the object store, read by every entry's worker
    pending = {task.remote(spec, e, policy_path, output, sweep_dir, shared): e for e in entries}
    say(f"sweep: {len(entries)} Ray tasks submitted ({cpus_per_entry:g} CPU{', 1 GPU' if gpus else ''} each)")
    rows = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        entry = pending.pop(done[0])
        try:
            row = ray.get(done[0])
        except ray.exceptions.RayError as e:        # the task itself could not finish (after retries)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            row = {"entry": entry.label, "adapted": entry.adapted, "finetune_seed": entry.finetune_seed,
                   "run_dir": None, "exit_code": int(ExitCode.INTERNAL_ERROR), "verdict": None,
                   "error": f"Ray task failed after {MAX_RETRIES} retries: {type(e).__name__}: {first}"}
        from ..sweep import _say_row

        _say_row(row)
        rows.append(row)
    return rows
