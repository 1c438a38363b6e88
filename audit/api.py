"""The Python API for notebooks and pipelines: `transfer_audit.run(spec, data=..., models=..., policy=..., out=...)`.

It runs the same audit as `transfer-audit run` and writes the same run folder. Failures the user can fix raise
`transfer_audit.AuditError` (its `.exit_code` is the CLI's); a failed policy is a result, not an exception.
Progress goes to the "transfer_audit" logger: `logging.basicConfig(level=logging.INFO)` shows it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

MODEL_ROLES = ("base", "adapted")


@dataclass(frozen=True)
class AuditResult:
    """What one audit decided and where its evidence lies."""

    verdict: str            # PASS, WARN, FAIL or INCONCLUSIVE
    exit_code: int          # the CLI's exit code for this verdict (0 pass or warn, 1 fail, 4 inconclusive)
    run_dir: Path
    results: dict           # results.json as a dict

    @property
    def report_path(self) -> Path:
        return self.run_dir / "report.html"

    @property
    def rules(self) -> list[dict]:
        """Each policy rule's outcome (id, metric, model, group, status, value, ci, reason)."""
        return self.results["gate"]["rules"]

    @property
    def measurements(self):
        """Every measurement as a pandas DataFrame: check, metric, model, group, value, ci_low, ci_high, n, status."""
        import pandas as pd

        rows = []
        for m in self.results["measurements"]:
            ci = m.get("ci") or (None, None)
            rows.append({"check": m["check"], "metric": m["metric"], "model": m["model"],
                         "group": m.get("group"), "value": m.get("value"), "ci_low": ci[0], "ci_high": ci[1],
                         "n": m.get("n"), "status": m.get("status")})
        return pd.DataFrame(rows, columns=["check", "metric", "model", "group", "value", "ci_low", "ci_high", "n",
                                           "status"])

    def __repr__(self) -> str:
        return f"AuditResult(verdict={self.verdict!r}, exit_code={self.exit_code}, run_dir={str(self.run_dir)!r})"


def run(spec, *, data: dict | None = None, models: dict | None = None, policy=None, out=None,
        device: str = "auto", allow_pickle: bool = False) -> AuditResult:
    """Run one audit.

    spec:   a spec file (str or Path) or a dict with the same fields as audit.yaml (relative paths resolve against
            the working folder).
    data:   {split: pandas.DataFrame} for train, reference, current (and source_eval); a split given here must
            not also name a source in the spec.
    models: {"base": ref, "adapted": ref} overriding the spec's model references (a folder, package:NAME, a Hub
            id, an MLflow URI).
    policy: a policy file or a dict with a policy's fields (default: the spec's policy, else the shipped default).
    out:    the output folder (default: the spec's `output`, else ./runs).
    """
    from .runner import run_audit
    from .spec import parse_spec, parse_spec_dict

    data = dict(data or {})
    unknown = sorted(set(data) - {"train", "reference", "current", "source_eval"})
    if unknown:
        raise InputError(f"transfer_audit.run: data has split {unknown[0]!r}, which is not one of train, reference, "
                         "current, source_eval.")
    if isinstance(spec, dict):
        raw = _with_models(spec, models)
        parsed = parse_spec_dict(raw, provided=frozenset(data))
    elif isinstance(spec, (str, Path)):
        if data:
            from .yamlio import load_yaml_file

            path = Path(spec)
            raw = _with_models(load_yaml_file(path, "audit spec"), models)
            parsed = parse_spec_dict(raw, base_dir=path.resolve().parent, provided=frozenset(data))
        else:
            parsed = parse_spec(spec)
            if models:
                parsed = _override_models(parsed, models)
    else:
        raise InputError(f"transfer_audit.run: spec must be a path or a dict. Got {type(spec).__name__} instead.")
    policy_obj, policy_path = _policy(policy)
    outcome = run_audit(parsed, policy_path=policy_path, out=out, allow_pickle=allow_pickle, device=device,
                        frames=data, policy=policy_obj)
    return AuditResult(outcome.results["gate"]["verdict"], outcome.exit_code, outcome.run_dir, outcome.results)


def _with_models(raw: dict, models: dict | None) -> dict:
    if not models:
        return raw
    _check_models(models)
    raw = dict(raw)
    raw["model"] = dict(raw.get("model") or {}, **{k: str(v) for k, v in models.items()})
    return raw


def _check_models(models: dict) -> None:
    bad = sorted(set(models) - set(MODEL_ROLES))
    if bad:
        raise InputError(f"transfer_audit.run: models has key {bad[0]!r}; use 'base' and 'adapted'.")


def _override_models(parsed, models: dict):
    """A parsed spec with model references replaced (a folder relative to the working folder)."""
    from dataclasses import replace

    from .spec import _model_ref
    from .validate import Section

    _check_models(models)
    section = Section({k: str(v) for k, v in models.items()}, "transfer_audit.run", "model", set(MODEL_ROLES))
    changes = {k: _model_ref(section, k, Path.cwd()) for k in models}
    return replace(parsed, model=replace(parsed.model, **changes))


def _policy(policy):
    """(Policy, None) for a dict, (None, path) for a file, (None, None) for the default."""
    if policy is None:
        return None, None
    if isinstance(policy, dict):
        import hashlib
        import json

        from .policy import Policy, parse_policy_data

        parsed = parse_policy_data(policy, "policy (dict)")
        digest = hashlib.sha256(json.dumps(policy, sort_keys=True, default=str).encode()).hexdigest()
        return Policy(parsed.name, parsed.rules, parsed.defaults, parsed.waivers, None, digest), None
    if isinstance(policy, (str, Path)):
        return None, policy
    raise InputError(f"transfer_audit.run: policy must be a path or a dict. Got {type(policy).__name__} instead.")
