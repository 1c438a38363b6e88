"""Kill -9 at random points, Ctrl-C and SIGTERM, concurrent runs, tamper evidence, opt-in pickle."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import adult_spec, write_spec

from transfer_audit.outputs import verify_run

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {"performance": {}, "bias": {"counterfactual_samples": 10}, "transfer": {"cv_folds": 3}}


def _spec(folder: Path, tiny: Path, out: Path) -> Path:
    return write_spec(folder, adult_spec(str(tiny), out, checks=CHECKS))


# `python -m transfer_audit` with Ctrl-C handled as in a terminal: a CI job started in the background inherits
# SIGINT ignored (POSIX shells do that to background jobs), and Python then installs no KeyboardInterrupt handler.
MAIN_WITH_CTRL_C = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                    "sys.argv[0] = 'transfer-audit'; runpy.run_module('transfer_audit', run_name='__main__')")


def _start(spec: Path, *extra, env_extra: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-c", MAIN_WITH_CTRL_C, "run", str(spec), *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_folders(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) if out.exists() else []


def _assert_nothing_half_written(out: Path) -> None:
    for run in _run_folders(out):
        if (run / "manifest.json").exists():
            assert verify_run(run) == [], run          # a folder that claims completeness is complete
        for f in run.iterdir():
            if not f.name.startswith("."):
                json.loads(f.read_text()) if f.suffix == ".json" else f.read_bytes()
    for f in (out / ".cache").rglob("*") if (out / ".cache").exists() else []:
        if f.is_file() and f.suffix == ".npz" and not f.name.startswith("."):
            import numpy as np

            with np.load(f, allow_pickle=False) as z:   # every visible cache entry is whole
                list(z.files)


def test_kill_at_random_points_then_resume_identically(tiny_bert, tmp_path):
    reference = subprocess.run([sys.executable, "-m", "transfer_audit", "run",
                                str(_spec(tmp_path / "ref", tiny_bert, tmp_path / "ref" / "runs"))],
                               cwd=ROOT, capture_output=True, text=True)
    assert reference.returncode in (0, 1, 4), reference.stderr[-2000:]
    (ref_run,) = _run_folders(tmp_path / "ref" / "runs")
    expected = (ref_run / "results.json").read_bytes()
    spec = _spec(tmp_path / "k", tiny_bert, tmp_path / "k" / "runs")
    # Each attempt is killed right after it reports its i-th step (i random): at a point of the run's own progress,
    # not after a guessed delay, which a busy machine would turn into "before it started" or "after it finished".
    # Later attempts resume from the cache and report fewer steps: i is drawn below the last complete run's count.
    rng = random.Random(0)
    steps, kills = reference.stderr.count("\n"), 0
    while kills < 20:
        proc = _start(spec)
        kill_after, seen = rng.randint(1, max(1, steps - 1)), 0
        for seen, _ in enumerate(proc.stderr, 1):     # blocking reads: no sleeping
            if seen >= kill_after:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
        else:
            steps = min(steps, seen)            # it finished first: a resumed run reports fewer steps
        proc.communicate()
        _assert_nothing_half_written(tmp_path / "k" / "runs")
    final = subprocess.run([sys.executable, "-m", "transfer_audit", "run", str(spec)], cwd=ROOT, capture_output=True,
                           text=True)
    assert final.returncode in (0, 1, 4), final.stderr[-2000:]
    complete = [r for r in _run_folders(tmp_path / "k" / "runs") if (r / "manifest.json").exists()]
    assert complete and all((r / "results.json").read_bytes() == expected for r in complete)


def _wait_for_pause(proc: subprocess.Popen, stage: str) -> list[str]:
    """Read stderr until the test hook says the run waits at `stage` (a blocking read: no sleeping)."""
    import threading

    seen = []
    watchdog = threading.Timer(900, proc.kill)      # a run that never says it paused fails instead of hanging
    watchdog.start()
    try:
        for line in proc.stderr:
            seen.append(line)
            if f"test hook: paused at {stage}" in line:
                return seen
    finally:
        watchdog.cancel()
    raise AssertionError(f"the run ended (exit {proc.wait()}) before reaching {stage!r}: {''.join(seen)[-2000:]}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; a zombie still has it until it is reaped)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _finish(proc: subprocess.Popen) -> tuple[str, float]:
    """stderr to its end, and the CPU seconds the process used in all, read before it is reaped."""
    import threading

    watchdog = threading.Timer(600, proc.kill)      # a hung run fails the test instead of hanging it
    watchdog.start()
    try:
        err = proc.stderr.read()
        proc.stdout.read()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        cpu = _cpu_seconds(proc.pid)
        proc.wait()
    finally:
        watchdog.cancel()
    return err, cpu


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_quickly_and_says_how_to_resume(tiny_bert, tmp_path, sig, code):
    """The run waits at the evidence stage (models loaded, handler installed) through the documented test hook
    (docs/testing.md), so the signal always lands mid-run whatever the load on the machine. 'Quickly' is
    measured as CPU time after the signal, which a busy machine does not inflate as it does wall time."""
    from transfer_audit.testhook import ENV

    proc = _start(_spec(tmp_path, tiny_bert, tmp_path / "runs"),
                  env_extra={ENV: f"evidence:{tmp_path / 'never-released'}"})
    before = _wait_for_pause(proc, "evidence")
    cpu_at_signal = _cpu_seconds(proc.pid)
    proc.send_signal(sig)
    err, cpu_at_exit = _finish(proc)
    assert proc.returncode == code, err[-1000:]
    assert cpu_at_exit - cpu_at_signal < 5.0, (cpu_at_signal, cpu_at_exit)
    assert "Run the same command again to resume" in err and "Traceback" not in "".join(before) + err
    assert "check " not in err and "model on " not in err          # no later stage started
    assert not any((p / "manifest.json").exists() for p in _run_folders(tmp_path / "runs"))


def test_pause_hook_releases_the_run_when_its_file_appears(tiny_bert, tmp_path):
    from transfer_audit.testhook import ENV

    release = tmp_path / "go"
    proc = _start(_spec(tmp_path, tiny_bert, tmp_path / "runs"), env_extra={ENV: f"outputs:{release}"})
    _wait_for_pause(proc, "outputs")
    assert _run_folders(tmp_path / "runs") == []          # paused before any output exists
    release.touch()
    err, _ = _finish(proc)
    assert proc.returncode in (0, 1, 4), err[-1000:]
    (run,) = _run_folders(tmp_path / "runs")
    assert verify_run(run) == []


def test_two_runs_into_one_output_folder(tiny_bert, tmp_path):
    spec = _spec(tmp_path, tiny_bert, tmp_path / "runs")
    a, b = _start(spec), _start(spec)
    (_, ea), (_, eb) = a.communicate(timeout=300), b.communicate(timeout=300)
    assert a.returncode in (0, 1, 4) and b.returncode in (0, 1, 4), ea[-1000:] + eb[-1000:]
    runs = _run_folders(tmp_path / "runs")
    assert len(runs) == 2 and all(verify_run(r) == [] for r in runs)
    assert (runs[0] / "results.json").read_bytes() == (runs[1] / "results.json").read_bytes()


def test_verify_detects_changed_policy_data_and_model(tiny_bert, tmp_path):
    import shutil

    from transfer_audit.runner import run_audit

    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    policy = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "policies" / "default.yaml", policy)
    data = tmp_path / "cur.csv"
    from transfer_audit.builtin_data import load_builtin

    load_builtin("adult", "test").head(200).to_csv(data, index=False)
    spec = adult_spec(str(model), tmp_path / "runs", checks={"performance": {}}, policy=str(policy))
    spec["data"]["current"] = {"path": str(data)}
    run = run_audit(write_spec(tmp_path, spec)).run_dir
    assert verify_run(run) == []
    for path, what in ((policy, "policy"), (data, "data.current"), (model / "config.json", "model.base")):
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert any(what in p for p in verify_run(run)), what
        path.write_bytes(original)
    assert verify_run(run) == []


def test_allow_pickle_loads_weights_only_and_marks_the_verdict(tiny_bert, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from transfer_audit.cli import main

    folder = tmp_path / "pickled"
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    folder.mkdir()
    model.config.save_pretrained(str(folder))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")        # a legacy pickle checkpoint
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (folder / name).write_bytes((tiny_bert / name).read_bytes())
    assert (folder / "pytorch_model.bin").exists() and not list(folder.glob("*.safetensors"))
    spec = adult_spec(str(tiny_bert), tmp_path / "runs", checks={"performance": {}})
    spec["model"]["adapted"] = str(folder)
    path = write_spec(tmp_path, spec)
    assert main(["run", str(path)]) == 3                        # refused by default
    assert main(["run", str(path), "--allow-pickle"]) in (0, 1, 4)
    (run,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    results = json.loads((run / "results.json").read_text())
    assert results["gate"]["unsafe_input_accepted"] is True
    assert "UNSAFE INPUT ACCEPTED" in (run / "report.html").read_text()


def test_old_torch_and_forced_pickle_env_are_refused(monkeypatch, tiny_bert):
    import torch

    from transfer_audit.errors import UnsafeArtifactError
    from transfer_audit.models.loading import require_safe_torch
    from transfer_audit.models.safety import check_model_dir

    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(UnsafeArtifactError, match="CVE-2025-32434"):
        require_safe_torch()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeArtifactError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        check_model_dir(tiny_bert, False, "model.base")


def test_symlink_in_a_model_folder_is_refused(tiny_bert, tmp_path, capsys):
    import shutil

    from transfer_audit.cli import main

    folder = tmp_path / "linked"
    shutil.copytree(tiny_bert, folder)
    (folder / "extra.json").symlink_to("/etc/passwd")
    spec = adult_spec(str(tiny_bert), tmp_path / "runs", checks={"performance": {}})
    spec["model"]["adapted"] = str(folder)
    assert main(["run", str(write_spec(tmp_path, spec))]) == 3
    err = capsys.readouterr().err
    assert "symbolic link" in err and "extra.json" in err and "Traceback" not in err


def test_pause_hook_waits_until_its_file_exists(monkeypatch, tmp_path, capsys):
    """In-process and clock-free: each poll is counted, and the third one creates the file."""
    from transfer_audit import testhook
    from transfer_audit.errors import InputError

    release = tmp_path / "go"
    polls = []

    def poll(seconds):
        polls.append(seconds)
        if len(polls) == 3:
            release.touch()

    monkeypatch.setattr(testhook.time, "sleep", poll)
    monkeypatch.setenv(testhook.ENV, f"checks:{release}")
    testhook.pause_at("evidence")                       # another stage: no wait, no line
    assert polls == [] and capsys.readouterr().err == ""
    testhook.pause_at("checks")
    assert len(polls) == 3 and "test hook: paused at checks" in capsys.readouterr().err
    monkeypatch.setenv(testhook.ENV, "evidnce:/tmp/x")
    with pytest.raises(InputError, match="STAGE:FILE"):
        testhook.pause_at("checks")
