"""Fine-tuning (head, last blocks, full, LoRA) and the no-pretraining controls, on tiny models and real
images."""
from __future__ import annotations

import numpy as np
import pytest
from vision_fixtures import one_torch_thread, planted_patch_images, pretrained_lite0, tiny_efficientnet, tiny_vit

from transfer_audit.vision import finetune as ft
from transfer_audit.vision.controls import CNNBudget, PixelControl, SmallCNNControl, hog_features
from transfer_audit.vision.finetune import ImageFinetuneMethod as M
from transfer_audit.vision.finetune import ImageFinetuneRecipe, train_classifier
from transfer_audit.vision.models import load_image_model
from transfer_audit.vision.preprocess import Preprocess, load_images

_threads = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
CLASSES = ["functional", "defective"]


@pytest.fixture(scope="module")
def data():
    from transfer_audit.vision.sources import load_elpv

    df = load_elpv("all")
    df = df.iloc[np.random.default_rng(0).choice(len(df), 40, replace=False)]
    imgs, _ = load_images(df["path"], Preprocess(32, 32))
    return imgs, (df["condition"] == "defective").to_numpy().astype(int)


@pytest.fixture(scope="module")
def tiny_lite(tmp_path_factory):
    return tiny_efficientnet(tmp_path_factory.mktemp("lite") / "m")


def _state(model):
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def _changed(before, model):
    """Names of the tensors that differ from `before`, the newly made head left out."""
    after = model.module.state_dict()
    head = {id(p) for p in model.head().parameters()}
    new = {k for k, v in model.module.named_parameters() if id(v) in head}
    return {k for k in before if k in after and k not in new
            and not np.array_equal(before[k].numpy(), after[k].numpy())}


def test_head_trains_only_the_new_head(tiny_lite, data):
    model = load_image_model(tiny_lite)
    before = _state(model)
    log = train_classifier(model, *data, CLASSES, ImageFinetuneRecipe(M.HEAD, epochs=2, batch_size=16), seed=0)
    assert model.num_classes == 2 and log.steps == 6 and log.trainable_parameters == 1280 * 2 + 2
    assert _changed(before, model) == set()            # every backbone tensor, BN statistics included
    assert not np.isnan(log.final_loss)


def test_last_blocks_train_the_last_blocks_and_what_follows(tiny_lite, data):
    model = load_image_model(tiny_lite)
    before = _state(model)
    train_classifier(model, *data, CLASSES, ImageFinetuneRecipe(M.LAST_BLOCKS, epochs=1, blocks=2, batch_size=16),
                     seed=0)
    changed = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("_blocks") else "")
               for k in _changed(before, model)}
    assert changed == {"_blocks.14", "_blocks.15", "_conv_head", "_bn1"}


def test_batches_cover_every_row_once_and_never_leave_one_alone():
    import torch

    for n, size in ((33, 16), (40, 16), (17, 16), (5, 32)):
        parts = ft._batches(n, size, torch.Generator().manual_seed(0))
        assert sorted(torch.cat(parts).tolist()) == list(range(n)) and min(len(p) for p in parts) >= min(n, 2)
    assert [len(p) for p in ft._batches(33, 16, torch.Generator().manual_seed(0))] == [16, 17]


def test_cached_prefix_computes_what_running_it_computes(tmp_path, data, monkeypatch):
    """last_blocks caches the frozen prefix's output once; a training step on the cache must give the same
    logits as running the frozen prefix in that step, and the same gradients. Gradients are compared with
    the trained blocks in eval mode: in training mode their batch norms divide by the deviation of 16
    values per channel (1x1 maps at this size), which turns 1e-6 rounding into percent differences."""
    import torch

    recipe = ImageFinetuneRecipe(M.LAST_BLOCKS, epochs=1, blocks=3, batch_size=16)
    folder = pretrained_lite0(tmp_path / "lite0")
    batch = torch.arange(7, 23)
    results = []
    for cache_bytes in (ft.PREFIX_CACHE_BYTES, 0):
        monkeypatch.setattr(ft, "PREFIX_CACHE_BYTES", cache_bytes)
        model = load_image_model(folder)
        model.set_head(2, CLASSES, seed=0)
        ft._freeze_before(model, ft._trainable_from(model, recipe))
        step = ft._step_function(model, data[0], recipe, ft._trainable_from(model, recipe), channels_last=True)
        ft._train_mode(model.module)
        torch.manual_seed(3)                       # same dropout / stochastic-depth draws in both
        with torch.no_grad():
            training = step(batch)
        model.module.eval()
        logits = step(batch)
        logits.sum().backward()
        grads = {n: p.grad.clone() for n, p in model.module.named_parameters() if p.requires_grad}
        results.append((training, logits.detach(), grads))
    (ta, a, ga), (tb, b, gb) = results
    assert torch.allclose(ta, tb, atol=1e-4) and torch.allclose(a, b, atol=1e-4)
    assert ga.keys() == gb.keys() and len(ga) > 10
    worst = max(float((ga[k] - gb[k]).abs().max() / (gb[k].abs().max() + 1e-6)) for k in ga)
    assert worst <= 1e-3, worst


