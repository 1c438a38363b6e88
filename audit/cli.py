"""transfer-audit command line. Heavy libraries load only inside the commands that need them."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import AuditError, ExitCode
from .executor import Executor

DEMO = "adult-income"
VERIFY_CODES = ("Exit codes: 0 verified, 2 usage error (no run folder, unreadable key), 10 results or another output "
                "tampered with, 11 wrong model (files differ from the attested subjects), 12 bad signature (unsigned, "
                "another key, or the attestation altered), 13 attestation missing, 14 an input file at its recorded "
                "path changed. With several failures the first of 13, 12, 10, 11, 14 is returned.")


def _add_sign_key(parser) -> None:
    from .signing import KEY_ENV

    parser.add_argument("--sign-key", metavar="PRIVATE_KEY", default=os.environ.get(KEY_ENV) or None,
                        help=f"sign attestation.intoto.json with this PEM key (ed25519 or ECDSA P-256; default: "
                             f"${KEY_ENV}); the key is read, never copied into the run folder")


def _add_run_options(parser) -> None:
    """Options `run` and `demo` share."""
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="where fine-tuning and inference run: auto (CUDA when present, else the CPU), cpu, cuda, "
                             "cuda:N or mps; off the CPU with bf16/fp16 autocast (default: auto)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr (warnings and errors "
                                                                    "only)")
    parser.add_argument("--format", choices=["text", "json"], default="text", dest="output_format",
                        help="json: the verdict, rule outcomes and output paths as one JSON object on stdout")
    _add_sign_key(parser)
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


def _tolerance(text: str):
    """--tolerance VALUE or METRIC=VALUE, parsed once at the edge."""
    metric, _, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"--tolerance must be VALUE or METRIC=VALUE with VALUE a number >= 0. "
                                         f"Got {text!r} instead.")
    return metric or None, number


def _add_executor(parser, what: str) -> None:
    parser.add_argument("--executor", choices=[e.value for e in Executor], default=Executor.LOCAL.value, help=what)
    parser.add_argument("--address", help="Ray cluster address (auto, HOST:PORT, ray://HOST:PORT; default: a local "
                                          "instance started for this command)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="transfer-audit", description=(
        "Audit a transfer-learned classifier next to its frozen base (with a linear probe) and a "
        "no-pretraining control: performance, bias, drift, negative transfer and attribution, gated by a policy. "
        "Exit codes: 0 pass, 1 policy failed, 2 input or usage error, 3 unsafe artifact refused, "
        "4 inconclusive, 5 internal error, 130 interrupted; verify has its own (10-14, see verify --help)."))
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"transfer-audit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", help="run an audit from a spec (exit code = verdict)")
    r.add_argument("spec")
    r.add_argument("--policy", help="policy file (overrides the spec's)")
    r.add_argument("--out", help="output folder (overrides the spec's)")
    r.add_argument("--allow-pickle", action="store_true",
                   help="accept pickle weights (loaded with weights_only=True; the verdict is marked unsafe)")
    _add_executor(r, "local: in this process; ray: the forward passes on Ray Data actors (same results.json)")
    _add_run_options(r)
    d = sub.add_parser("demo", help="run a shipped example audit (default: UCI Adult on MiniLM); writes to ./runs")
    d.add_argument("example", nargs="?", default=DEMO, help=f"which example (default: {DEMO})")
    d.add_argument("--out", default="runs", help="output folder (default: ./runs)")
    _add_run_options(d)
    rd = sub.add_parser("render", help="rebuild every report from a results.json, without models or data")
    rd.add_argument("results")
    rd.add_argument("--out", help="folder for the artifacts (default: beside results.json)")
    sub.add_parser("checks", help="list the registered checks and their metrics")
    pl = sub.add_parser("policy", help="policy tools")
    plsub = pl.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    lint = plsub.add_parser("lint", help="validate a policy file")
    lint.add_argument("file")
    v = sub.add_parser("verify", help="check a run's attestation, signature, output hashes and model files",
                       description="Check that a run folder is the evidence it claims to be. " + VERIFY_CODES)
    v.add_argument("run_dir")
    v.add_argument("--key", metavar="PUBLIC_KEY", help="PEM public key the attestation must be signed by")
    v.add_argument("--model", metavar="DIR", help="model folder to check against the attested subjects (default: "
                                                  "the adapted model's recorded folder, when it is on this machine)")
    v.add_argument("--gate", action="store_true", help="once verified, exit with the attested verdict's code "
                                                      "(0 pass or warn, 1 fail, 4 inconclusive), as `run` did")
    kg = sub.add_parser("keygen", help="write a signing key pair: PREFIX.key (mode 0600) and PREFIX.pub")
    kg.add_argument("--out", default="transfer-audit", metavar="PREFIX",
                    help="file name prefix (default: transfer-audit)")
    kg.add_argument("--type", default="ed25519", choices=["ed25519", "ecdsa-p256"], help="key type (default: ed25519)")
    df = sub.add_parser("diff", help="how rule outcomes changed across audits (OLD NEW, or a lineage OLD V1 V2 ...)",
                        description="Compare audits in order. Exit codes: 0, or 1 with --fail-on regression when a "
                                    "rule or the verdict got worse from one run to the next; 2 usage error.")
    df.add_argument("old", help="results.json or run folder of the earlier audit")
    df.add_argument("new", nargs="+", help="later audits, oldest first")
    df.add_argument("--fail-on", choices=["regression"], help="exit 1 when any rule got worse (PASS -> WARN/"
                    "INCONCLUSIVE/FAIL, or past a --tolerance with its interval)")
    df.add_argument("--format", choices=["text", "md"], default="text", help="md: one table for a pull-request comment")
    df.add_argument("--tolerance", type=_tolerance, action="append", default=[], metavar="[METRIC=]VALUE",
                    help="a metric regresses when the new interval lies wholly beyond the old value by more than "
                         "VALUE in the rule's bad direction; repeatable, METRIC= for one metric")
    sw = sub.add_parser("sweep", help="one audit per adapted model or fine-tuning seed, base evidence shared, "
                                      "plus a summary naming the entry to ship",
                        description="Audit many adapted models (or fine-tuning seeds) of one base on the same data. "
                                    "Exit codes: the worst entry error (5, 3, 2) if an entry could not run; else 0 "
                                    "when an entry passes the gate, 4 when the best is inconclusive, 1 when all fail.")
    sw.add_argument("spec")
    sw.add_argument("--adapted", nargs="+", default=[], metavar="DIR_OR_ID",
                    help="adapted models to audit (replaces the spec's sweep: block)")
    _add_executor(sw, "local: one entry after another in this process; ray: entries as Ray tasks")
    sw.add_argument("--cpus-per-entry", type=float, default=1.0, help="CPUs each Ray task requests (default 1)")
    sw.add_argument("--policy", help="policy file (overrides the spec's)")
    sw.add_argument("--out", help="output folder (overrides the spec's)")
    sw.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    t = sub.add_parser("transferability", help="rank candidate base models for a spec's data, before fine-tuning")
    t.add_argument("spec")
    t.add_argument("--candidate", action="append", default=[], help="another base model (package:NAME or folder)")
    c = sub.add_parser("convert", help="convert a pickled image checkpoint (.pth) to a safetensors model folder "
                                       "(read with torch.load(weights_only=True) only)")
    c.add_argument("src", help="the checkpoint file (.pth/.pt/.bin or .safetensors)")
    c.add_argument("--arch", required=True, help="architecture, e.g. efficientnet-lite0")
    c.add_argument("--out", required=True, help="new folder for model.safetensors + config.json")
    c.add_argument("--key-map", help="YAML/JSON mapping {regex: replacement} applied to the weight names "
                                     "in order (null drops a key)")
    c.add_argument("--image-size", type=int, help="input size written to the preprocessing config "
                                                  "(default: the architecture's own)")
    return p


def _print_json(outcome) -> None:
    import json

    gate = outcome.results["gate"]
    print(json.dumps({"verdict": gate["verdict"], "exit_code": outcome.exit_code, "counts": gate["counts"],
                      "rules": gate["rules"], "run_dir": str(outcome.run_dir),
                      "report": str(outcome.run_dir / "report.html"),
                      "results": str(outcome.run_dir / "results.json")}, indent=2))


def _print_verdict(outcome) -> None:
    from .presentation import group_label, is_blocking
    from .render.writer import github_annotations

    results = outcome.results
    gate = results["gate"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(gate["counts"].items()))
    print(f"verdict: {gate['verdict']} ({counts})")
    for r in gate["rules"]:
        if is_blocking(r):
            grp = "" if not r.get("group") else " " + group_label(r["group"])
            print(f"  {r['status']:<12} {r['id']}: {r['metric']} [{r['model']}{grp}] = "
                  f"{r['value'] if r['value'] is None else round(r['value'], 4)} ({r['reason']})")
    print(f"report:   {outcome.run_dir / 'report.html'}")
    print(f"results:  {outcome.run_dir / 'results.json'}")
    if os.environ.get("GITHUB_ACTIONS"):
        for line in github_annotations(results):
            print(line)


def _cmd_run(args, spec) -> int:
    from .runner import run_audit

    signer = None
    if args.sign_key:
        from .signing import load_signer

        signer = load_signer(args.sign_key)   # before the audit: a bad key should not cost a whole run
    outcome = run_audit(spec, policy_path=getattr(args, "policy", None), out=args.out,
                        allow_pickle=getattr(args, "allow_pickle", False), signer=signer, device=args.device,
                        executor=Executor(getattr(args, "executor", Executor.LOCAL.value)),
                        address=getattr(args, "address", None))
    (_print_json if args.output_format == "json" else _print_verdict)(outcome)
    return outcome.exit_code


def _example(name: str) -> Path:
    from .packaged import example_spec, packaged

    spec = example_spec(name)
    if not spec.is_file():
        from .errors import did_you_mean

        known = sorted(p.name for p in packaged("transfer_audit.examples").iterdir() if (p / "audit.yaml").is_file())
        raise AuditError(f"demo: no example named {name!r}{did_you_mean(name, known)}. Examples: {', '.join(known)}.")
    return spec


def _cmd_render(args) -> int:
    import json

    from .render import render_all
    from .results import read_results

    path = Path(args.results)
    results = read_results(path)
    path = path / "results.json" if path.is_dir() else path
    from .fileio import output_folder

    out = output_folder(args.out, "command line", "--out") if args.out else path.parent
    out.mkdir(parents=True, exist_ok=True)
    manifest = path.parent / "manifest.json"
    timings = json.loads(manifest.read_text()).get("timings") if manifest.exists() else None
    try:
        written = render_all(results, out, timings=timings)
    except (KeyError, TypeError) as e:
        raise AuditError(f"{path}: results are missing a field the reports need ({e}).") from None
    for name in written:
        print(out / name)
    return 0


def _cmd_checks() -> int:
    from .checks import CHECKS

    for name, c in CHECKS.items():
        print(f"{name}: {c.description}")
        for m in c.metrics:
            print(f"    {m}")
    return 0


def _cmd_lint(args) -> int:
    from .policy import load_policy

    policy = load_policy(args.file)
    print(f"{args.file}: OK, {len(policy.rules)} rules, {len(policy.waivers)} waivers")
    return 0


def _cmd_verify(args) -> int:
    from .verify import verify_run_dir

    v = verify_run_dir(args.run_dir, key_path=args.key, model_dir=args.model)
    for note in v.notes:
        print(f"note: {note}")
    for p in v.problems:
        print(f"FAILED ({int(p.code)}) {p.text}")
    if v.problems:
        return int(v.exit_code)
    signed = f"signed by key {v.signed_by[:12]}" if v.signed_by else "signature not checked"
    print(f"verified: {args.run_dir}: outputs match the manifest and the attestation; {signed}; "
          f"attested verdict {v.verdict}")
    if args.gate:
        codes = {"FAIL": ExitCode.POLICY_FAILED, "INCONCLUSIVE": ExitCode.INCONCLUSIVE}
        return int(codes.get(v.verdict, ExitCode.PASS))
    return 0


def _cmd_keygen(args) -> int:
    from .signing import KeyType, keygen

    private, public = keygen(args.out, KeyType(args.type))
    print(f"private key: {private} (mode 0600; keep it secret, e.g. as a CI secret)")
    print(f"public key:  {public} (give it to whoever verifies: transfer-audit verify RUN_DIR --key {public})")
    return 0


def _cmd_diff(args) -> int:
    from .diff import Tolerance, compare, markdown, text_lines

    per_metric = {m: v for m, v in args.tolerance if m is not None}
    if per_metric:
        from .errors import InputError, did_you_mean
        from .policy import known_metrics

        metrics = known_metrics()
        for m in per_metric:
            if m not in metrics:
                raise InputError(f"command line: --tolerance names metric {m!r}, which no check measures"
                                 f"{did_you_mean(m, metrics)}. Run `transfer-audit checks` for the list.")
    default = next((v for m, v in reversed(args.tolerance) if m is None), None)
    lineage = compare([Path(args.old), *map(Path, args.new)], Tolerance(default, per_metric))
    print(markdown(lineage) if args.format == "md" else "\n".join(text_lines(lineage)))
    return int(ExitCode.POLICY_FAILED) if args.fail_on == "regression" and lineage.regressed else 0


def _cmd_sweep(args) -> int:
    from .sweep import run_sweep

    outcome = run_sweep(args.spec, args.adapted, Executor(args.executor), args.address, args.policy, args.out,
                        args.cpus_per_entry)
    s = outcome.summary
    for r in s["entries"]:
        state = r["verdict"] or f"error (exit {r['exit_code']}): {r['error']}"
        print(f"  {r['entry']:<24} {state}")
    print(f"ship:    {s['ship'] or 'none'}")
    print(f"summary: {outcome.folder / 'sweep.html'}")
    return outcome.exit_code


def _cmd_transferability(args) -> int:
    from .transferability import rank_candidates

    for line in rank_candidates(args.spec, args.candidate):
        print(line)
    return 0


def _cmd_convert(args) -> int:
    from .vision.convert import convert

    if args.image_size is not None and not 16 <= args.image_size <= 2048:
        raise AuditError(f"convert: --image-size must be a whole number in [16, 2048]. Got {args.image_size} instead.")
    done = convert(args.src, args.arch, args.out, args.key_map, args.image_size)
    print(f"converted {args.src} -> {done.out} ({done.architecture}, {done.tensors} tensors, "
          f"{done.parameters:,} values, {done.num_classes} classes; {done.renamed} keys renamed, "
          f"{done.dropped} dropped; strict load and forward pass checked)")
    print(f"source sha256:  {done.source_sha256}")
    print(f"weights sha256: {done.weights_sha256}")
    return 0


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    if args.command is None:
        parser.print_help()
        return int(ExitCode.INPUT_ERROR)
    signal.signal(signal.SIGTERM, _on_sigterm)
    from .progress import cli_logging

    with cli_logging(quiet=getattr(args, "quiet", False)):
        return _dispatch(parser, args, debug)


def _dispatch(parser, args, debug: bool) -> int:
    try:
        if args.command == "run":
            return _cmd_run(args, args.spec)
        if args.command == "demo":
            return _cmd_run(args, _example(args.example))
        if args.command == "render":
            return _cmd_render(args)
        if args.command == "checks":
            return _cmd_checks()
        if args.command == "policy":
            if args.policy_command != "lint":
                parser.parse_args(["policy", "--help"])
            return _cmd_lint(args)
        if args.command == "verify":
            return _cmd_verify(args)
        if args.command == "keygen":
            return _cmd_keygen(args)
        if args.command == "diff":
            return _cmd_diff(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        if args.command == "transferability":
            return _cmd_transferability(args)
        if args.command == "convert":
            return _cmd_convert(args)
    except AuditError as e:
        if debug:
            traceback.print_exc()
        print(f"transfer-audit: error: {e.message}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt as e:
        term = "SIGTERM" in str(e)
        print("transfer-audit: interrupted. Nothing partial was kept: outputs are written atomically and a run "
              "folder without manifest.json is incomplete. Run the same command again to resume; fine-tuning "
              "and inference are reused from the cache.", file=sys.stderr)
        code = int(ExitCode.TERMINATED if term else ExitCode.INTERRUPTED)
        # Leave now: an interrupt that landed inside an import makes CPython's finalisation re-kill the process
        # with SIGINT (exit -2 instead of 130), and a second Ctrl-C there would print a traceback. Nothing is
        # left to write: outputs are atomic and the cache is only ever renamed into place.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    except Exception as e:  # a bug: say so plainly, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        print(f"transfer-audit: internal error: {type(e).__name__}: {e}. This is a bug in transfer-audit; "
              "run again with --debug for the traceback and report it.", file=sys.stderr)
        return int(ExitCode.INTERNAL_ERROR)
    return int(ExitCode.INPUT_ERROR)


if __name__ == "__main__":
    sys.exit(main())
