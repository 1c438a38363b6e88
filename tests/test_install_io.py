"""Issue 14 without models: YAML 1.2 numbers, malformed inputs that used to crash, output file modes, junit.xml
that CI can parse, nothing changed at import, threads from the CPUs we may use, device names."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from transfer_audit.cli import main
from transfer_audit.errors import AuditError, InputError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent


# ---- YAML 1.2 numbers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("2e-5", 2e-5), ("1E3", 1000.0), (".5", 0.5), ("-1.5e+2", -150.0),
                                         ("1.0e-4", 1e-4), ("+.5E-1", 0.05), ("7", 7), ("'2e-5'", "2e-5"),
                                         ("1e", "1e"), ("e5", "e5")])
def test_yaml_numbers_follow_yaml_1_2(tmp_path, text, value):
    from transfer_audit.yamlio import load_yaml_file

    path = tmp_path / "x.yaml"
    path.write_text(f"a: {text}\n")
    got = load_yaml_file(path, "test")["a"]
    assert got == value and type(got) is type(value)


def test_spec_learning_rate_written_as_2e_5(tmp_path):
    from transfer_audit.spec import parse_spec

    spec = tmp_path / "audit.yaml"
    spec.write_text((ROOT / "examples" / "adult-income" / "audit.yaml").read_text()
                    .replace("learning_rate: 1.0e-4", "learning_rate: 2e-5")
                    .replace("../../policies/default.yaml", str(ROOT / "policies" / "default.yaml")))
    assert parse_spec(spec).model.finetune.learning_rate == 2e-5


# ---- malformed inputs that ended in exit 5 ----------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"name: x\n\x00\x01\x02binary", b"\x7fELF\x02\x01\x01\x00\x00",
                                     b"model:\n  base: \x1b[31m\n"])
def test_binary_spec_is_a_usage_error_naming_the_file(tmp_path, capsys, content):
    spec = tmp_path / "audit.yaml"
    spec.write_bytes(content)
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and "internal error" not in err and "Traceback" not in err


def test_out_naming_an_existing_file_is_a_usage_error(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    spec = ROOT / "examples" / "adult-income" / "audit.yaml"
    for args in (["run", str(spec), "--out", str(taken)], ["run", str(spec), "--out", str(taken / "sub")],
                 ["render", str(FIXTURES / "results" / "pass.json"), "--out", str(taken)]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "--out" in err and str(taken) in err and "internal error" not in err


# ---- outputs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_outputs_are_written_like_open_would(tmp_path, umask, mode):
    from transfer_audit.fileio import atomic_write_text

    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "report.html", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_rendered_artifacts_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["render", str(FIXTURES / "results" / "pass.json"), "--out", str(tmp_path)]) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_private_key_is_never_world_readable(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k.pub").stat().st_mode & 0o777 == 0o644


def test_junit_survives_control_characters_in_names():
    from transfer_audit.render.writer import render_one

    results = json.loads((FIXTURES / "results" / "pass.json").read_text())
    hostile = copy.deepcopy(results)
    for r in hostile["gate"]["rules"]:
        r["id"] = "rule\x01\x0b\x1b[31m" + r["id"]
        r["reason"] = "a\x00b\ufffe"
        if r.get("group"):
            r["group"] = dict.fromkeys(r["group"], "NA\x08")
    hostile["audit"]["name"] = "audit\x0c"
    text = render_one("junit.xml", hostile)
    root = ET.fromstring(text.encode())                 # parseable by CI
    ids = [c.get("name") for c in root.iter("testcase")]
    assert ids and all(n.startswith("rule\ufffd\ufffd\ufffd[31m") for n in ids)


# ---- nothing happens at import -----------------------------------------------------------------------------------
def test_import_changes_no_environment():
    code = ("import os; before = dict(os.environ); import transfer_audit, transfer_audit.cli, transfer_audit.api, "
            "transfer_audit.runner, transfer_audit.models.loading, transfer_audit.tables; "
            "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
            "import sys; assert 'torch' not in sys.modules, 'torch imported at import'")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_offline_switches_hold_for_a_run_only(monkeypatch):
    from transfer_audit.runtime import OFFLINE_VARS, offline

    for k in OFFLINE_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")          # the user's own setting is kept
    with offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "0"
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"


# ---- threads ----------------------------------------------------------------------------------------------------
def test_threads_follow_affinity_quota_and_idle_cores():
    from transfer_audit.runtime import choose_threads

    assert choose_threads(cpus=2) == 2
    assert choose_threads(cpus=2, idle=1.0) == 1            # one core busy: one thread (issue 14's 171 vs 116 seq/s)
    assert choose_threads(cpus=8, quota=2.5, idle=7.9) == 2
    assert choose_threads(cpus=4, idle=0.1) == 1            # never zero
    assert choose_threads(cpus=4, idle=2.6) == 3


def test_cgroup_quota_is_read_for_v2_and_v1(tmp_path):
    from transfer_audit.runtime import cgroup_cpu_limit

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(str(tmp_path)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(str(v1)) == 3.0
    assert cgroup_cpu_limit(str(tmp_path / "absent")) is None


def test_idle_cores_from_proc_stat(tmp_path):
    from transfer_audit.runtime import _cpu_times, idle_between

    def stat(rows):
        text = "cpu 0 0 0 0 0 0 0 0\n" + "".join(f"cpu{i} {u} 0 {s} {idle} 0 0 0 0\n" for i, (u, s, idle) in
                                                 enumerate(rows))
        path = tmp_path / "stat"
        path.write_text(text)
        return _cpu_times(str(path))

    before = stat([(100, 0, 100), (100, 0, 100)])
    after = stat([(200, 0, 100), (100, 0, 200)])           # cpu0 fully busy, cpu1 fully idle
    assert idle_between(before, after, [0, 1]) == pytest.approx(1.0)
    assert idle_between(before, after, [1]) == pytest.approx(1.0)
    assert idle_between(before, after, [0]) == pytest.approx(0.0)


# ---- devices ----------------------------------------------------------------------------------------------------
def test_device_names_are_checked_before_any_work(tmp_path, capsys):
    from transfer_audit.runtime import check_device

    for ok in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert check_device(ok) == ok
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(InputError):
            check_device(bad)
    spec = ROOT / "examples" / "adult-income" / "audit.yaml"
    assert main(["run", str(spec), "--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "--device" in capsys.readouterr().err


def test_cpu_device_is_plain_full_precision():
    import torch

    from transfer_audit.runtime import autocast_dtype, precision_tag, resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert autocast_dtype(torch.device("cpu")) is None and precision_tag(torch.device("cpu")) is None
    if torch.cuda.is_available():
        assert precision_tag(torch.device("cuda")) in ("cuda-bfloat16", "cuda-float16")
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(AuditError, match="no CUDA device"):
            resolve_device("cuda:0")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_usage_error_before_any_work(tmp_path, monkeypatch, capsys):
    """--device cuda where torch sees no GPU: exit 2 with one sentence, before data or models are read."""
    import transfer_audit.runner as runner

    def too_late(*a, **k):
        raise AssertionError("data was read before the device was checked")

    monkeypatch.setattr(runner, "load_dataset", too_late)
    spec = ROOT / "examples" / "adult-income" / "audit.yaml"
    for device in ("cuda", "cuda:0"):
        assert main(["run", str(spec), "--device", device, "--out", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err
        assert f"--device {device}: no CUDA device is available" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / ".cache").exists()


def test_card_names_datasets_without_folders():
    from transfer_audit.render.card import front_matter

    results = json.loads((FIXTURES / "results" / "pass.json").read_text())
    results["data"]["train"]["source"] = "hf:org/reviews@main/default/train"
    leaky = "/home/alice/secret-project/data/ref.parquet"
    results["data"]["reference"] = dict(results["data"]["current"], source=leaky)
    results["data"]["current"]["source"] = "data/current.csv.gz"
    results["models"]["base"]["hub_id"] = "sentence-transformers/all-MiniLM-L6-v2"
    card = front_matter(results)
    assert "/home/alice" not in card and "secret-project" not in card
    assert "- org/reviews\n" in card and "- ref\n" in card and "- current.csv\n" in card
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card


def test_busy_machine_changes_speed_never_results(tiny_bert, tmp_path, monkeypatch):
    """Forward passes give the same bytes with 1 and 2 threads, so they may fall back to fewer threads when the
    machine is busy; fine-tuning's backward pass does not, so it always uses every allowed CPU."""
    import numpy as np
    import torch

    import transfer_audit.runtime as runtime
    from transfer_audit.models.finetune import finetune
    from transfer_audit.models.loading import load_encoder, load_tokenizer
    from transfer_audit.spec import FinetuneSpec
    from transfer_audit.tasks.text_inference import forward_split

    model, tok = load_encoder(tiny_bert), load_tokenizer(tiny_bert)
    texts = [f"{i} year old person works {i % 7} hours as a clerk in the city" for i in range(40)]
    outs = []
    for n in (1, 2):
        with runtime.torch_threads(n):
            outs.append(forward_split(model, tok, texts, 32, False, layer_rows=8)["pooled"].tobytes())
    assert outs[0] == outs[1]

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "idle_cpus", lambda cpus, *a, **k: 0.0)       # every core busy
    monkeypatch.setattr(runtime, "allowed_cpus", lambda: [0, 1])
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda root="": None)
    assert runtime.set_threads() == 1 and torch.get_num_threads() == 1
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(torch.get_num_threads())
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    finetune(tiny_bert, tok, texts, np.arange(40) % 2, ("a", "b"), FinetuneSpec(batch_size=16, max_length=32), 0,
             tmp_path, "key")
    assert seen and set(seen) == {2} and torch.get_num_threads() == 1      # restored for inference afterwards
