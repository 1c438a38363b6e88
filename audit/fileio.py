"""Hashing and crash-safe writes: every output goes to a temp file in the same folder, then os.replace."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def tree_files(folder: str | os.PathLike) -> list[tuple[str, Path]]:
    """The files a folder digest covers, as sorted (relative posix path, path); .git and caches ignored."""
    folder = Path(folder)
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_dir() or rel.startswith(".git") or "/.cache" in f"/{rel}" or "__pycache__" in rel:
            continue
        out.append((rel, p))
    return out


def tree_digest(file_digests) -> str:
    """The folder digest from (relative path, sha256) pairs in tree_files order."""
    h = hashlib.sha256()
    for rel, digest in file_digests:
        h.update(rel.encode() + b"\0" + digest.encode() + b"\n")
    return h.hexdigest()


def sha256_tree(folder: str | os.PathLike) -> str:
    """One digest over a folder: sorted relative paths and file digests; .git and caches ignored."""
    return tree_digest((rel, sha256_file(p)) for rel, p in tree_files(folder))


def digest_of(*parts) -> str:
    """Stable digest of JSON-serialisable parts (cache keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc), else by setting it back."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Write via a temp file and rename. The file gets `mode`, or what open() would give (0666 less the umask):
    mkstemp's 0600 would hide reports from the people they are for."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def confined(base: Path, candidate: Path, field: str) -> Path:
    """Resolve candidate and refuse it when it escapes base (output paths stay inside the output folder)."""
    from .errors import MSG_BAD_VALUE, InputError

    resolved = candidate.resolve()
    if resolved != base.resolve() and base.resolve() not in resolved.parents:
        raise InputError.make(MSG_BAD_VALUE, where=str(base), field=field,
                              expected=f"a path inside {base}", value=str(candidate))
    return resolved


def output_folder(path: str | os.PathLike, where: str, field: str) -> Path:
    """An output folder that exists or can be made; a file in its place (or on its way) is a usage error."""
    from .errors import MSG_BAD_VALUE, InputError

    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise InputError.make(MSG_BAD_VALUE, where=where, field=field, value=str(path),
                                      expected=f"a folder ({str(p)!r} is an existing file)")
            break
    return path
