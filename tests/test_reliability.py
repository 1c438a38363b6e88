"""Kill -9 at random points, Ctrl-C and SIGTERM, concurrent runs, tamper evidence, opt-in pickle."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transfer_audit.outputs import verify_run

from conftest import adult_spec, write_spec

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {"performance": {}, "bias": {"counterfactual_samples": 10}, "transfer": {"cv_folds": 3}}


def _spec(folder: Path, tiny: Path, out: Path) -> Path:
    return write_spec(folder, adult_spec(str(tiny), out, checks=CHECKS))


def _start(spec: Path, *extra) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "transfer_audit", "run", str(spec), *extra], cwd=ROOT, env=env,
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
    rng = random.Random(0)
    kills = 0
    while kills < 20:
        proc = _start(spec)
        time.sleep(rng.uniform(0.3, 9.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        _assert_nothing_half_written(tmp_path / "k" / "runs")
    final = subprocess.run([sys.executable, "-m", "transfer_audit", "run", str(spec)], cwd=ROOT, capture_output=True, text=True)
    assert final.returncode in (0, 1, 4), final.stderr[-2000:]
    complete = [r for r in _run_folders(tmp_path / "k" / "runs") if (r / "manifest.json").exists()]
    assert complete and all((r / "results.json").read_bytes() == expected for r in complete)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_quickly_and_says_how_to_resume(tiny_bert, tmp_path, sig, code):
    proc = _start(_spec(tmp_path, tiny_bert, tmp_path / "runs"))
    deadline = time.time() + 60
    while time.time() < deadline:          # wait until real work (data + models) has started
        time.sleep(0.5)
        if any(p.name == "models" for p in (tmp_path / "runs" / ".cache").glob("*")) or proc.poll() is not None:
            break
    time.sleep(0.5)
    sent = time.time()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.time() - sent < 5.0
    assert proc.returncode == code, err[-1000:]
    assert "Run the same command again to resume" in err and "Traceback" not in err


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
