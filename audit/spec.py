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
DATA_SUFFIXES = (".csv", ".parquet", ".jsonl")
SPLIT_KEYS = {"builtin", "path", "split", "sample", "skip", "label", "text", "template", "positive_label",
              "mix"}


@dataclass(frozen=True)
class SplitSource:
    """Where one split's rows come from; label/text overrides serve source_eval, which has its own task."""

    name: str
    builtin: str | None = None
    path: Path | None = None
    split: str | None = None
    sample: int | None = None
    skip: int = 0
    label: str | None = None
    text: str | None = None
    template: str | None = None
    positive_label: str | None = None
    mix: tuple | None = None          # (column, ((value, share), ...)): rows per value (sampling.py)


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
    source_file: Path | None = None
    sweep: object = None            # sweep.SweepBlock: the entries of `transfer-audit sweep` (None: not a sweep)


def template_fields(template: str) -> list[str]:
    """Column names a template refers to ({age} ...); format-spec errors become InputErrors upstream."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _split(section: Section, key: str, base_dir: Path, required: bool, task=None) -> SplitSource | None:
    if section.data.get(key) is None:
        if required:
            raise InputError(f"{section.file}: data.{key} is missing. Give it as "
                             "{builtin: adult, split: train} or {path: data/file.csv}.")
        return None
    s = section.child(key, SPLIT_KEYS)
    builtin = s.str("builtin", choices=BUILTINS)
    path = s.str("path")
    if (builtin is None) == (path is None):
        raise s.fail("builtin", "exactly one of 'builtin' or 'path'", s.data)
    image = task is Task.IMAGE
    if builtin is not None and (builtin in IMAGE_BUILTINS) != image:
        raise s.fail("builtin", f"a builtin for task {(task or Task.TEXT).value}: one of "
                     + ", ".join(b for b in BUILTINS if (b in IMAGE_BUILTINS) == image), builtin)
    resolved = None
    if path is not None:
        resolved = (base_dir / path).resolve()
        if not resolved.exists():
            raise InputError.make(MSG_MISSING_FILE, where=section.file, field=s.field("path"), value=path)
        if image and resolved.is_dir():
            pass                      # a folder of class sub-folders (vision/sources.py)
        elif resolved.is_dir():
            if not any(resolved.rglob("*.parquet")):
                raise s.fail("path", "a .csv, .parquet or .jsonl file, or a folder of Parquet files", path)
        elif resolved.suffix.lower() not in DATA_SUFFIXES:
            kinds = " or a folder of class sub-folders" if image else ", or a folder of Parquet files"
            raise s.fail("path", "a .csv, .parquet or .jsonl file" + kinds, path)
    template = s.str("template")
    if template is not None:
        _check_template(s, "template", template)
    return SplitSource(
        name=key, builtin=builtin, path=resolved, split=s.str("split"),
        sample=s.int("sample", lo=1), skip=s.int("skip", 0, lo=0) or 0, label=s.str("label"),
        text=s.str("text"), template=template, positive_label=_label_value(s, "positive_label"),
        mix=parse_mix(s),
    )


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
    file, base_dir = str(path), path.resolve().parent
    top = Section(raw, file, "", {"name", "task", "seed", "data", "model", "checks", "policy", "output",
                                       "sweep"},
                  {"name", "data", "model"})
    name = top.str("name")
    if any(c in name for c in "/\\\0") or name.startswith("."):
        raise top.fail("name", "a plain name without path separators", name)
    task = Task(top.str("task", "text-classification", choices={t.value for t in Task}))
    seed = top.int("seed", 0, lo=0, hi=2**32 - 1)

    d = top.child("data", {"train", "reference", "current", "source_eval", "template", "text", "label",
                           "positive_label", "sensitive", "features", "image"},
                {"train", "reference", "current", "label"})
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
        train=_split(d, "train", base_dir, True, task), reference=_split(d, "reference", base_dir, True, task),
        current=_split(d, "current", base_dir, True, task),
        source_eval=_split(d, "source_eval", base_dir, False, task),
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
                     policy=policy_path, output=output, source_file=path.resolve(), sweep=sweep)


def _image_section(d: Section, task: Task, base_dir: Path) -> ImageSpec | None:
    """data.image for image tasks (an empty section means every default); refused for other tasks."""
    if task is not Task.IMAGE:
        if d.data.get("image") is not None:
            raise d.fail("image", f"absent for task {task.value} (data.image is for image-classification)")
        return None
    return parse_image(d, base_dir)


def _model_ref(m: Section, key: str, base_dir: Path) -> str | None:
    value = m.str(key)
    if value is None or value.startswith("package:"):
        return value
    resolved = (base_dir / value).resolve()
    if not resolved.is_dir():
        raise InputError.make(MSG_MISSING_FILE if not resolved.exists() else MSG_BAD_VALUE, where=m.file,
                              field=m.field(key), value=value, expected="a model folder")
    return str(resolved)


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
