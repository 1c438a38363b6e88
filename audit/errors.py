"""Errors that end a run with a documented exit code and a one-paragraph message.

Every message names the file, the field (dotted path) and the offending value, in one sentence shape:
"<file>: <field> <problem>. Got <value> instead." Message templates are named constants with a code, so
tests check which template a failure used (its code) rather than fragile substrings.
"""
from __future__ import annotations

import difflib
from enum import IntEnum


class ExitCode(IntEnum):
    PASS = 0
    POLICY_FAILED = 1
    INPUT_ERROR = 2
    UNSAFE_ARTIFACT = 3
    INCONCLUSIVE = 4
    INTERNAL_ERROR = 5
    # `transfer-audit verify`: why a run folder is not the evidence it claims to be. When several hold, the
    # code is the first in this order: 13, 12, 10, 11, 14 (a forged attestation makes the rest meaningless).
    OUTPUTS_TAMPERED = 10       # results.json or another output differs from its recorded or attested digest
    MODEL_MISMATCH = 11         # the model files are not the ones the attestation names
    SIGNATURE_INVALID = 12      # the attestation is unsigned, signed by another key, altered or unreadable
    ATTESTATION_MISSING = 13    # no attestation.intoto.json in the run folder
    INPUT_CHANGED = 14          # the spec, policy or a data file at its recorded path changed since the audit
    INTERRUPTED = 130
    TERMINATED = 143


class Message:
    """A named message template. Tests compare codes (`e.code == MSG_WRONG_TYPE.code`), never wording."""

    def __init__(self, code: str, template: str):
        self.code, self.template = code, template

    def format(self, **fields) -> str:
        return self.template.format(**fields)

    def __repr__(self) -> str:
        return f"Message({self.code!r})"


# Input problems: "<where>: <field> <problem>. Got <value> instead." where a value is involved.
MSG_UNKNOWN_KEY = Message("unknown_key", "{where}: unknown key {key!r}{hint}. Allowed keys: {allowed}.")
MSG_MISSING_KEY = Message("missing_key", "{where}: required key {key!r} is missing.")
MSG_WRONG_TYPE = Message("wrong_type", "{where}: {field} must be {expected}. Got {value!r} instead.")
MSG_BAD_VALUE = Message("bad_value", "{where}: {field} must be {expected}. Got {value!r} instead.")
MSG_MISSING_FILE = Message("missing_file", "{where}: {field} points to {value!r}, which does not exist.")
MSG_BAD_FILE = Message("bad_file", "{where}: {field}: cannot read {value!r}: {reason}.")
MSG_MISSING_COLUMN = Message("missing_column", "{where}: {field} names column {value!r}, which {source} does not "
                                               "have. Columns: {columns}.")
MSG_UNKNOWN_METRIC = Message("unknown_metric", "{where}: {field} is {value!r}, which no check measures{hint}. "
                                               "Run `transfer-audit checks` for the list.")
MSG_UNSAFE_PICKLE = Message("unsafe_pickle", (
    "{where}: {value!r} is a pickle file (detected by its content). Pickle can run arbitrary code when "
    "loaded, so it is refused. Convert it to safetensors (e.g. model.save_pretrained(dir, "
    "safe_serialization=True)) or pass --allow-pickle to load it with torch.load(weights_only=True)."))
MSG_UNSAFE_CODE = Message("unsafe_code", (
    "{where}: {value!r} contains custom model code ({reason}). transfer-audit never runs "
    "trust_remote_code; use a model folder with only config, tokenizer and safetensors files."))


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class AuditError(Exception):
    """An error the user can fix; carries its exit code."""

    exit_code = ExitCode.INPUT_ERROR

    def __init__(self, message: str, template: Message | None = None):
        super().__init__(message)
        self.message = message
        self.template = template

    @property
    def code(self) -> str | None:
        """The message's code when it came from a named template (see Message)."""
        return self.template.code if self.template is not None else None


class InputError(AuditError):
    exit_code = ExitCode.INPUT_ERROR

    @classmethod
    def make(cls, template: Message, **fields) -> InputError:
        return cls(template.format(**fields), template)


class UnsafeArtifactError(AuditError):
    exit_code = ExitCode.UNSAFE_ARTIFACT

    @classmethod
    def make(cls, template: Message, **fields) -> UnsafeArtifactError:
        return cls(template.format(**fields), template)


def unknown_key(where: str, key: str, allowed) -> InputError:
    allowed = sorted(allowed)
    return InputError.make(
        MSG_UNKNOWN_KEY, where=where, key=key, hint=did_you_mean(key, allowed), allowed=", ".join(allowed)
    )
