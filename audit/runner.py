"""One audit run: spec -> data -> models -> evidence -> checks -> gate -> outputs (manifest last)."""
from __future__ import annotations

import datetime as dt
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .checks import CHECKS
from .data import load_dataset
from .executor import Executor
from .gate import gate
from .packaged import default_policy
from .policy import load_policy
from .progress import say
from .results import CheckResult, Status
from .spec import AuditSpec, parse_spec
from .stats import StatsConfig
from .testhook import pause_at


@dataclass
class RunOutcome:
    run_dir: Path
    results: dict
    exit_code: int


def new_run_dir(output: Path, name: str) -> Path:
    """A unique folder per run, so concurrent runs into one output folder never share files."""
    from .fileio import confined

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = confined(output, output / f"{name}-{stamp}-{secrets.token_hex(3)}", "name")
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def run_checks(spec: AuditSpec, evidence, models, stats: StatsConfig, timings: dict) -> list[CheckResult]:
    """Every check the spec names, in its order; only checks that declare `needs_models` get the models."""
    from .stream import COUNTS_CHECKS

    results = []
    for name, config in spec.checks.items():
        check = CHECKS[name]
        t = time.perf_counter()
        say(f"check {name}: running")
        # a streamed split: the counts checks read its cells (every row), the others its sample of rows
        evidence_for = evidence if name in COUNTS_CHECKS or evidence.rows_sample is None else evidence.rows_sample
        if check.needs_models:
            result = check.run(evidence_for, config, stats, models=models)
        else:
            result = check.run(evidence_for, config, stats)
        timings.setdefault("checks_s", {})[name] = round(time.perf_counter() - t, 3)
        if "seconds" in result.cost:
            timings[f"{name}_s"] = result.cost["seconds"]
        if "quality_seconds" in result.cost:                  # attribution's infidelity / sensitivity share
            timings[f"{name}_quality_s"] = result.cost["quality_seconds"]
        results.append(result)
    return results


def run_audit(spec: str | Path | AuditSpec, policy_path: str | Path | None = None, out: str | Path | None = None,
              allow_pickle: bool = False, today: dt.date | None = None, signer=None, device: str = "auto",
              frames: dict | None = None, policy=None, executor: Executor = Executor.LOCAL,
              address: str | None = None) -> RunOutcome:
    """One audit; signer (signing.load_signer) signs attestation.intoto.json, which is written either way.
    `spec` is a spec file or a parsed AuditSpec; `frames` the DataFrames of splits a dict spec leaves out;
    `policy` an already parsed Policy (else policy_path, the spec's policy, or the shipped default); `device` a
    --device value; executor RAY runs the forward passes on Ray (at `address`, or a local instance)."""
    from .runtime import check_device

    check_device(device)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    if policy_path is not None and not Path(policy_path).is_file():
        from .errors import MSG_MISSING_FILE, InputError

        raise InputError.make(MSG_MISSING_FILE, where="command line", field="--policy", value=str(policy_path))
    if not isinstance(spec, AuditSpec):
        spec = parse_spec(spec)
    if allow_pickle:
        from dataclasses import replace

        spec = replace(spec, model=replace(spec.model, allow_pickle=True))
    if executor is Executor.LOCAL:
        if address is not None:
            from .errors import InputError

            raise InputError(f"command line: --address {address!r} needs --executor ray.")
        return run_parsed(spec, policy_path, out, today, signer, started=started, t0=t0, device=device,
                          frames=frames, policy=policy)
    from .distributed.ray_forward import RayForward
    from .distributed.ray_runtime import ray_session
    from .tasks import modality_for

    RayForward.supports(modality_for(spec, device))     # before Ray starts: an image spec or a GPU is a usage error
    with ray_session(address):
        return run_parsed(spec, policy_path, out, today, signer, executor=executor.value, started=started, t0=t0,
                          device=device, frames=frames, policy=policy, forward_on_ray=True)


def run_parsed(spec: AuditSpec, policy_path=None, out=None, today: dt.date | None = None, signer=None,
               run_parent: Path | None = None, executor: str = "local", started=None, t0=None, device: str = "auto",
               frames: dict | None = None, policy=None, forward_on_ray: bool = False) -> RunOutcome:
    """One audit of a parsed spec (a sweep entry's spec, too). The cache lives under the output folder;
    run_parent (default: the output folder) is where the run folder goes; executor goes to manifest.json. The
    Hugging Face offline switches hold for the run and are restored after it. forward_on_ray: the forward passes
    run on the connected Ray cluster (distributed.ray_forward)."""
    from .runtime import offline

    with offline():
        return _run(spec, policy_path, out, today, signer, run_parent, executor, started, t0, device, frames, policy,
                    forward_on_ray)


def _run(spec, policy_path, out, today, signer, run_parent, executor, started, t0, device, frames, policy,
         forward_on_ray):
    from .evidence import build_evidence
    from .fileio import output_folder
    from .outputs import assemble_results, write_outputs
    from .runtime import resolve_device
    from .tasks import modality_for

    started = started or dt.datetime.now(dt.timezone.utc)
    t0 = t0 if t0 is not None else time.perf_counter()
    timings: dict = {"executor": executor}
    if policy is None:
        policy = load_policy(Path(policy_path) if policy_path else (spec.policy or default_policy()))
    output = (output_folder(Path(out).resolve(), "command line", "--out") if out
              else output_folder(spec.output, spec.where, "output"))
    cache_root = output / ".cache"
    resolve_device(device)      # a device that is not there is a usage error before any data or model is read
    modality = modality_for(spec, device)
    base_dir = spec.source_file.parent if spec.source_file is not None else None
    pause_at("data")
    streamed = None
    if spec.data.current.stream:
        from .stream import sample_split

        sample, total, files = sample_split(spec.data.current, spec.data, spec.seed, spec.where)
        frames, streamed = dict(frames or {}, current=sample), (files, total)
    dataset = load_dataset(spec.data, spec.seed, spec.where, modality, frames, base_dir)
    pause_at("models")
    models, model_info = modality.prepare_models(spec, dataset, cache_root, timings)
    stats = policy.defaults.stats
    forward = None
    if forward_on_ray:
        from .distributed.ray_forward import RayForward

        forward = RayForward(model_info, dataset.n_classes, spec.model.allow_pickle, spec.where)
    pause_at("evidence")
    evidence, models = build_evidence(dataset, models, model_info, cache_root, spec.seed, stats.seed, timings,
                                      forward)
    if streamed is not None:
        from .stream import stream_evidence

        evidence = stream_evidence(evidence, models, spec, *streamed, on_ray=forward_on_ray, timings=timings,
                                   model_info=model_info)
    pause_at("checks")
    check_results = run_checks(spec, evidence, models, stats, timings)
    measurements = [m for r in check_results for m in r.measurements]
    today = today or dt.date.today()
    ran = {r.check for r in check_results if r.status is not Status.SKIPPED}
    why_not = {r.check: r.notes[0] for r in check_results if r.status is Status.SKIPPED and r.notes}
    decision = gate(measurements, ran, policy, today, missing=why_not)
    results = assemble_results(spec, policy, dataset, evidence, models, model_info, check_results, decision, today)
    pause_at("outputs")
    run_dir = new_run_dir(run_parent or output, spec.name)
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    write_outputs(run_dir, results, spec, policy, dataset, model_info, timings, started, signer)
    return RunOutcome(run_dir, results, int(decision.exit_code))
