"""Image models and the converter: the real EfficientNet-Lite0 checkpoint converts and classifies a real
photo; malicious pickles are refused before any of their code runs; tiny models of both families give
logits, features and stage states from one pass."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from vision_fixtures import lite0_pth, one_torch_thread, sklearn_photo, tiny_convnext, tiny_efficientnet, tiny_vit

from transfer_audit.cli import main
from transfer_audit.errors import ExitCode, InputError
from transfer_audit.vision.models import load_image_model
from transfer_audit.vision.preprocess import load_images, normalise

_threads = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def lite0(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0"
    assert main(["convert", str(lite0_pth()), "--arch", "efficientnet-lite0", "--out", str(out)]) == 0
    return out


def test_converted_lite0_classifies_real_photos(lite0, capsys):
    """The real-backbone test: scikit-learn's flower.jpg is ImageNet 985 (daisy), china.jpg 442 (bell cote)."""
    from transfer_audit.vision.inference import run_model

    model = load_image_model(lite0)
    assert model.architecture == "efficientnet-lite0" and model.num_classes == 1000
    imgs, _ = load_images([sklearn_photo("flower.jpg"), sklearn_photo("china.jpg")], model.preprocess)
    out = run_model(model, imgs, stages=True)
    assert out.probabilities.argmax(1).tolist() == [985, 442]
    assert out.features.shape == (2, 1280)
    assert [s.shape[1] for s in out.stages] == [16, 24, 40, 80, 112, 192, 320, 1280]
    plain = run_model(model, imgs, channels_last=False)
    assert np.allclose(plain.logits, out.logits, atol=1e-4)
    unfused = run_model(model, imgs, stages=True, fused=False)      # batch norms not folded
    assert np.allclose(unfused.logits, out.logits, atol=1e-3) and np.allclose(unfused.features, out.features, atol=1e-3)
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(unfused.stages, out.stages))


def test_converted_weights_are_the_checkpoints(lite0):
    import torch
    from safetensors.torch import load_file

    original = torch.load(lite0_pth(), weights_only=True)
    written = load_file(str(lite0 / "model.safetensors"))
    assert set(original) == set(written) and all(torch.equal(original[k], written[k]) for k in original)
    assert oct(lite0.stat().st_mode & 0o777) != oct(0o700)          # published, not left private


def _payload(canary: Path):
    class Payload:
        def __reduce__(self):
            return (open, (str(canary), "w"))
    return Payload()


