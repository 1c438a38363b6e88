"""`transfer-audit sweep`: one ordinary audit per entry (adapted model or fine-tuning seed), the base model's
evidence computed once and shared, then a summary table sorted by the gate with the entry to ship.

An entry that fails is that entry's error (its exit code in the summary), never a lost sweep. The sweep folder
holds every entry's run folder and sweep.json + sweep.html, written last (sweep.json is the commit marker).
"""
from __future__ import annotations

import datetime as dt
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .errors import AuditError, ExitCode, InputError
from .executor import Executor
from .progress import say
from .sweep_plan import SweepEntry, entry_spec, plan_entries

SWEEP_JSON, SWEEP_HTML = "sweep.json", "sweep.html"
KEY_METRICS = ("performance.macro_f1", "performance.accuracy", "performance.roc_auc")
VERDICT_RANK = {"PASS": 0, "WARN": 1, "INCONCLUSIVE": 2, "FAIL": 3}       # entries that did not run rank last


@dataclass
class SweepOutcome:
    folder: Path
    summary: dict
    exit_code: int


def run_entry(spec, entry: SweepEntry, policy_path, output: Path, sweep_dir: Path, executor: str,
              shared_evidence: dict | None = None) -> dict:
    """One entry's audit as a plain dict (it crosses process boundaries); every failure becomes the entry's
    error with its exit code, so one bad entry never loses the sweep."""
    from .runner import run_parsed

    t = time.perf_counter()
    row = {"entry": entry.label, "adapted": entry.adapted, "finetune_seed": entry.finetune_seed}
    try:
        if shared_evidence:
            from .sweep_shared import seed_cache

            seed_cache(output / ".cache", shared_evidence)
        outcome = run_parsed(entry_spec(spec, entry), policy_path, output, run_parent=sweep_dir, executor=executor)
        row.update(run_dir=outcome.run_dir.name, exit_code=outcome.exit_code, error=None,
                   **summarize_results(outcome.results))
    except AuditError as e:
        row.update(run_dir=None, exit_code=int(e.exit_code), error=e.message, verdict=None)
    except Exception as e:  # a bug in one entry: report it there, keep the others
        row.update(run_dir=None, exit_code=int(ExitCode.INTERNAL_ERROR), verdict=None,
                   error=f"internal error: {type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
    row["seconds"] = round(time.perf_counter() - t, 2)
    return row


def summarize_results(results: dict) -> dict:
    """The verdict, rule counts and the adapted model's key metrics with their intervals."""
    metrics = {}
    for m in results["measurements"]:
        if m["model"] == "adapted" and "group" not in m and m["metric"] in KEY_METRICS:
            metrics[m["metric"]] = {"value": m["value"], "ci": m.get("ci"), "n": m.get("n")}
    gate = results["gate"]
    blocking = [r["id"] for r in gate["rules"] if r["status"] in ("FAIL", "INCONCLUSIVE") and r["severity"] == "block"]
    return {"verdict": gate["verdict"], "counts": gate["counts"], "metrics": metrics,
            "blocking_rules": sorted(set(blocking))}


def _sort_key(row: dict):
    rank = VERDICT_RANK.get(row.get("verdict"), len(VERDICT_RANK))
    key = next((row["metrics"][m]["value"] for m in KEY_METRICS if m in row.get("metrics", {})
                and row["metrics"][m]["value"] is not None), None)
    return (rank, -(key if key is not None else float("-inf")), row["entry"])


def sweep_exit_code(rows: list[dict]) -> int:
    """The worst entry error (5 internal > 3 unsafe > 2 input) if any entry did not run; otherwise 0 when some
    entry can ship (PASS or WARN), 4 when the best is INCONCLUSIVE, 1 when every entry failed the gate."""
    errors = [r["exit_code"] for r in rows if r.get("verdict") is None]
    for code in (ExitCode.INTERNAL_ERROR, ExitCode.UNSAFE_ARTIFACT, ExitCode.INPUT_ERROR):
        if int(code) in errors:
            return int(code)
    if errors:
        return max(errors)
    best = min(VERDICT_RANK[r["verdict"]] for r in rows)
    return 0 if best <= VERDICT_RANK["WARN"] else int(ExitCode.INCONCLUSIVE if best == 2 else ExitCode.POLICY_FAILED)


def build_summary(spec, rows: list[dict], executor: str, started: dt.datetime, seconds: float,
                  shared: dict) -> dict:
    rows = sorted(rows, key=_sort_key)
    ship = next((r["entry"] for r in rows if r.get("verdict") in ("PASS", "WARN")), None)
    return {"sweep": spec.name, "executor": executor, "started": started.isoformat(timespec="seconds"),
            "seconds": round(seconds, 2), "entries": rows, "ship": ship,
            "ship_reason": ("the best-ranked entry the gate lets through (PASS, then WARN; ties broken by "
                            f"{KEY_METRICS[0]})") if ship else "no entry passed the gate: ship none",
            "shared_evidence": shared, "exit_code": sweep_exit_code(rows), "key_metrics": list(KEY_METRICS)}


def write_summary(folder: Path, summary: dict) -> None:
    from .fileio import atomic_write_json, atomic_write_text
    from .render.environment import html_env
    from .results import clean

    atomic_write_text(folder / SWEEP_HTML, html_env().get_template("sweep.html.j2").render(s=summary))
    atomic_write_json(folder / SWEEP_JSON, clean(summary))      # last: the sweep's commit marker


def run_sweep(spec_path, cli_adapted=(), executor: Executor = Executor.LOCAL, address: str | None = None,
              policy_path=None, out=None, cpus_per_entry: float = 1.0) -> SweepOutcome:
    """Validate everything cheap first (spec, entries, Ray address, data), so bad input writes nothing."""
    from .spec import parse_spec

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    if policy_path is not None and not Path(policy_path).is_file():
        from .errors import MSG_MISSING_FILE

        raise InputError.make(MSG_MISSING_FILE, where="command line", field="--policy", value=str(policy_path))
    spec = parse_spec(spec_path)
    entries = plan_entries(spec, cli_adapted)
    output = Path(out).resolve() if out else spec.output
    ray_started = False
    if executor is Executor.RAY:
        from .distributed.ray_runtime import connect

        ray_started = connect(address)
    elif address is not None:
        raise InputError(f"command line: --address {address!r} needs --executor ray.")
    try:
        return _sweep(spec, entries, executor, policy_path, output, cpus_per_entry, started, t0)
    finally:
        if ray_started:
            import ray

            ray.shutdown()


def _sweep(spec, entries, executor: Executor, policy_path, output: Path, cpus_per_entry: float, started, t0):
    from .runner import new_run_dir
    from .sweep_shared import shared_base_evidence

    shared = shared_base_evidence(spec, output / ".cache")     # data errors surface here, before any folder
    say(f"sweep {spec.name}: {len(entries)} entries on the {executor.value} executor; base evidence shared "
        f"({shared['files']} splits, computed {'now' if shared['computed'] else 'earlier (cache)'})")
    sweep_dir = new_run_dir(output, f"{spec.name}-sweep")
    if executor is Executor.RAY:
        from .distributed.ray_sweep import run_entries_on_ray

        rows = run_entries_on_ray(spec, entries, policy_path, output, sweep_dir, shared.pop("payload"),
                                  cpus_per_entry)
    else:
        shared.pop("payload")
        rows = []
        for i, entry in enumerate(entries, 1):
            say(f"sweep entry {i}/{len(entries)}: {entry.label}")
            rows.append(run_entry(spec, entry, policy_path, output, sweep_dir, executor.value))
            _say_row(rows[-1])
    summary = build_summary(spec, rows, executor.value, started, time.perf_counter() - t0, shared)
    write_summary(sweep_dir, summary)
    return SweepOutcome(sweep_dir, summary, summary["exit_code"])


def _say_row(row: dict) -> None:
    if row.get("verdict") is None:
        say(f"sweep entry {row['entry']}: error (exit {row['exit_code']}): {row['error']}")
    else:
        say(f"sweep entry {row['entry']}: {row['verdict']} in {row['seconds']} s")
