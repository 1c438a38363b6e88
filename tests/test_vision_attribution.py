"""Pixel attribution: the completeness criterion with adaptive steps, baselines, region share, overlays; and
the planted-defect building block: a CNN that reads a corner patch is caught looking at it."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from vision_fixtures import one_torch_thread, planted_patch_images

from transfer_audit.vision.attribution import (
    BLUR_SIGMA_FRACTION,
    Baseline,
    attribute_images,
    box_mask,
    gaussian_blur,
    load_mask,
    make_baseline,
    pixel_attribution,
    region_share,
)
from transfer_audit.vision.controls import CNNBudget, SmallCNNControl
from transfer_audit.vision.overlay import data_uri, overlay_png, png_base64
from transfer_audit.vision.preprocess import Preprocess, normalise

_threads = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
PATCH, SIZE = 6, 32


@pytest.fixture(scope="module")
def patch_cnn():
    """A small CNN trained from scratch on real ELPV cells whose top-left patch is white exactly when the
    label is 1, with held-out images."""
    imgs, y = planted_patch_images(200, SIZE, PATCH)
    cnn = SmallCNNControl(CNNBudget(epochs=4, batch_size=16, width=8), seed=0, progress=False).fit(imgs[:140], y[:140])
    assert (cnn.predict_proba(imgs[140:]).argmax(1) == y[140:]).mean() >= 0.95
    return cnn, imgs[140:], y[140:]


@pytest.mark.parametrize("baseline", list(Baseline))
def test_attribution_finds_the_planted_patch(patch_cnn, baseline):
    cnn, imgs, y = patch_cnn
    rows = np.flatnonzero(y == 1)[:6]
    x = normalise(imgs[rows], cnn.preprocess_)
    runs = attribute_images(cnn.model_, x, [1] * len(rows), baseline, cnn.preprocess_)
    mask = box_mask(SIZE, SIZE, (0, 0, PATCH / SIZE, PATCH / SIZE))
    shares = [region_share(a.scores, mask) for a in runs]
    assert mask.mean() == pytest.approx(PATCH * PATCH / SIZE / SIZE)
    # 3.5% of the pixels carry over 4x their share of the attribution on average, over 3x in every image
    assert np.mean(shares) > 4 * mask.mean() and min(shares) > 3 * mask.mean(), shares
    assert all(a.converged and abs(a.delta) <= 0.05 * abs(a.gap) for a in runs)
    assert all(a.scores.shape == (SIZE, SIZE) and a.target == 1 for a in runs)
    # and a region of the same size elsewhere gets far less
    far = box_mask(SIZE, SIZE, (1 - PATCH / SIZE, 1 - PATCH / SIZE, 1, 1))
    assert np.mean([region_share(a.scores, far) for a in runs]) < np.mean(shares) / 3


def test_completeness_criterion_and_adaptive_steps(patch_cnn):
    cnn, imgs, y = patch_cnn
    x = normalise(imgs[:1], cnn.preprocess_)
    base = make_baseline(x, Baseline.BLACK, cnn.preprocess_)
    strict = pixel_attribution(cnn.model_, x, base, None, schedule=(2, 4), tolerance=1e-9)
    assert not strict.converged and strict.steps == 4 and strict.passes == 2 + 2 + 4
    assert abs(strict.delta) > 1e-9 * abs(strict.gap)
    loose = pixel_attribution(cnn.model_, x, base, None, schedule=(2, 4), tolerance=10.0)
    assert loose.converged and loose.steps == 2 and loose.passes == 4
    assert loose.scores.sum() - loose.gap == pytest.approx(loose.delta)

def test_each_example_starts_where_its_predecessors_converged(patch_cnn, monkeypatch):
    """attribute_images starts example i at the median step count of the last five converged examples."""
    from transfer_audit.vision import attribution

    cnn, imgs, y = patch_cnn
    tries, real = [], attribution.pixel_attribution

    def recording(forward, x, baseline, target, schedule, tolerance, **kw):
        tries.append(tuple(schedule))
        out = real(forward, x, baseline, target, schedule, tolerance, **kw)
        return attribution.PixelAttribution(out.scores, out.target, out.delta, out.gap,
                                            needed.pop(0), out.passes, True)

    needed = [24, 50, 16, 8]              # the steps each example "needed", as the recorder reports them
    monkeypatch.setattr(attribution, "pixel_attribution", recording)
    attribute_images(cnn.model_, normalise(imgs[:4], cnn.preprocess_), None, Baseline.BLACK, cnn.preprocess_,
                     schedule=(8, 16, 24, 32, 50, 100), tolerance=10.0)
    # medians of [24], [24, 50] (37: next rung 50), [24, 50, 16]
    assert [t[0] for t in tries] == [8, 24, 50, 24]


def test_baselines():
    import torch

    pre = Preprocess(8, 8, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    imgs = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = normalise(imgs, pre)
    assert torch.allclose(make_baseline(x, Baseline.BLACK, pre), normalise(np.zeros_like(imgs), pre))
    flat = torch.full((1, 3, 16, 16), 0.7)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat, atol=1e-6)
    blurred = make_baseline(x, Baseline.BLURRED, pre)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    assert torch.allclose(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.15)
    assert BLUR_SIGMA_FRACTION == 1 / 16


def test_region_share_and_masks(tmp_path):
    from PIL import Image

    scores = np.zeros((10, 10))
    scores[:2, :2] = -3.0                  # negative attribution counts by magnitude
    scores[5, 5] = 1.0
    assert region_share(scores, box_mask(10, 10, (0, 0, 0.2, 0.2))) == pytest.approx(12 / 13)
    assert np.isnan(region_share(np.zeros((3, 3)), np.ones((3, 3), bool)))
    with pytest.raises(ValueError):
        box_mask(10, 10, (0.5, 0, 0.2, 1))
    m = np.zeros((300, 300), dtype=np.uint8)
    m[:60, :60] = 255                      # a mask drawn at the original image size
    Image.fromarray(m).save(tmp_path / "mask.png")
    resized = load_mask(tmp_path / "mask.png", Preprocess(30, 30))
    assert resized.shape == (30, 30) and resized.sum() == 36 and resized[:6, :6].all()


def test_overlay_is_a_small_png(patch_cnn):
    from PIL import Image

    cnn, imgs, y = patch_cnn
    from vision_fixtures import elpv_paths

    from transfer_audit.vision.preprocess import load_images

    real, _ = load_images(elpv_paths(1), Preprocess(224, 224))
    scores = np.zeros((224, 224))
    scores[:40, :40] = 1.0
    png = overlay_png(real[0], scores, size=96)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and max(img.size) == 96 and len(png) < 8_000
    rgb = np.asarray(img.convert("RGB"), dtype=int)
    assert rgb[:10, :10, 0].mean() > rgb[:10, :10, 2].mean() + 100     # the attributed corner is red
    assert abs(rgb[60:, 60:, 0].mean() - rgb[60:, 60:, 2].mean()) < 10  # the rest stays gray
    assert base64.b64decode(png_base64(png)) == png and data_uri(png).startswith("data:image/png;base64,")


def test_probe_forward_is_m1_on_pixels(tmp_path):
    """The frozen backbone + logistic probe as one function of pixels matches the probe on the features,
    and attribution runs on it."""
    import torch
    from vision_fixtures import elpv_paths, tiny_efficientnet

    from transfer_audit.models.baselines import fit_probe, probe_as_linear
    from transfer_audit.vision.attribution import probe_forward
    from transfer_audit.vision.inference import run_model
    from transfer_audit.vision.models import load_image_model
    from transfer_audit.vision.preprocess import load_images

    model = load_image_model(tiny_efficientnet(tmp_path / "m"))
    imgs, _ = load_images(elpv_paths(24), model.preprocess)
    feats = run_model(model, imgs).features
    y = np.arange(24) % 2
    probe = fit_probe(feats, y, 0)
    forward = probe_forward(model, *probe_as_linear(probe))
    x = normalise(imgs, model.preprocess)
    with torch.inference_mode():
        p = torch.softmax(forward(x), 1).numpy()
    assert np.allclose(p, probe.predict_proba(feats), atol=1e-4)
    runs = attribute_images(forward, x[:2], None, Baseline.BLURRED, model.preprocess, schedule=(8, 16))
    assert all(r.scores.shape == (32, 32) and np.isfinite(r.delta) and r.passes <= 2 + 8 + 16 for r in runs)


def test_quality_scores_are_finite_with_their_cost(patch_cnn):
    """infidelity and sensitivity_max come back finite and non-negative, with their pass count."""
    from transfer_audit.vision.attribution import quality_scores

    cnn, imgs, y = patch_cnn
    x = normalise(imgs[np.flatnonzero(y == 1)[:1]], cnn.preprocess_)
    q = quality_scores(cnn.model_, x, Baseline.BLACK, cnn.preprocess_, target=1, steps=16, seed=0)
    assert q["infidelity"] >= 0 and q["sensitivity_max"] >= 0 and np.isfinite(list(q.values())).all()
    assert q["passes"] == 16 * 6 + 12
