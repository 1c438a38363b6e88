"""transfer-audit run --executor ray: the forward passes run on Ray Data actors and results.json is byte-identical
to the local executor's, with the same forward-cache entries holding the same arrays; a Ray address that does
not answer is one sentence, exit 2, nothing written."""
from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import adult_spec, write_spec

from transfer_audit.cli import main


def small_spec(base: Path, out: Path) -> dict:
    # drift reads the embeddings, transfer the per-layer states (CKA) and the probe: every forward output matters
    spec = adult_spec(str(base), out, checks={"performance": {}, "drift": {"permutations": 200,
                                                                           "evidently_embeddings": False},
                                              "transfer": {"cv_folds": 3}})
    spec["data"]["train"]["sample"] = 130
    spec["data"]["reference"].update(sample=90, skip=130)
    spec["data"]["current"]["sample"] = 90
    return spec


def run_folder(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


def cached_arrays(out: Path) -> dict:
    arrays = {}
    for path in sorted((out / ".cache" / "evidence").glob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            arrays[path.name] = {k: z[k] for k in z.files}
    return arrays


def test_run_on_ray_writes_the_same_results_json_as_local(tiny_bert, tmp_path):
    ray = pytest.importorskip("ray")
    from transfer_audit.distributed.ray_runtime import init_kwargs
    from transfer_audit.executor import Executor
    from transfer_audit.runner import run_audit

    spec = write_spec(tmp_path, small_spec(tiny_bert, tmp_path / "local"))
    run_audit(spec)
    # the fine-tuned weights are copied (training again would only cost time); every forward pass runs again
    shutil.copytree(tmp_path / "local" / ".cache" / "models", tmp_path / "ray" / ".cache" / "models")
    ray.init(num_cpus=2, **init_kwargs())
    try:
        run_audit(spec, out=tmp_path / "ray", executor=Executor.RAY)
    finally:
        ray.shutdown()
    local, on_ray = run_folder(tmp_path / "local"), run_folder(tmp_path / "ray")
    manifests = [json.loads((f / "manifest.json").read_text()) for f in (local, on_ray)]
    assert [m["timings"]["executor"] for m in manifests] == ["local", "ray"]
    # base on 3 splits and adapted on 2, computed (not cached) in one Ray Data pass
    assert [f["rows"] for f in manifests[1]["timings"]["forward"]] == [130 + 90 + 90 + 90 + 90]
    expected, got = cached_arrays(tmp_path / "local"), cached_arrays(tmp_path / "ray")
    assert len(expected) == 5 and got.keys() == expected.keys()
    for name, arrays in expected.items():
        assert got[name].keys() == arrays.keys()
        for key, value in arrays.items():
            assert got[name][key].dtype == value.dtype and np.array_equal(got[name][key], value), (name, key)
    assert (on_ray / "results.json").read_bytes() == (local / "results.json").read_bytes()


def test_run_on_a_ray_address_that_does_not_answer_is_exit_2_and_writes_nothing(tiny_bert, tmp_path, capsys):
    pytest.importorskip("ray")
    spec = write_spec(tmp_path, small_spec(tiny_bert, tmp_path / "runs"))
    with socket.socket() as s:              # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code = main(["run", str(spec), "--executor", "ray", "--address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and f"--address 127.0.0.1:{port} does not answer" in err
    assert not (tmp_path / "runs").exists()


def test_run_address_without_ray_executor_is_exit_2(tiny_bert, tmp_path, capsys):
    spec = write_spec(tmp_path, small_spec(tiny_bert, tmp_path / "runs"))
    assert main(["run", str(spec), "--address", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--address 'auto' needs --executor ray" in err
    assert not (tmp_path / "runs").exists()