def test_full_and_lora(tiny_lite, data):
    full = load_image_model(tiny_lite)
    before = _state(full)
    train_classifier(full, *data, CLASSES, ImageFinetuneRecipe(M.FULL, epochs=1, batch_size=20), seed=0)
    assert "_conv_stem.weight" in _changed(before, full)
    lora = load_image_model(tiny_lite)
    before = _state(lora)
    log = train_classifier(lora, *data, CLASSES, ImageFinetuneRecipe(M.LORA, epochs=1, batch_size=20, lora_r=2),
                           seed=0)
    changed = _changed(before, lora)
    # merged back into plain weights: 1x1 convolutions moved, depthwise convolutions and BN did not
    assert "_blocks.3._expand_conv.weight" in changed and "_conv_head.weight" in changed
    assert not any("_depthwise_conv" in k or "_bn" in k or "_conv_stem" in k for k in changed)
    assert log.trainable_parameters < 0.2 * sum(v.numel() for v in before.values())
    assert type(lora.module).__name__ == "EfficientNet"


def test_hf_vit_last_blocks(tmp_path, data):
    model = load_image_model(tiny_vit(tmp_path / "vit"))
    before = _state(model)
    train_classifier(model, *data, CLASSES, ImageFinetuneRecipe(M.LAST_BLOCKS, epochs=1, blocks=1, batch_size=20),
                     seed=0)
    changed = _changed(before, model)
    assert changed and all(k.startswith(("vit.layers.1.", "vit.layernorm")) for k in changed)
    assert model.classes == tuple(CLASSES)


def test_finetune_is_seeded_cached_and_reloads(tiny_lite, data, tmp_path):
    import torch

    recipe = ImageFinetuneRecipe(M.HEAD, epochs=1, batch_size=16)
    key = ft.finetune_key("base-digest", "train-digest", CLASSES, recipe, 0, 32)
    assert ft.cached_finetune(tmp_path, key) is None
    folder = ft.finetune(tiny_lite, *data, CLASSES, recipe, 0, tmp_path, key)
    assert ft.cached_finetune(tmp_path, key) == folder and (folder / "model.safetensors").exists()
    again = ft.finetune(tiny_lite, *data, CLASSES, recipe, 0, tmp_path / "other", key)
    a, b = load_image_model(folder), load_image_model(again)
    assert a.classes == tuple(CLASSES)
    assert all(torch.equal(a.module.state_dict()[k], b.module.state_dict()[k]) for k in a.module.state_dict())
    variants = [("other-base", "train-digest", CLASSES, recipe, 0, 32),
                ("base-digest", "other-rows", CLASSES, recipe, 0, 32),
                ("base-digest", "train-digest", CLASSES[::-1], recipe, 0, 32),
                ("base-digest", "train-digest", CLASSES, ImageFinetuneRecipe(M.HEAD, epochs=2), 0, 32),
                ("base-digest", "train-digest", CLASSES, recipe, 1, 32),
                ("base-digest", "train-digest", CLASSES, recipe, 0, 64)]
    keys = {ft.finetune_key(*v) for v in variants}
    assert len(keys) == len(variants) and key not in keys


# --- no-pretraining controls ----------------------------------------------------------------------------

def test_small_cnn_learns_a_planted_patch_and_not_noise():
    imgs, y = planted_patch_images(160)
    budget = CNNBudget(epochs=4, batch_size=16, width=8)
    cnn = SmallCNNControl(budget, seed=0, progress=False).fit(imgs[:110], y[:110])
    p = cnn.predict_proba(imgs[110:])
    assert p.shape == (50, 2) and np.allclose(p.sum(1), 1)
    assert (p.argmax(1) == y[110:]).mean() >= 0.9
    clean, _ = planted_patch_images(160)
    clean[:, :6, :6] = 255                         # every image patched: the label is noise now
    noise = SmallCNNControl(budget, seed=0, progress=False).fit(clean[:110], y[:110])
    assert (noise.predict_proba(clean[110:]).argmax(1) == y[110:]).mean() < 0.75


def test_hog_sees_edge_orientation():
    vertical = np.zeros((1, 16, 16))
    vertical[:, :, 8:] = 1.0                       # a vertical edge: horizontal gradient, orientation 0 degrees
    h = hog_features(vertical, cell=8, bins=9, block=1).reshape(2, 2, 9)
    assert h[..., 0].sum() > 0 and h[..., 1:8].sum() == 0
    horizontal = vertical.transpose(0, 2, 1)       # 90 degrees: bin 4 (80-100)
    h = hog_features(horizontal, cell=8, bins=9, block=1).reshape(2, 2, 9)
    assert h[..., 4].sum() > 0 and h.sum() == pytest.approx(h[..., 4].sum())
    assert hog_features(np.random.default_rng(0).random((3, 64, 64))).shape == (3, 7 * 7 * 36)


@pytest.mark.parametrize("features", ["hog", "pixels"])
def test_pixel_control_on_real_digits(tmp_path, features):
    from transfer_audit.vision.sources import digits_source

    df = digits_source(tmp_path / "digits").iloc[:500]
    imgs, _ = load_images(df["path"], Preprocess(16, 16))
    y = df["label"].astype(int).to_numpy()
    size = 32 if features == "hog" else 8
    control = PixelControl(features, size=size, C=0.1).fit(imgs[:300], y[:300])
    p = control.predict_proba(imgs[300:])
    assert list(control.classes_) == list(range(10)) and np.allclose(p.sum(1), 1)
    assert (p.argmax(1) == y[300:]).mean() > 0.85
    shuffled = PixelControl(features, size=size).fit(imgs[:300], np.random.default_rng(0).permutation(y[:300]))
    assert (shuffled.predict_proba(imgs[300:]).argmax(1) == y[300:]).mean() < 0.3


def test_control_features_have_the_requested_width(data):
    from transfer_audit.vision.controls import control_features

    a = control_features(data[0], dim=48, seed=0)
    assert a.shape == (40, 48) and np.array_equal(a, control_features(data[0], dim=48, seed=0))
