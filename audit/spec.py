"""AuditSpec: the validated, frozen form of audit.yaml. Parsing is cheap and touches no model or data."""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import MSG_BAD_VALUE, MSG_MISSING_FILE, InputError
from .options import option, option_names, parse_into
from .spec_image import ImageSpec, parse_image, parse_mix
from .validate import Section
from .yamlio import load_yaml_file


class Task(str, Enum):
    TEXT = "text-classification"
    TABULAR = "tabular-classification"
    IMAGE = "image-classification"


class FinetuneMethod(str, Enum):
    FULL = "full"
    LORA = "lora"
    HEAD = "head"
    LAST_BLOCKS = "last_blocks"     # image tasks: the backbone's last `blocks` blocks and the head


BUILTINS = ("adult", "compas", "german", "rotten_tomatoes", "imdb", "elpv")
IMAGE_BUILTINS = ("elpv",)
SPLIT_KEYS = {"builtin", "path", "hub", "config", "split", "sample", "skip", "label", "text", "template",
              "positive_label", "mix", "stream"}
SOURCE_KEYS = ("builtin", "path", "hub")
DICT_SPEC = "audit spec (dict)"


@dataclass(frozen=True)
class SplitSource:
    """Where one split's rows come from (exactly one of builtin, path, url, hub, or a DataFrame the caller gives
    to transfer_audit.run); label/text overrides serve source_eval, which has its own task."""

    name: str
    builtin: str | None = None
    path: Path | None = None          # a local file or folder
    url: str | None = None            # an fsspec URL
    hub: str | None = None            # a dataset id in the local Hugging Face cache, org/name[@revision]
    config: str | None = None         # its configuration (subset)
    frame: bool = False               # rows come from a pandas DataFrame given to transfer_audit.run
    split: str | None = None
    sample: int | None = None
    skip: int = 0
    label: str | None = None
    text: str | None = None
    template: str | None = None
    positive_label: str | None = None
    mix: tuple | None = None          # (column, ((value, share), ...)): rows per value (sampling.py)
    stream: bool = False              # current split only: Parquet read in chunks into sufficient statistics
    pattern: str | None = None        # a streamed split given as a glob of Parquet files


@dataclass(frozen=True)
class DataSpec:
    train: SplitSource
    reference: SplitSource
    current: SplitSource
    label: str
    source_eval: SplitSource | None = None
    text: str | None = None
    template: str | None = None
    positive_label: str | None = None
    sensitive: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    image: ImageSpec | None = None    # image tasks: data.image (spec_image.py)

    def splits(self) -> dict[str, SplitSource]:
        out = {"train": self.train, "reference": self.reference, "current": self.current}
        if self.source_eval is not None:
            out["source_eval"] = self.source_eval
        return out


@dataclass(frozen=True)
class FinetuneSpec:
    """model.finetune: the recipe used when model.adapted is null."""

    method: FinetuneMethod = option(FinetuneMethod.FULL, "which weights train: all, LoRA adapters, the head only, "
                                                         "or (images) the last blocks and the head")
    epochs: int = option(1, "passes over the train split", lo=1, hi=100)
    learning_rate: float = option(5e-5, "AdamW learning rate", lo=1e-8, hi=1.0)
    batch_size: int = option(32, "rows per optimisation step", lo=1, hi=4096)
    max_length: int = option(128, "tokens per text at most (fine-tuning and inference)", lo=8, hi=512)
    lora_r: int = option(8, "LoRA rank", lo=1, hi=256)
    lora_alpha: int = option(16, "LoRA scaling alpha", lo=1, hi=1024)
    blocks: int = option(2, "last_blocks (image tasks): how many of the backbone's last blocks train with the head",
                         lo=1, hi=100)
    seed: int | None = option(None, "fine-tuning seed (default: the spec's seed; a sweep varies it while the data "
                                    "sample stays the same)", lo=0, hi=2**32 - 1)

    def seed_or(self, spec_seed: int) -> int:
        return spec_seed if self.seed is None else self.seed


@dataclass(frozen=True)
class ModelSpec:
    base: str
    adapted: str | None
    finetune: FinetuneSpec
    allow_pickle: bool = False


