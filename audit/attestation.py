"""attestation.intoto.json: an in-toto Statement v1 about the adapted model's files, in a DSSE envelope.

Subjects are the adapted model's files (the adapter's files when the adapted model is a PEFT adapter) with their
SHA-256, as OpenSSF model signing lists them. The predicate follows the proposed in-toto eval-result predicate
(v0.1, in-toto/attestation#565) and adds what a regulator needs to tie the verdict to its evidence: base model,
data splits, policy and waivers, every rule outcome, and the digests of results.json and the rendered reports.
docs/attestation.md lists every field. The predicate is built from results.json alone, plus the model files.
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from .fileio import sha256_file, tree_digest, tree_files

ATTESTATION = "attestation.intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/eval-result/v0.1"
VERIFIER_ID = "https://pypi.org/project/transfer-audit/"
TREE_ALG = "transfer-audit-tree-sha256"      # sha256 over 'path\0sha256\n' per file, sorted (fileio.tree_digest)
ROWS_ALG = "transfer-audit-rows-sha256"      # sha256 over a split's sampled rows (data._digest)
PASSING = {"PASS"}


def model_subjects(folder: str | Path) -> list[dict]:
    """One in-toto ResourceDescriptor per file of the model folder, in tree_files order."""
    return [{"name": rel, "digest": {"sha256": sha256_file(p)}} for rel, p in tree_files(folder)]


def subjects_tree_digest(subjects: list[dict]) -> str:
    """The folder digest the manifest records, recomputed from the subjects (no model needed)."""
    return tree_digest((s["name"], s["digest"]["sha256"]) for s in subjects)


def _decimal(x) -> str | None:
    """A bound as a decimal string, never a float (the eval-result predicate's rule for thresholds)."""
    return None if x is None else format(Decimal(repr(float(x))), "f")


def _claim(rule: dict) -> dict:
    claim = {"metric": rule["metric"], "comparator": rule["condition"].split(" ", 1)[0]}
    if rule.get("bound") is not None:
        claim["threshold"] = _decimal(rule["bound"])
    claim["passed"] = rule["status"] in PASSING
    claim.update({"id": rule["id"], "model": rule["model"], "group": rule.get("group"),
                  "condition": rule["condition"], "status": rule["status"], "severity": rule["severity"],
                  "value": rule.get("value"), "interval": rule.get("ci"), "n": rule.get("n"),
                  "decideOn": rule.get("decide_on"), "waived": rule.get("waived")})
    return claim


def build_predicate(results: dict, model_digest: str, outputs: dict[str, str], inputs: dict[str, dict],
                    evaluated_at: str) -> dict:
    models, data, policy = results["models"], results["data"], results["policy"]
    eval_split = "current" if "current" in data else next(iter(data))
    base, adapted = models.get("base", {}), models.get("adapted", {})
    return {
        # the fields of the proposed eval-result predicate
        "verifier": {"id": VERIFIER_ID},
        "evaluatedAt": evaluated_at,
        "suite": {"name": policy.get("name"), "version": f"sha256:{policy.get('sha256')}"},
        "claims": [_claim(r) for r in results["gate"]["rules"]],
        "sampleSize": data[eval_split]["n"],
        "commitments": {"model": {"alg": TREE_ALG, "value": model_digest, "salted": False},
                        "dataset": {"alg": ROWS_ALG, "value": data[eval_split]["sha256"], "salted": False}},
        "assuranceLevel": "self_attested",
        "subjectProfile": "public-model",
        "harness": {"name": results["tool"]["name"], "version": results["tool"]["version"]},
        # transfer-audit's additions (consumers of eval-result ignore fields they do not know)
        "verdict": results["gate"]["verdict"],
        "audit": {"name": results["audit"]["name"], "task": results["audit"]["task"], "seed": results["audit"]["seed"]},
        "baseModel": {"ref": base.get("ref"), "name": base.get("name"), "alg": TREE_ALG, "digest": base.get("sha256")},
        "adaptedModel": {"ref": adapted.get("ref"), "relation": adapted.get("relation"),
                         "source": adapted.get("source"), "alg": TREE_ALG, "digest": model_digest},
        "data": {name: {"source": d.get("source"), "rows": d["n"], "alg": ROWS_ALG, "digest": d["sha256"]}
                 for name, d in data.items()},
        "policy": {"name": policy.get("name"), "file": policy.get("source"), "sha256": policy.get("sha256")},
        "waivers": policy.get("waivers", []),
        "inputs": inputs,
        "results": {"name": "results.json", "digest": {"sha256": outputs["results.json"]}},
        "outputs": {name: {"sha256": d} for name, d in outputs.items() if name != "results.json"},
    }


def build_statement(results: dict, model_dir: str | Path, outputs: dict[str, str], inputs: dict[str, dict],
                    evaluated_at: str, expected_model_digest: str | None = None) -> dict:
    subjects = model_subjects(model_dir)
    digest = subjects_tree_digest(subjects)
    if expected_model_digest is not None and digest != expected_model_digest:
        from .errors import AuditError

        raise AuditError(f"{model_dir}: the adapted model's files changed while the audit ran (digest "
                         f"{expected_model_digest[:12]} at load, {digest[:12]} now); run the audit again.")
    statement = {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE,
                 "predicate": build_predicate(results, digest, outputs, inputs, evaluated_at)}
    validate_statement(statement)
    return statement


def validate_statement(statement: dict) -> None:
    """The in-toto attestation library's own check: the Statement v1 protobuf schema (unknown top-level fields
    and wrong types are refused) and its validate() (type URI, subjects with digests, predicate present).
    Raises ValueError with the library's reason."""
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    try:
        pb = json_format.ParseDict(statement, statement_pb2.Statement())
    except json_format.ParseError as e:
        raise ValueError(str(e).split("\n")[0]) from None
    Statement.copy_from_pb(pb).validate()


def statement_bytes(statement: dict) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def write_attestation(run_dir: Path, statement: dict, signer=None) -> str:
    from .fileio import atomic_write_json
    from .signing import envelope

    atomic_write_json(run_dir / ATTESTATION, envelope(statement_bytes(statement), signer))
    return ATTESTATION


def decode_statement(env) -> dict:
    """The Statement inside a securesystemslib Envelope; ValueError with a one-line reason otherwise."""
    from .signing import PAYLOAD_TYPE

    if env.payload_type != PAYLOAD_TYPE:
        raise ValueError(f"payloadType is {env.payload_type!r}, not {PAYLOAD_TYPE!r}")
    try:
        statement = json.loads(env.payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the payload is not JSON ({e})") from None
    if not isinstance(statement, dict):
        raise ValueError("the payload is not a JSON object")
    validate_statement(statement)
    if statement["predicateType"] != PREDICATE_TYPE:
        raise ValueError(f"predicateType is {statement['predicateType']!r}, not {PREDICATE_TYPE!r}")
    _check_shape(statement)
    return statement


def _is_digest(x) -> bool:
    return isinstance(x, dict) and isinstance(x.get("sha256"), str)


def _check_shape(statement: dict) -> None:
    """What verify reads beyond the Statement schema: named sha256 subjects, the results and output digests."""
    if not all(isinstance(s.get("name"), str) and _is_digest(s.get("digest")) for s in statement["subject"]):
        raise ValueError("every subject needs a name and a sha256 digest")
    pred = statement["predicate"]
    results, outputs = pred.get("results"), pred.get("outputs")
    if not (isinstance(results, dict) and _is_digest(results.get("digest"))):
        raise ValueError("predicate.results.digest.sha256 is missing")
    if not isinstance(outputs, dict) or not all(_is_digest(d) for d in outputs.values()):
        raise ValueError("predicate.outputs must map file names to sha256 digests")

