"""The image parts of audit.yaml: the `data.image` section (path column, input size, attribution baseline,
region of interest) and a split's `mix` (how many rows each value of a column contributes).

    data:
      image: {column: path, size: 128, baseline: blurred, region: [0, 0, 0.2, 0.2]}
      train:   {builtin: elpv, split: train, sample: 500, mix: {type: {mono: 0.8, poly: 0.2}}}
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import MSG_MISSING_FILE, InputError
from .options import option, option_names, parse_into
from .validate import Section

REGION_KEYS = {"region", "region_mask"}
BOX = "a box [x0, y0, x1, y1] of fractions of the width and height (0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1) or a " \
      "list of such boxes"


@dataclass(frozen=True)
class ImageSpec:
    """data.image. `region` (boxes) and `region_mask` (a mask image) are parsed by hand: their shapes are
    not plain option types."""

    column: str = option("path", "column of a table holding each image's file path (relative paths resolve "
                                 "against the table's folder); class folders and builtin elpv name it path")
    size: int | None = option(None, "side in pixels every image is resized to (default: the base model's "
                                    "preprocessing config)", lo=16, hi=1024)
    baseline: str = option("black", "integrated-gradients baseline: black (pixels 0) or blurred (a Gaussian blur "
                                    "of the image, which credits dark structure too)", choices=("black", "blurred"))
    region: tuple = ()                  # boxes (x0, y0, x1, y1), fractions of width and height
    region_mask: Path | None = None     # a mask image at the images' size, non-zero inside


def parse_image(d: Section, base_dir: Path) -> ImageSpec:
    s = d.child("image", set(option_names(ImageSpec)) | REGION_KEYS)
    spec = parse_into(s, ImageSpec)
    region = _boxes(s) if s.data.get("region") is not None else ()
    mask = s.str("region_mask")
    if region and mask is not None:
        raise s.fail("region_mask", "absent when 'region' boxes are given (one region of interest)", mask)
    mask_path = None
    if mask is not None:
        mask_path = (base_dir / mask).resolve()
        if not mask_path.is_file():
            raise InputError.make(MSG_MISSING_FILE, where=s.file, field=s.field("region_mask"), value=mask)
    return replace(spec, region=region, region_mask=mask_path)


def _boxes(s: Section) -> tuple:
    raw = s.data["region"]
    boxes = raw if isinstance(raw, list) and raw and all(isinstance(b, list) for b in raw) else [raw]
    out = []
    for box in boxes:
        ok = isinstance(box, list) and len(box) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        if not ok or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise s.fail("region", BOX, raw)
        out.append(tuple(float(v) for v in box))
    return tuple(out)


def parse_mix(s: Section) -> tuple | None:
    """`mix: {column: {value: share, ...}}` -> (column, ((value, share), ...)); shares sum to 1."""
    raw = s.data.get("mix")
    if raw is None:
        return None
    expected = "a mapping of one column to {value: share} with shares in [0, 1] that sum to 1"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise s.fail("mix", expected, raw)
    column, shares = next(iter(raw.items()))
    if not isinstance(shares, dict) or not shares or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in shares.values()):
        raise s.fail("mix", expected, raw)
    if abs(sum(shares.values()) - 1) > 1e-6:
        raise s.fail("mix", expected, raw)
    if s.data.get("sample") is None:
        raise s.fail("mix", "given together with 'sample' (the shares are of the sampled rows)", raw)
    return str(column), tuple((str(v), float(x)) for v, x in shares.items())