@dataclass(frozen=True)
class AuditSpec:
    name: str
    task: Task
    seed: int
    data: DataSpec
    model: ModelSpec
    checks: dict = field(default_factory=dict)     # check name -> validated config object
    policy: Path | None = None
    output: Path = Path("runs")
    source_file: Path | None = None     # None for a spec given as a dict (transfer_audit.run)
    digest: str | None = None           # sha256 of a dict spec's canonical JSON
    sweep: object = None            # sweep.SweepBlock: the entries of `transfer-audit sweep` (None: not a sweep)

    @property
    def where(self) -> str:
        """How error messages name the spec."""
        return str(self.source_file) if self.source_file is not None else DICT_SPEC


def template_fields(template: str) -> list[str]:
    """Column names a template refers to ({age} ...); format-spec errors become InputErrors upstream."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _split(section: Section, key: str, base_dir: Path, required: bool, task=None,
           provided=frozenset()) -> SplitSource | None:
    if section.data.get(key) is None:
        if key in provided:
            return SplitSource(name=key, frame=True)
        if required:
            raise InputError(f"{section.file}: data.{key} is missing. Give it as "
                             "{builtin: adult, split: train}, {path: data/file.csv} or {hub: org/name, split: "
                             "train}.")
        return None
    s = section.child(key, SPLIT_KEYS)
    builtin = s.str("builtin", choices=BUILTINS)
    path, hub = s.str("path"), s.str("hub")
    given = [k for k, v in (("builtin", builtin), ("path", path), ("hub", hub)) if v is not None]
    if key in provided:
        if given:
            raise s.fail(given[0], f"absent: data.{key} comes from the DataFrame given to transfer_audit.run",
                         s.data[given[0]])
    elif len(given) != 1:
        raise s.fail("builtin", "exactly one of 'builtin', 'path' or 'hub'", s.data)
    image = task is Task.IMAGE
    if builtin is not None and (builtin in IMAGE_BUILTINS) != image:
        raise s.fail("builtin", f"a builtin for task {(task or Task.TEXT).value}: one of "
                     + ", ".join(b for b in BUILTINS if (b in IMAGE_BUILTINS) == image), builtin)
    resolved, url, pattern = None, None, None
    stream = bool(s.bool("stream", False))
    if stream:
        resolved, pattern = _stream_path(s, key, path, base_dir, image)
    elif path is not None:
        resolved, url = _data_path(s, path, base_dir, image)
    if hub is not None:
        from .models.references import HUB_ID

        if not HUB_ID.match(hub) or hub.startswith((".", "/")):
            raise s.fail("hub", "a Hugging Face dataset id, org/name[@revision]", hub)
    template = s.str("template")
    if template is not None:
        _check_template(s, "template", template)
    return SplitSource(
        name=key, builtin=builtin, path=resolved, url=url, hub=hub, config=s.str("config"), frame=key in provided,
        split=s.str("split"), sample=s.int("sample", lo=1), skip=s.int("skip", 0, lo=0) or 0, label=s.str("label"),
        text=s.str("text"), template=template, positive_label=_label_value(s, "positive_label"),
        mix=parse_mix(s), stream=stream, pattern=pattern,
    )


def _stream_path(s: Section, key: str, path: str | None, base_dir: Path, image: bool) -> tuple[Path, str | None]:
    """A streamed split (stream.py): the current split, as a local Parquet file, folder or glob of files."""
    from .tables import file_format, is_url

    if key != "current":
        raise s.fail("stream", "absent: only data.current can be streamed (the split the gate scores)", True)
    if image or path is None or is_url(path):
        raise s.fail("path" if path else "stream", "a local Parquet file, folder or glob of files (stream: true)",
                     path if path else True)
    for absent in ("mix", "skip"):
        if s.data.get(absent) is not None:
            raise s.fail(absent, "absent: a streamed split reads every row", s.data[absent])
    if any(ch in path for ch in "*?["):            # a glob: matched when the split is read (stream.stream_files)
        pattern = str(base_dir.resolve() / Path(path).expanduser())
        return Path(pattern).parent, pattern
    resolved = (base_dir / Path(path).expanduser()).resolve()
    if not resolved.exists():
        raise InputError.make(MSG_MISSING_FILE, where=s.file, field=s.field("path"), value=path)
    if resolved.is_file() and (file_format(resolved.name) or ("",))[0] != "parquet" or (
            resolved.is_dir() and not any(resolved.rglob("*.parquet"))):
        raise s.fail("path", "a Parquet file, a folder of Parquet files or a glob (stream: true)", path)
    return resolved, None


def _data_path(s: Section, path: str, base_dir: Path, image: bool = False) -> tuple[Path | None, str | None]:
    """(local path, None) or (None, URL); a local path must exist and have a readable format (for an image task
    a folder may also be a folder of class sub-folders, read by vision/sources.py)."""
    from .tables import SUPPORTED, file_format, folder_format, is_url

    if is_url(path):
        if path.startswith("file://"):
            path = path[len("file://"):]
        else:
            return None, path
    resolved = (base_dir / Path(path).expanduser()).resolve()
    if not resolved.exists():
        raise InputError.make(MSG_MISSING_FILE, where=s.file, field=s.field("path"), value=path)
    if image and resolved.is_dir():
        return resolved, None
    if resolved.is_dir() and folder_format(resolved) is None or resolved.is_file() and not file_format(resolved.name):
        raise s.fail("path", SUPPORTED + (" or a folder of class sub-folders" if image else ""), path)
    return resolved, None


def _label_value(s: Section, key: str) -> str | None:
    value = s.data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise s.fail(key, "a label value (string or whole number)")
    return str(value)


def _check_template(s: Section, key: str, template: str) -> None:
    try:
        names = template_fields(template)
    except ValueError as e:
        raise s.fail(key, f"a format template with {{column}} placeholders ({e})", template) from None
    if not names:
        raise s.fail(key, "a template naming at least one {column}", template)


def parse_spec(path: str | Path, checks_registry=None) -> AuditSpec:
    """Validate audit.yaml strictly; relative paths resolve against the spec's folder."""
    path = Path(path)
    raw = load_yaml_file(path, "audit spec")
    return parse_spec_data(raw, str(path), path.resolve().parent, path.resolve(), checks_registry)