@pytest.mark.parametrize("kind", ["torch.save", "pickle-protocol-2", "pickle-protocol-0"])
def test_malicious_pickle_is_refused_and_its_canary_never_created(tmp_path, kind, capsys):
    live, canary = tmp_path / "live-canary", tmp_path / "canary"
    for target, path in ((live, tmp_path / "live.pth"), (canary, tmp_path / "evil.pth")):
        state = {"_conv_stem.weight": _payload(target)}
        if kind == "torch.save":
            import torch

            torch.save(state, path)
        else:
            path.write_bytes(pickle.dumps(state, protocol=2 if kind.endswith("2") else 0))
    # the payload is live: an unrestricted unpickler does create its canary (our own harmless payload)
    raw = (tmp_path / "live.pth").read_bytes()
    if kind == "torch.save":
        with zipfile.ZipFile(tmp_path / "live.pth") as z:
            raw = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    pickle.loads(raw)
    assert live.exists()
    rc = main(["convert", str(tmp_path / "evil.pth"), "--arch", "efficientnet-lite0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == ExitCode.UNSAFE_ARTIFACT and "Traceback" not in err
    reason = "Unsupported operand 100" if kind == "pickle-protocol-0" else "Unsupported global: GLOBAL io.open"
    assert f"refused by torch.load(weights_only=True) ({reason}" in err
    assert not canary.exists() and not (tmp_path / "o").exists()


def test_forced_unsafe_torch_load_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert main(["convert", str(lite0_pth()), "--arch", "efficientnet-lite0", "--out", str(tmp_path / "o")]) == 3


def _random_lite0_state(num_classes=4):
    import torch

    from transfer_audit.vision.models import Architecture, build_efficientnet

    torch.manual_seed(0)
    return build_efficientnet(Architecture.LITE0, num_classes).state_dict()


def test_key_map_wrapped_checkpoint_and_strict_load(tmp_path, capsys):
    import torch

    state = _random_lite0_state()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()},
                "aux.weight": torch.zeros(2)}, tmp_path / "ckpt.pt")
    args = ["convert", str(tmp_path / "ckpt.pt"), "--arch", "efficientnet-lite0"]
    assert main(args + ["--out", str(tmp_path / "a")]) == ExitCode.INPUT_ERROR
    assert "weights do not match" in capsys.readouterr().err
    (tmp_path / "map.yaml").write_text("'^module\\.': ''\n'num_batches_tracked$': null\n")
    assert main(args + ["--out", str(tmp_path / "b"), "--key-map", str(tmp_path / "map.yaml"),
                        "--image-size", "64"]) == ExitCode.INPUT_ERROR      # dropped BN counters: missing keys
    assert "missing (first: _blocks.0._bn1.num_batches_tracked" in capsys.readouterr().err
    (tmp_path / "map.yaml").write_text("'^module\\.': ''\n")
    assert main(args + ["--out", str(tmp_path / "c"), "--key-map", str(tmp_path / "map.yaml"),
                        "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert f"{len(state)} keys renamed, 0 dropped" in out
    model = load_image_model(tmp_path / "c")
    assert model.num_classes == 4 and model.preprocess.height == 64
    # wrong shapes are named
    bad = dict(state)
    bad["_fc.weight"] = torch.zeros(4, 7)
    torch.save(bad, tmp_path / "bad.pth")
    assert main(["convert", str(tmp_path / "bad.pth"), "--arch", "efficientnet-lite0", "--out",
                 str(tmp_path / "d")]) == ExitCode.INPUT_ERROR
    assert "_fc.weight is (4, 7), the architecture needs (4, 1280)" in capsys.readouterr().err


def test_key_map_collisions_and_bad_patterns(tmp_path):
    import re

    from transfer_audit.vision.convert import read_key_map, rename_keys

    with pytest.raises(InputError, match="both renamed to 'w'"):
        rename_keys({"a.w": 1, "b.w": 2}, [(re.compile(r"^\w+\."), "")], "map")
    (tmp_path / "m.yaml").write_text("'(unclosed': x\n")
    with pytest.raises(InputError, match="not a valid regular expression"):
        read_key_map(tmp_path / "m.yaml")


def test_converter_usage_errors(tmp_path, capsys):
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    assert main(["convert", str(tmp_path / "notes.pth"), "--arch", "efficientnet-lite0", "--out",
                 str(tmp_path / "o")]) == ExitCode.INPUT_ERROR
    assert "is not a torch checkpoint" in capsys.readouterr().err
    assert main(["convert", str(lite0_pth()), "--arch", "efficientnet-lit0", "--out", str(tmp_path / "o")]) == 2
    assert "did you mean 'efficientnet-lite0'" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["convert", str(lite0_pth()), "--arch", "efficientnet-lite0", "--out", str(tmp_path / "full")]) == 2
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert main(["convert", str(lite0_pth()), "--arch", "efficientnet-lite0", "--out", str(tmp_path / "x"),
                 "--image-size", "4"]) == 2


@pytest.mark.parametrize("family", ["efficientnet", "vit", "convnext"])
def test_model_interface_one_pass(tmp_path, family):
    """Features are the head's input, stages come from the same pass, a new head has the new width, and a
    saved model reloads to the same logits."""
    import torch

    make = {"efficientnet": tiny_efficientnet, "vit": tiny_vit, "convnext": tiny_convnext}[family]
    model = load_image_model(make(tmp_path / "m"))
    rng = np.random.default_rng(0)
    x = normalise(rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), model.preprocess)
    with torch.inference_mode():
        out = model.forward_all(x, stages=True)
        assert torch.allclose(model.head()(out.features), out.logits, atol=1e-5)
        assert out.logits.shape == (3, 3) and len(out.stages) >= 2 and all(s.shape[0] == 3 for s in out.stages)
        assert torch.equal(model.forward_all(x).logits, out.logits)
    model.set_head(5, list("abcde"), seed=0)
    assert model.num_classes == 5 and model.classes == tuple("abcde")
    model.save(tmp_path / "saved")
    again = load_image_model(tmp_path / "saved")
    with torch.inference_mode():
        assert torch.allclose(again.logits(x), model.logits(x), atol=1e-6)
    assert again.classes == tuple("abcde") and len(model.blocks()) >= 2


def test_hf_folder_needs_its_preprocessing_config(tmp_path):
    folder = tiny_vit(tmp_path / "vit")
    os.remove(folder / "preprocessor_config.json")
    with pytest.raises(InputError, match="no preprocessor_config.json"):
        load_image_model(folder)
