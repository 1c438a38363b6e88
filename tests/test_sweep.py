"""transfer-audit sweep: one audit per fine-tuning seed, local and on a local Ray instance, with the same
results.json; bad input (an entry that is not a model, a Ray address that does not answer) fails in one sentence
with exit 2 and writes nothing."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from conftest import adult_spec, write_spec

from transfer_audit.cli import main

SEEDS = [1, 2, 3]


def small_spec(base: Path, out: Path) -> dict:
    spec = adult_spec(str(base), out, checks={"performance": {}})
    spec["data"]["train"]["sample"] = 120
    spec["data"]["reference"].update(sample=80, skip=120)
    spec["data"]["current"]["sample"] = 80
    spec["sweep"] = {"seeds": SEEDS}
    return spec


def entry_results(sweep_dir: Path) -> dict:
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    return {r["entry"]: json.loads((sweep_dir / r["run_dir"] / "results.json").read_text())
            for r in summary["entries"]}


@pytest.fixture(scope="module")
def local_sweep(tiny_bert, tmp_path_factory):
    from transfer_audit.sweep import Executor, run_sweep

    folder = tmp_path_factory.mktemp("sweep-local")
    spec = write_spec(folder, small_spec(tiny_bert, folder / "runs"))
    return spec, run_sweep(spec, executor=Executor.LOCAL)


def test_local_sweep_writes_one_run_folder_per_seed_and_a_summary(local_sweep):
    _, outcome = local_sweep
    summary = json.loads((outcome.folder / "sweep.json").read_text())
    assert sorted(r["entry"] for r in summary["entries"]) == [f"seed{s}" for s in SEEDS]
    for r in summary["entries"]:
        run = outcome.folder / r["run_dir"]
        assert (run / "manifest.json").is_file() and (run / "report.html").is_file()
        results = json.loads((run / "results.json").read_text())
        assert results["gate"]["verdict"] == r["verdict"]
        assert results["models"]["adapted"]["recipe"]["seed"] == r["finetune_seed"]
        acc = next(m for m in results["measurements"] if m["metric"] == "performance.accuracy"
                   and m["model"] == "adapted")
        assert r["metrics"]["performance.accuracy"] == {"value": acc["value"], "ci": acc["ci"], "n": acc["n"]}
    # three seeds, three different fine-tuned models; one base, computed once for the whole sweep
    assert len({json.loads((outcome.folder / r["run_dir"] / "results.json").read_text())["models"]["adapted"]["sha256"]
                for r in summary["entries"]}) == 3
    assert summary["shared_evidence"]["files"] == 3 and summary["shared_evidence"]["computed"]
    ranks = [("PASS", "WARN", "INCONCLUSIVE", "FAIL").index(r["verdict"]) for r in summary["entries"]]
    assert ranks == sorted(ranks)
    assert summary["exit_code"] == outcome.exit_code
    html = (outcome.folder / "sweep.html").read_text()
    assert all(f"seed{s}" in html for s in SEEDS) and "Ship:" in html


def test_ray_sweep_gives_the_same_results_as_local(local_sweep, tmp_path, monkeypatch):
    """Entries as Ray tasks on a local instance (2 CPUs) into their own output folder: fine-tuning, every forward
    pass, probe, control, check and gate run again in the workers (with the thread count a local run trains
    with, not the 1 Ray gives a 1-CPU task), and every results.json is identical to the local sweep's. The first
    worker to start an entry dies (the test hook exits its process, as an OOM kill would): Ray retries that
    entry and the sweep loses nothing."""
    import shutil

    from transfer_audit.testhook import DIE_ENV

    died = tmp_path / "a-worker-died"
    monkeypatch.setenv(DIE_ENV, str(died))        # inherited by the workers of the instance started below

    ray = pytest.importorskip("ray")
    from transfer_audit.sweep import Executor, run_sweep

    spec_path, local = local_sweep
    # two of the three fine-tuned models are copied (training them again would only cost time); one entry trains
    # in its worker, which must give the model the local sweep trained
    models = sorted((local.folder.parent / ".cache" / "models").iterdir())
    for folder in models[1:]:
        shutil.copytree(folder, tmp_path / "ray-runs" / ".cache" / "models" / folder.name)
    from transfer_audit.distributed.ray_runtime import init_kwargs

    ray.init(num_cpus=2, **init_kwargs())
    try:
        outcome = run_sweep(spec_path, executor=Executor.RAY, out=tmp_path / "ray-runs")
    finally:
        ray.shutdown()
    summary = json.loads((outcome.folder / "sweep.json").read_text())
    assert summary["executor"] == "ray" and len(summary["entries"]) == len(SEEDS)
    assert [r.get("error") for r in summary["entries"]] == [None] * len(SEEDS)
    manifests = [json.loads((outcome.folder / r["run_dir"] / "manifest.json").read_text()) for r in summary["entries"]]
    assert {m["timings"]["executor"] for m in manifests} == {"ray"}
    assert sum("finetune_s" in m["timings"] for m in manifests) == 1
    assert entry_results(outcome.folder) == entry_results(local.folder)
    assert died.exists()                         # a worker did die, and its entry was run again


def test_sweep_entry_that_is_not_a_model_is_one_sentence_exit_2_and_writes_nothing(tiny_bert, tmp_path, capsys):
    folder = tmp_path / "sweep"
    spec = write_spec(folder, small_spec(tiny_bert, folder / "runs"))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.txt").write_text("not a model")
    code = main(["sweep", str(spec), "--adapted", str(tiny_bert), str(notes)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "--adapted" in err and "is not a model" in err and str(notes) in err
    assert not (folder / "runs").exists()


def test_ray_address_that_does_not_answer_is_exit_2_and_writes_nothing(tiny_bert, tmp_path, capsys):
    pytest.importorskip("ray")
    folder = tmp_path / "sweep"
    spec = write_spec(folder, small_spec(tiny_bert, folder / "runs"))
    with socket.socket() as s:              # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code = main(["sweep", str(spec), "--executor", "ray", "--address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and f"--address 127.0.0.1:{port} does not answer" in err
    assert not (folder / "runs").exists()