def parse_spec_dict(raw: dict, base_dir: Path | None = None, provided=frozenset(), checks_registry=None) -> AuditSpec:
    """A spec given as a Python dict (transfer_audit.run): relative paths resolve against base_dir (default: the
    working folder); splits named in `provided` come from DataFrames."""
    import hashlib
    import json

    if not isinstance(raw, dict):
        raise InputError(f"{DICT_SPEC}: the spec must be a mapping of audit spec fields. Got {type(raw).__name__} "
                         "instead.")
    try:
        digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    except (TypeError, ValueError):
        digest = None
    spec = parse_spec_data(raw, DICT_SPEC, (base_dir or Path.cwd()).resolve(), None, checks_registry, provided)
    from dataclasses import replace

    return replace(spec, digest=digest)


def parse_spec_data(raw: dict, file: str, base_dir: Path, source_file: Path | None, checks_registry=None,
                    provided=frozenset()) -> AuditSpec:
    top = Section(raw, file, "", {"name", "task", "seed", "data", "model", "checks", "policy", "output",
                                   "sweep"},
                  {"name", "data", "model"})
    name = top.str("name")
    if any(c in name for c in "/\\\0") or name.startswith("."):
        raise top.fail("name", "a plain name without path separators", name)
    task = Task(top.str("task", "text-classification", choices={t.value for t in Task}))
    seed = top.int("seed", 0, lo=0, hi=2**32 - 1)

    d = top.child("data", {"train", "reference", "current", "source_eval", "template", "text", "label",
                           "positive_label", "sensitive", "features", "image"}, {"label"})
    template, text = d.str("template"), d.str("text")
    image = _image_section(d, task, base_dir)
    if image is not None:
        if template is not None or text is not None:
            raise d.fail("text" if text is not None else "template", "absent for task image-classification "
                         "(the image path column is data.image.column)")
    elif (template is None) == (text is None):
        raise d.fail("text", "exactly one of 'text' (a column) or 'template' (a format string)",
                     {"text": text, "template": template})
    if template is not None:
        _check_template(d, "template", template)
    if task is Task.TABULAR and template is None:
        raise d.fail("template", "a template that serialises the tabular columns to text", None)
    data = DataSpec(
        train=_split(d, "train", base_dir, True, task, provided),
        reference=_split(d, "reference", base_dir, True, task, provided),
        current=_split(d, "current", base_dir, True, task, provided),
        source_eval=_split(d, "source_eval", base_dir, False, task, provided),
        text=text, template=template, label=d.str("label"), positive_label=_label_value(d, "positive_label"),
        sensitive=tuple(d.str_list("sensitive", []) or []), features=tuple(d.str_list("features", []) or []),
        image=image,
    )
    if data.source_eval is not None and data.source_eval.label is None:
        raise InputError(f"{file}: data.source_eval.label is missing. The source task has its own label "
                         "column; name it.")

    m = top.child("model", {"base", "adapted", "finetune", "allow_pickle"}, {"base"})
    finetune = parse_into(m.child("finetune", option_names(FinetuneSpec)), FinetuneSpec)
    if finetune.method is FinetuneMethod.LAST_BLOCKS and task is not Task.IMAGE:
        raise m.child("finetune", option_names(FinetuneSpec)).fail(
            "method", "full, lora or head (last_blocks is for image-classification)", finetune.method.value)
    model = ModelSpec(base=_model_ref(m, "base", base_dir), adapted=_model_ref(m, "adapted", base_dir),
                      finetune=finetune, allow_pickle=bool(m.bool("allow_pickle", False)))

    checks = _parse_checks(top, checks_registry)
    policy = top.str("policy")
    policy_path = None
    if policy is not None:
        policy_path = (base_dir / policy).resolve()
        if not policy_path.exists():
            raise InputError.make(MSG_MISSING_FILE, where=file, field="policy", value=policy)
    output = (base_dir / (top.str("output", "runs"))).resolve()
    sweep = None
    if top.data.get("sweep") is not None:
        from .sweep_plan import parse_sweep_block

        sweep = parse_sweep_block(top.child("sweep", {"adapted", "seeds"}), base_dir)
    return AuditSpec(name=name, task=task, seed=seed, data=data, model=model, checks=checks,
                     policy=policy_path, output=output, source_file=source_file, sweep=sweep)


