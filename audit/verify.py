"""`transfer-audit verify`: is a run folder the evidence it claims to be?

Checks, in order of trust: the attestation is there and readable, its signature verifies with the given public
key, every output matches the digest the manifest and the attestation hold, the model files are the attested
subjects, and the inputs still at their recorded paths are unchanged. Each failure is one line with its own exit
code (errors.ExitCode 10-14); when several hold, the first in VERIFY_ORDER decides the exit code.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .attestation import ATTESTATION, decode_statement, subjects_tree_digest
from .errors import ExitCode, InputError
from .fileio import sha256_file, sha256_tree, tree_files

MANIFEST, RESULTS = "manifest.json", "results.json"
VERIFY_ORDER = (ExitCode.ATTESTATION_MISSING, ExitCode.SIGNATURE_INVALID, ExitCode.OUTPUTS_TAMPERED,
                ExitCode.MODEL_MISMATCH, ExitCode.INPUT_CHANGED)
MAX_FILE_LINES = 5      # per model folder: a wholly different model should not print a thousand lines


@dataclass(frozen=True)
class Problem:
    code: ExitCode
    text: str


@dataclass
class Verification:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    statement: dict | None = None
    signed_by: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        codes = {p.code for p in self.problems}
        return next((c for c in VERIFY_ORDER if c in codes), ExitCode.PASS)

    @property
    def verdict(self) -> str | None:
        return (self.statement or {}).get("predicate", {}).get("verdict")

    def fail(self, code: ExitCode, text: str) -> None:
        self.problems.append(Problem(code, text))


def _manifest(run_dir: Path) -> dict:
    path = run_dir / MANIFEST
    if not path.is_file():
        raise InputError(f"{run_dir}: no manifest.json; the run is incomplete or this is not a run folder.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: not a transfer-audit manifest (a JSON object with outputs and inputs).")
    return manifest


def _attestation(run_dir: Path, manifest: dict, key, v: Verification) -> None:
    from .signing import SignatureError, read_envelope, verify_envelope

    path = run_dir / ATTESTATION
    if not path.is_file():
        listed = ATTESTATION in manifest.get("outputs", {})
        v.fail(ExitCode.ATTESTATION_MISSING, f"{ATTESTATION}: missing" + (
            " (manifest.json lists it, so it was removed)" if listed else " (this run was written without one)"))
        return
    try:
        env = read_envelope(json.loads(path.read_text(encoding="utf-8")))
        statement = decode_statement(env)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        v.fail(ExitCode.SIGNATURE_INVALID, f"{ATTESTATION}: not a valid in-toto attestation: {e}")
        return
    recorded = manifest.get("outputs", {}).get(ATTESTATION)
    if recorded is not None and sha256_file(path) != recorded:
        v.fail(ExitCode.SIGNATURE_INVALID, f"{ATTESTATION}: changed since the audit wrote it (manifest digest differs)")
    if key is not None:
        try:
            verify_envelope(env, key)
            v.signed_by = key.keyid
        except SignatureError as e:
            v.fail(ExitCode.SIGNATURE_INVALID, f"{ATTESTATION}: {e}")
    elif env.signatures:
        v.notes.append("signature not checked: pass --key PUBLIC_KEY to check it")
    else:
        v.notes.append("the attestation is unsigned (run with --sign-key to sign it)")
    v.statement = statement


def _outputs(run_dir: Path, manifest: dict, v: Verification) -> None:
    recorded = {k: d for k, d in manifest.get("outputs", {}).items() if k != ATTESTATION}
    attested = {}
    if v.statement is not None:
        pred = v.statement["predicate"]
        attested = {k: d.get("sha256") for k, d in pred.get("outputs", {}).items()}
        attested[RESULTS] = pred.get("results", {}).get("digest", {}).get("sha256")
    root = run_dir.resolve()
    for name in sorted(set(recorded) | set(attested)):
        f = run_dir / name
        if root not in f.resolve().parents:
            v.fail(ExitCode.OUTPUTS_TAMPERED, f"{name}: names a file outside the run folder")
        elif not f.is_file():
            v.fail(ExitCode.OUTPUTS_TAMPERED, f"{name}: missing")
        else:
            now = sha256_file(f)
            against = [what for what, d in (("manifest", recorded.get(name)), ("attestation", attested.get(name)))
                       if d is not None and d != now]
            if against:
                v.fail(ExitCode.OUTPUTS_TAMPERED, f"{name}: changed since the audit (its SHA-256 differs from "
                                                  f"the {' and the '.join(against)})")


def _model_files(model_dir: Path, subjects: list[dict], v: Verification) -> None:
    want = {s["name"]: s["digest"].get("sha256") for s in subjects}
    have = dict(tree_files(model_dir))
    lines = [f"{name}: not in {model_dir}" for name in sorted(set(want) - set(have))]
    lines += [f"{name}: in {model_dir} but not an attested subject" for name in sorted(set(have) - set(want))]
    lines += [f"{name}: SHA-256 differs from the attested subject" for name in sorted(set(want) & set(have))
              if sha256_file(have[name]) != want[name]]
    for line in lines[:MAX_FILE_LINES]:
        v.fail(ExitCode.MODEL_MISMATCH, f"model {line}")
    if len(lines) > MAX_FILE_LINES:
        v.fail(ExitCode.MODEL_MISMATCH, f"model: {len(lines) - MAX_FILE_LINES} more files differ")


def _model(manifest: dict, model_dir: Path | None, v: Verification) -> None:
    inputs = manifest.get("inputs", {})
    adapted = inputs.get("model.adapted", {})
    if v.statement is not None:
        subjects = v.statement["subject"]
        if adapted.get("sha256") and subjects_tree_digest(subjects) != adapted["sha256"]:
            v.fail(ExitCode.OUTPUTS_TAMPERED,
                   "manifest.json: its adapted-model digest differs from the attested subjects")
    where = model_dir or (Path(adapted["path"]) if adapted.get("path") and os.path.isdir(adapted["path"]) else None)
    if where is None:
        v.notes.append("model not checked: its recorded folder is not on this machine; pass --model DIR")
    elif not where.is_dir():
        raise InputError(f"--model: {str(where)!r} is not a folder.")
    elif v.statement is not None:
        _model_files(where, v.statement["subject"], v)
    elif adapted.get("sha256") and sha256_tree(where) != adapted["sha256"]:
        v.fail(ExitCode.MODEL_MISMATCH, f"model: {where} differs from the adapted model the manifest records")
    base = inputs.get("model.base", {})
    if base.get("path") and os.path.isdir(base["path"]) and sha256_tree(base["path"]) != base.get("sha256"):
        v.fail(ExitCode.MODEL_MISMATCH, f"input model.base: the base model {base['path']} changed since the audit")


def _inputs(manifest: dict, v: Verification) -> None:
    for key, entry in sorted(manifest.get("inputs", {}).items()):
        path = entry.get("path")
        if not path or key.startswith("model."):
            continue
        if not os.path.exists(path):
            v.notes.append(f"input {key} not checked: {path} is not on this machine")
        elif (sha256_tree(path) if entry.get("tree") else sha256_file(path)) != entry.get("sha256"):
            v.fail(ExitCode.INPUT_CHANGED, f"input {key}: {path} changed since the audit")


def verify_run_dir(run_dir: str | Path, key_path: str | Path | None = None,
                   model_dir: str | Path | None = None) -> Verification:
    """Every check above; InputError (exit 2) only for what the user must fix: no run folder, an unreadable key."""
    from .signing import load_public_key

    run_dir = Path(run_dir)
    key = load_public_key(key_path) if key_path is not None else None
    manifest = _manifest(run_dir)
    v = Verification()
    _attestation(run_dir, manifest, key, v)
    _outputs(run_dir, manifest, v)
    _model(manifest, Path(model_dir) if model_dir is not None else None, v)
    _inputs(manifest, v)
    return v
