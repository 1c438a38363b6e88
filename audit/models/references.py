"""Model references, resolved to a local folder without any download:

- a local folder (absolute, or relative to the spec);
- `package:NAME`, a registry package that ships a model (`get_model_path()`);
- a Hugging Face Hub id `org/name` or `org/name@revision`, found in the local HF cache (HF_HUB_CACHE, else
  HF_HOME/hub, read when the run starts) with huggingface_hub's own `snapshot_download(local_files_only=True)`;
- an MLflow model URI (`models:/name/1`, `models:/name@alias`, `runs:/<run id>/path`) when mlflow is installed.

A resolved reference remembers what reports may say about it: the Hub id and commit when known, otherwise a
name that is never an absolute path.
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..errors import InputError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}(/[\w.\-]{1,96})?(@[\w.\-/]{1,200})?$")
MLFLOW_SCHEMES = ("models:/", "runs:/")
CACHE_REPO = re.compile(r"^(?:models|datasets)--(.+)$")     # huggingface_hub's repo_folder_name()


class RefKind(str, Enum):
    FOLDER = "folder"
    PACKAGE = "package"
    HUB = "hub"
    MLFLOW = "mlflow"


@dataclass(frozen=True)
class ResolvedModel:
    path: Path                      # the local folder the loaders read
    kind: RefKind
    name: str                       # what reports show: a Hub id, package:NAME, an MLflow URI or a folder name
    hub_id: str | None = None
    revision: str | None = None     # the commit the cache holds for a Hub id

    def provenance(self) -> dict:
        out = {"ref_kind": self.kind.value, "display": self.name}
        if self.hub_id:
            out["hub_id"] = self.hub_id
        if self.revision:
            out["revision"] = self.revision
        return out


def hub_cache_dir() -> Path:
    """The HF hub cache as huggingface_hub defines it, from the environment as it is now (its own constants are
    read once, when it is first imported)."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    legacy = os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expanduser(os.path.expandvars(os.environ.get("HF_HUB_CACHE") or legacy)))


def cache_repo_of(folder: Path) -> tuple[Path, str, str] | None:
    """(repo folder, Hub id, commit) when `folder` is a snapshot in an HF cache layout
    (<cache>/models--org--name/snapshots/<commit>[/sub/folder], or datasets--...), else None."""
    parts = folder.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots":
            m = CACHE_REPO.match(parts[i - 1])
            if m and i + 1 < len(parts):
                return Path(*parts[:i]), m.group(1).replace("--", "/"), parts[i + 1]
    return None


def resolve_model(ref: str, field: str, cache_root: Path | None = None) -> ResolvedModel:
    """A model reference as a local folder; every failure is an InputError naming the field and the value."""
    if ref.startswith("package:"):
        return ResolvedModel(_package_path(ref.split(":", 1)[1], field), RefKind.PACKAGE, ref)
    if ref.startswith(MLFLOW_SCHEMES):
        return _mlflow(ref, field, cache_root)
    folder = Path(ref).expanduser()
    if folder.is_dir():
        return local_folder(folder)
    if HUB_ID.match(ref) and not ref.startswith((".", "/", "~")):
        return _hub(ref, field)
    raise InputError(f"{field}: {ref!r} is not a model folder, nor package:NAME, an MLflow URI (models:/, runs:/) "
                     "or a Hugging Face Hub id (org/name[@revision]).")


def local_folder(folder: Path) -> ResolvedModel:
    """A folder; one inside an HF cache snapshot keeps its Hub id and commit."""
    cached = cache_repo_of(folder.absolute())
    if cached:
        return ResolvedModel(folder, RefKind.FOLDER, cached[1], hub_id=cached[1], revision=cached[2])
    return ResolvedModel(folder, RefKind.FOLDER, folder.absolute().name)


def _package_path(name: str, field: str) -> Path:
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise InputError(f"{field}: package {name!r} is not installed (pip install "
                         f"{name.replace('_', '-')}).") from None
    getter = getattr(module, "get_model_path", None)
    if getter is None:
        raise InputError(f"{field}: package {name!r} has no get_model_path(); it does not ship a model.")
    return Path(getter())


def _hub(ref: str, field: str) -> ResolvedModel:
    """`org/name[@revision]` from the local cache only; a branch or tag is read from the cache's refs/."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    repo_id, _, revision = ref.partition("@")
    cache = hub_cache_dir()
    try:
        folder = snapshot_download(repo_id, revision=revision or None, cache_dir=str(cache), local_files_only=True)
    except LocalEntryNotFoundError:
        raise InputError(
            f"{field}: {ref!r} is neither a folder nor in the local Hugging Face cache ({cache}; set HF_HUB_CACHE or "
            f"HF_HOME to another). Download it once with `hf download {repo_id}"
            f"{' --revision ' + revision if revision else ''}`; audits never download.") from None
    except HFValidationError as e:
        raise InputError(f"{field}: {ref!r} is not a valid Hub id ({str(e).splitlines()[0]}).") from None
    folder = Path(folder)
    return ResolvedModel(folder, RefKind.HUB, repo_id, hub_id=repo_id, revision=folder.name)


def _mlflow(uri: str, field: str, cache_root: Path | None) -> ResolvedModel:
    """An MLflow model URI downloaded (copied, for a local store) from the tracking server the environment names
    (MLFLOW_TRACKING_URI), then the Hugging Face folder inside the transformers flavour."""
    try:
        import mlflow.artifacts
    except ImportError:
        raise InputError(f"{field}: {uri!r} is an MLflow model URI, and mlflow is not installed. Install the extra: "
                         "pip install 'transfer-audit[mlflow]'.") from None
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="mlflow-", dir=_mkdir(cache_root / "mlflow") if cache_root else None))
    saved = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"        # progress goes through our logging
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    except Exception as e:  # mlflow raises MlflowException and OSError subclasses; the message is what matters
        raise InputError(f"{field}: cannot resolve MLflow URI {uri!r}: {str(e).splitlines()[0][:300]}") from None
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved
    return ResolvedModel(hf_folder_in_mlflow_model(local, uri, field), RefKind.MLFLOW, uri)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def hf_folder_in_mlflow_model(local: Path, uri: str, field: str) -> Path:
    """The folder with config.json (or adapter_config.json) inside an MLflow transformers-flavour model:
    model/ for a full model, peft/ for an adapter; the model's own folder when it was logged as plain files."""
    for sub in ("peft", "model", ""):
        folder = local / sub if sub else local
        if (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file():
            return folder
    raise InputError(f"{field}: the MLflow model {uri!r} holds no Hugging Face model folder (no config.json in "
                     "model/ or peft/). Log it with mlflow.transformers.log_model.")

