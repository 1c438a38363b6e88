"""Offline signing of attestations: a local ed25519 or ECDSA P-256 key, a DSSE envelope.

The cryptography is securesystemslib's (CryptoSigner, SSlibKey, dsse.Envelope) on top of pyca/cryptography;
nothing here computes a signature itself. Keys are PEM files: PKCS#8 private keys (optionally encrypted, the
password then comes from TRANSFER_AUDIT_SIGN_KEY_PASSWORD) and SubjectPublicKeyInfo public keys, so keys made
with `openssl genpkey` work too. A private key is read, never written anywhere but by `keygen`.
"""
from __future__ import annotations

import copy
import os
from enum import Enum
from pathlib import Path

from .errors import InputError

PAYLOAD_TYPE = "application/vnd.in-toto+json"   # DSSE payload type of an in-toto Statement
KEY_ENV = "TRANSFER_AUDIT_SIGN_KEY"               # path of the private key, when --sign-key is not given
PASSWORD_ENV = "TRANSFER_AUDIT_SIGN_KEY_PASSWORD"  # password of an encrypted private key

MSG_KEY_EXISTS = "{where}: {value!r} already exists; keygen never overwrites a key. Choose another --out."
MSG_KEY_UNREADABLE = "{where}: {value!r} is not a {expected} ({reason})."
MSG_KEY_TYPE = "{where}: {value!r} is a {found} key; transfer-audit signs with ed25519 or ECDSA P-256 keys only."
MSG_KEY_PASSWORD = ("{where}: {value!r} is an encrypted private key and " + PASSWORD_ENV
                    + " is {state}. Set it to the key's password.")


class KeyType(str, Enum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


class SignatureError(Exception):
    """The envelope is not validly signed by the given key; the message is one line saying why."""


def _check_type(public_key, where: str, path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
        return
    found = getattr(getattr(public_key, "curve", None), "name", None) or type(public_key).__name__
    raise InputError.make(MSG_KEY_TYPE, where=where, value=str(path), found=found)


def keygen(prefix: str | os.PathLike, key_type: KeyType = KeyType.ED25519) -> tuple[Path, Path]:
    """Write PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (PEM); refuse to overwrite either."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from .fileio import atomic_write_bytes

    prefix = Path(prefix)
    private_path, public_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for p in (private_path, public_path):
        if p.exists():
            raise InputError.make(MSG_KEY_EXISTS, where="keygen", value=str(p))
    private = (ed25519.Ed25519PrivateKey.generate() if key_type is KeyType.ED25519
               else ec.generate_private_key(ec.SECP256R1()))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    # The temp file is created 0600 (mkstemp) before the key bytes go in, so the key is never readable by others.
    atomic_write_bytes(private_path, pem, mode=0o600)       # never readable by others, not even for a moment
    atomic_write_bytes(public_path, pub, mode=0o644)
    return private_path, public_path


def _read(path: Path, where: str) -> bytes:
    from .errors import MSG_MISSING_FILE

    if not path.is_file():
        raise InputError.make(MSG_MISSING_FILE, where=where, field="key", value=str(path))
    return path.read_bytes()


def load_signer(path: str | os.PathLike, where: str = "--sign-key"):
    """A securesystemslib CryptoSigner for the PEM private key at path."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    path = Path(path)
    data = _read(path, where)
    password = os.environ.get(PASSWORD_ENV)
    try:
        private = load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted" (or the reverse, which we ignore).
        if password:
            private = load_pem_private_key(data, None)
        else:
            raise InputError.make(MSG_KEY_PASSWORD, where=where, value=str(path), state="not set") from None
    except ValueError as e:
        if password and b"ENCRYPTED" in data:
            raise InputError.make(MSG_KEY_PASSWORD, where=where, value=str(path), state="set but wrong") from None
        raise InputError.make(MSG_KEY_UNREADABLE, where=where, value=str(path),
                              expected="PEM private key", reason=str(e).split("\n")[0]) from None
    _check_type(private.public_key(), where, path)
    return CryptoSigner(private)


def load_public_key(path: str | os.PathLike, where: str = "--key"):
    """A securesystemslib SSlibKey for the PEM public key at path (its keyid is derived from the key)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    path = Path(path)
    data = _read(path, where)
    if b"PRIVATE KEY" in data:
        raise InputError.make(MSG_KEY_UNREADABLE, where=where, value=str(path), expected="public key",
                              reason="it holds a private key; pass the .pub file that keygen wrote beside it")
    try:
        public = load_pem_public_key(data)
    except ValueError as e:
        raise InputError.make(MSG_KEY_UNREADABLE, where=where, value=str(path),
                              expected="PEM public key", reason=str(e).split("\n")[0]) from None
    _check_type(public, where, path)
    return SSlibKey.from_crypto(public)


def envelope(payload: bytes, signer=None) -> dict:
    """A DSSE envelope of an in-toto Statement; signed when a signer is given, else with no signatures."""
    from securesystemslib.dsse import Envelope

    env = Envelope(payload, PAYLOAD_TYPE, {})
    if signer is not None:
        env.sign(signer)
    return env.to_dict()


def read_envelope(data: dict):
    """A securesystemslib Envelope from its JSON form; ValueError with a one-line reason when malformed."""
    import binascii

    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import FormatError

    if not isinstance(data, dict) or not isinstance(data.get("signatures"), list):
        raise ValueError("not a DSSE envelope (payload, payloadType and a list of signatures)")
    try:
        return Envelope.from_dict(copy.deepcopy(data))   # from_dict rewrites the signature dicts in place
    except (KeyError, TypeError, ValueError, binascii.Error, FormatError) as e:
        raise ValueError(f"not a DSSE envelope ({type(e).__name__}: {e})") from None


def verify_envelope(env, key) -> None:
    """Raise SignatureError unless env carries a valid signature by key over its payload (DSSE PAE)."""
    from securesystemslib.exceptions import VerificationError

    if not env.signatures:
        raise SignatureError("the attestation is not signed")
    if key.keyid not in env.signatures:
        ids = ", ".join(sorted(k[:12] for k in env.signatures))
        raise SignatureError(f"no signature by key {key.keyid[:12]} (signed by {ids})")
    try:
        env.verify([key], 1)
    except VerificationError:
        raise SignatureError(f"the signature by key {key.keyid[:12]} does not match the attestation's contents") \
            from None