def _image_section(d: Section, task: Task, base_dir: Path) -> ImageSpec | None:
    """data.image for image tasks (an empty section means every default); refused for other tasks."""
    if task is not Task.IMAGE:
        if d.data.get("image") is not None:
            raise d.fail("image", f"absent for task {task.value} (data.image is for image-classification)")
        return None
    return parse_image(d, base_dir)


def _model_ref(m: Section, key: str, base_dir: Path) -> str | None:
    """A local folder (made absolute), or a reference resolved when the run starts: package:NAME, an MLflow URI,
    a Hub id in the local cache (models/references.py)."""
    from .models.references import HUB_ID, MLFLOW_SCHEMES

    value = m.str(key)
    if value is None or value.startswith(("package:", *MLFLOW_SCHEMES)):
        return value
    resolved = (base_dir / Path(value).expanduser()).resolve()
    if resolved.is_dir():
        return str(resolved)
    if HUB_ID.match(value) and not value.startswith((".", "/", "~")) and not resolved.exists():
        return value
    raise InputError.make(MSG_MISSING_FILE if not resolved.exists() else MSG_BAD_VALUE, where=m.file,
                          field=m.field(key), value=value, expected="a model folder, package:NAME, an MLflow URI "
                                                                    "or a Hub id (org/name[@revision])")


def _parse_checks(top: Section, registry) -> dict:
    if registry is None:
        from .checks import CHECKS as registry
    raw = top.data.get("checks")
    if raw is None:
        raw = {name: {} for name in registry}
    c = Section(raw, top.file, "checks", set(registry))
    out = {}
    for name in raw:
        opts = c.data.get(name) or {}
        out[name] = registry[name].parse_config(Section(opts, top.file, f"checks.{name}",
                                                        registry[name].option_names))
    return out
