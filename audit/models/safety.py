"""File-format safety for model folders: safetensors only, pickle detected by content, no custom code."""
from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

from ..errors import MSG_UNSAFE_CODE, MSG_UNSAFE_PICKLE, InputError, UnsafeArtifactError

MAX_SAFETENSORS_HEADER = 100_000_000
PICKLE_FIRST_BYTES = set(b"(c]}IKLSVX\x8c")   # protocol 0/1 opcodes a pickle stream starts with


def looks_like_pickle(path: Path) -> bool:
    """True when the bytes are a pickle stream or a torch zip archive holding one (extension ignored)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if not head:
            return False
        if head[0] == 0x80 and len(head) > 1 and 1 <= head[1] <= 5:      # protocol 2+ header
            return True
        if head.startswith(b"PK\x03\x04"):
            try:
                with zipfile.ZipFile(path) as z:
                    return any(n.endswith(".pkl") or n.endswith("/data.pkl") for n in z.namelist())
            except zipfile.BadZipFile:
                return False
        if head.startswith(b"\x93NUMPY"):
            f.seek(0)
            header = f.read(512)
            return b"'O'" in header or b"|O" in header                    # object arrays are pickles
        if head[0] in PICKLE_FIRST_BYTES:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"."                                      # protocol 0/1 stream ends in STOP
    return False


def check_safetensors(path: Path) -> int:
    """Validate the header before any loader touches the file; returns the parameter count."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise UnsafeArtifactError(f"{path}: not a valid safetensors file (shorter than its 8-byte header).")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_SAFETENSORS_HEADER or n + 8 > size:
            raise UnsafeArtifactError(f"{path}: safetensors header length {n} is larger than the file or the "
                                      f"{MAX_SAFETENSORS_HEADER}-byte limit; the file is corrupt or crafted.")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UnsafeArtifactError(f"{path}: safetensors header is not valid JSON.") from None
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
             "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
    total, params, end = 0, 0, 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = t["data_offsets"]
            count = 1
            for d in t["shape"]:
                count *= int(d)
            width = sizes[t["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise UnsafeArtifactError(f"{path}: tensor {name!r} has a malformed safetensors entry.") from None
        if not (0 <= start <= stop) or stop - start != count * width:
            raise UnsafeArtifactError(f"{path}: tensor {name!r} has offsets {start}..{stop} that do not match "
                                      f"its shape and dtype.")
        total += stop - start
        end = max(end, stop)
        params += count
    if end != size - 8 - n or total != end:
        raise UnsafeArtifactError(f"{path}: safetensors offsets cover {total} bytes but the data section has "
                                  f"{size - 8 - n}; the file is truncated, overlapping or crafted.")
    return params


def cache_blobs(folder: Path) -> Path | None:
    """The blobs/ folder of the HF cache repo a snapshot folder belongs to (resolved), else None."""
    from .references import cache_repo_of

    cached = cache_repo_of(folder.absolute())
    return (cached[0] / "blobs").resolve() if cached else None


def check_link(link: Path, blobs: Path | None, rel: str, folder: Path, field: str) -> None:
    """A symbolic link is accepted only in an HF cache snapshot, pointing at a plain file in the same repo's
    blobs/ (how huggingface_hub stores files); anything else could make us read files outside the model."""
    target = link.resolve()
    if blobs is not None and target.parent == blobs and target.is_file() and not target.is_symlink():
        return
    where = ("outside its cache repo's blobs/ folder" if blobs is not None
             else "and model folders outside a Hugging Face cache snapshot must hold plain files")
    raise UnsafeArtifactError(f"{field}: {rel!r} in {folder} is a symbolic link to {str(target)!r}, {where} "
                              "(links can point anywhere on this machine).")


def check_model_dir(folder: Path, allow_pickle: bool, field: str) -> dict:
    """Refuse what could run code; returns {'pickle_accepted': bool, 'weights': [names]}."""
    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        raise UnsafeArtifactError("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set in the environment, which makes "
                                  "torch.load run pickled code; unset it to run an audit.")
    if not folder.is_dir():
        raise InputError(f"{field}: {str(folder)!r} is not a model folder.")
    weights, pickles = [], []
    blobs = cache_blobs(folder)
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel.startswith(".git/") or rel == ".git" or "/.cache" in f"/{rel}":
            continue
        if p.is_symlink():
            check_link(p, blobs, rel, folder, field)
        elif p.is_dir():
            continue
        if p.suffix == ".py":
            raise UnsafeArtifactError.make(MSG_UNSAFE_CODE, where=field, value=str(folder),
                                           reason=f"Python file {rel!r}")
        if p.name == "config.json" or p.name == "adapter_config.json":
            try:
                cfg = json.loads(p.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise InputError(f"{field}: {p} is not valid JSON ({e}).") from None
            if isinstance(cfg, dict) and "auto_map" in cfg:
                raise UnsafeArtifactError.make(MSG_UNSAFE_CODE, where=field, value=str(folder),
                                               reason=f"'auto_map' in {rel}")
        if p.suffix == ".safetensors":
            check_safetensors(p)
            weights.append(rel)
        elif looks_like_pickle(p):      # every other file, whatever its extension
            pickles.append(rel)
    if pickles and not allow_pickle:
        raise UnsafeArtifactError.make(MSG_UNSAFE_PICKLE, where=field, value=str(folder / pickles[0]))
    if not weights and not pickles:
        raise InputError(f"{field}: {str(folder)!r} holds no *.safetensors weights.")
    return {"pickle_accepted": bool(pickles), "weights": weights + pickles}
