"""Image decoding, preprocessing, sources and descriptors: real images (ELPV cells, scikit-learn's photos,
scikit-learn's digits) and crafted bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vision_fixtures import elpv_paths, forged_png, sklearn_photo

from transfer_audit.errors import ExitCode, InputError
from transfer_audit.vision.decode import MSG_BAD_IMAGE, ImageLimits, open_image
from transfer_audit.vision.descriptors import DESCRIPTORS, describe, descriptor_frame, laplacian_variance
from transfer_audit.vision.preprocess import Preprocess, Resample, denormalise, load_images, normalise, resize
from transfer_audit.vision.sources import digits_source, folder_source, load_elpv, sample_rows, table_source

# --- decoding -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,expected", [("L", "L"), ("1", "L"), ("RGB", "RGB"), ("RGBA", "RGB"), ("P", "RGB"),
                                           ("LA", "L"), ("CMYK", "RGB"), ("I;16", "L")])
def test_modes_become_gray_or_rgb(tmp_path, mode, expected):
    src = Image.open(sklearn_photo("flower.jpg")).convert("RGB").resize((40, 30))
    img = src.convert(mode) if mode != "I;16" else Image.fromarray(
        np.asarray(src.convert("L"), dtype=np.uint16) * 257)
    assert img.mode == mode
    path = tmp_path / f"x.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
    img.save(path)
    out = open_image(path)
    assert out.mode == expected and out.size == (40, 30)
    if mode == "I;16":      # 16-bit gray scaled back to exactly the 8-bit values
        assert np.array_equal(np.asarray(out), np.asarray(src.convert("L")))


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255          # top half opaque red, bottom half transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    arr = np.asarray(open_image(tmp_path / "a.png"))
    assert arr[0, 0].tolist() == [200, 0, 0] and arr[3, 3].tolist() == [255, 255, 255]


DEFAULT_LIMITS = ImageLimits()


def _bad(path, limits=DEFAULT_LIMITS, where="data.train row 3"):
    with pytest.raises(InputError) as e:
        open_image(path, where, limits)
    assert e.value.code == MSG_BAD_IMAGE.code and e.value.exit_code == ExitCode.INPUT_ERROR
    assert str(path) in e.value.message and e.value.message.startswith(where)
    return e.value.message


def test_truncated_files_are_refused(tmp_path):
    for src, name in ((sklearn_photo("flower.jpg"), "t.jpg"), (elpv_paths(1)[0], "t.png")):
        raw = Path(src).read_bytes()
        (tmp_path / name).write_bytes(raw[: len(raw) // 2])
        assert "corrupt or truncated" in _bad(tmp_path / name)


def test_not_an_image_missing_empty_folder(tmp_path):
    (tmp_path / "x.png").write_bytes(b"this is text, not a PNG")
    assert "not an image format" in _bad(tmp_path / "x.png")
    assert "does not exist" in _bad(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in _bad(tmp_path / "empty.png")
    assert "not a regular file" in _bad(tmp_path)


def test_decompression_bombs_and_huge_dimensions(tmp_path):
    # beyond Pillow's own hard limit (2 x 89 megapixels): Pillow refuses in open()
    assert "decompression bomb" in _bad(forged_png(tmp_path / "bomb.png", 50_000, 50_000))
    # under Pillow's limit but over ours: our check refuses before any pixel is decoded
    assert "pixel limit" in _bad(forged_png(tmp_path / "big.png", 9_000, 5_000))
    assert "side longer than" in _bad(forged_png(tmp_path / "long.png", 30_000, 2))
    # the same caps are configurable: a real ELPV cell (300 x 300) over a 50,000-pixel cap
    assert "pixel limit" in _bad(elpv_paths(1)[0], ImageLimits(max_pixels=50_000))
    assert "byte limit" in _bad(elpv_paths(1)[0], ImageLimits(max_bytes=1_000))


@pytest.mark.parametrize("mode", ["F", "I"])
def test_modes_without_fixed_range_are_refused(tmp_path, mode):
    Image.fromarray(np.ones((5, 5), dtype=np.float32 if mode == "F" else np.int32), mode=mode).save(tmp_path / "f.tif")
    assert f"pixel mode {mode!r}" in _bad(tmp_path / "f.tif")


# --- preprocessing ----------------------------------------------------------------------------------------

def test_preprocess_round_trips_through_hf_config():
    pre = Preprocess(160, 128, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), Resample.BICUBIC, 1 / 255, 0.875)
    assert Preprocess.from_hf(pre.to_hf()) == pre
    vit = Preprocess.from_hf({"size": {"height": 224, "width": 224}, "resample": 2, "image_mean": [0.5, 0.5, 0.5],
                              "image_std": [0.5, 0.5, 0.5]})
    assert (vit.height, vit.width, vit.resample, vit.crop_pct) == (224, 224, Resample.BILINEAR, None)
    convnext = Preprocess.from_hf({"size": {"shortest_edge": 224}, "crop_pct": 0.875, "resample": 3})
    assert (convnext.height, convnext.crop_pct, convnext.resample) == (224, 0.875, Resample.BICUBIC)
    deit = Preprocess.from_hf({"size": {"shortest_edge": 256}, "do_center_crop": True,
                               "crop_size": {"height": 224, "width": 224}})
    assert (deit.height, deit.width, deit.crop_pct) == (224, 224, 224 / 256)
    with pytest.raises(InputError, match="resample"):
        Preprocess.from_hf({"resample": 17}, "cfg.json")


def test_resize_squash_and_centre_crop():
    img = Image.open(sklearn_photo("china.jpg")).convert("RGB")         # 640 x 427
    squash = resize(img, Preprocess(50, 60))
    assert squash.shape == (50, 60, 3) and squash.dtype == np.uint8
    crop = resize(img, Preprocess(64, 64, crop_pct=0.5))
    assert crop.shape == (64, 64, 3)
    # crop_pct 0.5: the shorter side is resized to 128, so the crop shows the middle half of the photo
    middle = np.asarray(img.resize((192, 128), Image.Resampling.BILINEAR))[32:96, 64:128]
    assert np.abs(crop.astype(int) - middle.astype(int)).mean() < 2
    gray = resize(open_image(elpv_paths(1)[0]), Preprocess(32, 32))
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])


def test_normalise_values_layout_and_inverse():
    import torch

    pre = Preprocess(2, 2, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    batch = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    batch[0, 0, 0] = 255
    x = normalise(batch, pre)
    assert x.shape == (1, 3, 2, 2) and x.is_contiguous()
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 3.0, 1.0]))
    assert torch.allclose(x[0, :, 1, 1], torch.tensor([-1.0, -1.0, 0.0]))
    cl = normalise(batch, pre, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, x)
    real, _ = load_images(elpv_paths(3), Preprocess(48, 48))
    assert np.array_equal(denormalise(normalise(real, Preprocess(48, 48)), Preprocess(48, 48)), real)


def test_load_images_describes_the_decoded_image():
    paths = [str(sklearn_photo("flower.jpg")), elpv_paths(1)[0]]
    arr, rows = load_images(paths, Preprocess(24, 24), describe=describe)
    assert arr.shape == (2, 24, 24, 3)
    assert [(r["width"], r["height"]) for r in rows] == [(640, 427), (300, 300)]


# --- sources ----------------------------------------------------------------------------------------------

def _write_folder(root: Path, classes: dict) -> None:
    for cls, paths in classes.items():
        (root / cls).mkdir(parents=True)
        for i, p in enumerate(paths):
            Image.open(p).save(root / cls / f"{i:02d}.png")


def test_folder_source(tmp_path):
    paths = elpv_paths(5)
    _write_folder(tmp_path / "ds", {"functional": paths[:3], "defective": paths[3:]})
    (tmp_path / "ds" / "README.txt").write_text("not an image; ignored")
    df = folder_source(tmp_path / "ds")
    assert df["label"].tolist() == ["defective"] * 2 + ["functional"] * 3
    assert all(Path(p).is_absolute() and Path(p).exists() for p in df["path"])
    (tmp_path / "ds" / "empty").mkdir()
    with pytest.raises(InputError, match="'empty' holds no image"):
        folder_source(tmp_path / "ds")
    (tmp_path / "ds" / "empty").rmdir()
    Image.open(paths[0]).save(tmp_path / "ds" / "loose.png")
    with pytest.raises(InputError, match="lies directly in"):
        folder_source(tmp_path / "ds")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_source_resolves_relative_paths(tmp_path, fmt):
    import pandas as pd

    paths = elpv_paths(4)
    (tmp_path / "imgs").mkdir()
    rel = []
    for i, p in enumerate(paths):
        Image.open(p).save(tmp_path / "imgs" / f"c{i}.png")
        rel.append(f"imgs/c{i}.png")
    table = pd.DataFrame({"file": rel, "label": ["a", "b", "a", "b"], "site": ["x", "x", "y", "y"]})
    path = tmp_path / f"t.{fmt}"
    table.to_csv(path, index=False) if fmt == "csv" else table.to_parquet(path)
    df = table_source(path, "file")
    assert df["file"].tolist() == [str((tmp_path / r).resolve()) for r in rel]
    assert df["site"].tolist() == ["x", "x", "y", "y"]
    with pytest.raises(InputError, match="image path column 'image'"):
        table_source(path, "image")
    table.loc[2, "file"] = "imgs/nope.png"
    table.to_csv(path, index=False) if fmt == "csv" else table.to_parquet(path)
    with pytest.raises(InputError, match=r"row 2 column 'file'.*nope.png.*does not exist"):
        table_source(path, "file")


def test_sampling_is_read_tables_rule(tmp_path):
    """The same seed, sample and skip give the same rows as transfer_audit.data.read_table."""
    import pandas as pd

    from transfer_audit.data import read_table
    from transfer_audit.spec import SplitSource

    paths = elpv_paths(30)
    pd.DataFrame({"path": paths, "label": ["x"] * 30, "row": range(30)}).to_csv(tmp_path / "t.csv", index=False)
    for sample, skip, seed in ((10, 0, 0), (7, 5, 3), (None, 12, 1)):
        ours = sample_rows(table_source(tmp_path / "t.csv"), sample, skip, seed, "t")
        theirs = read_table(SplitSource("train", path=tmp_path / "t.csv", sample=sample, skip=skip), "spec", seed)
        assert ours["row"].tolist() == theirs["row"].tolist()
    with pytest.raises(InputError, match="leaves no rows"):
        sample_rows(table_source(tmp_path / "t.csv"), 5, 30, 0, "t")


def test_elpv_builtin():
    full = load_elpv("all")
    assert len(full) == 2624 and full["type"].value_counts().to_dict() == {"poly": 1550, "mono": 1074}
    assert set(full["probability"].round(4)) == {0.0, 0.3333, 0.6667, 1.0}
    assert ((full["probability"] >= 0.5) == (full["condition"] == "defective")).all()
    train, test = load_elpv("train"), load_elpv("test")
    assert len(train) + len(test) == 2624 and not set(train["path"]) & set(test["path"])
    mono = load_elpv("train", "mono")
    assert set(mono["type"]) == {"mono"} and len(mono) == (train["type"] == "mono").sum()
    img = open_image(full["path"].iloc[0])
    assert img.mode == "L" and img.size == (300, 300)
    with pytest.raises(InputError, match="split must be one of"):
        load_elpv("validation")


def test_digits_source(tmp_path):
    df = digits_source(tmp_path / "digits")
    assert len(df) == 1797 and sorted(df["label"].unique()) == [str(i) for i in range(10)]
    arr, _ = load_images(df["path"][:2], Preprocess(8, 8), describe=None)
    from sklearn.datasets import load_digits

    assert np.array_equal(arr[0, :, :, 0], np.rint(load_digits().images[0] * 255 / 16).astype(np.uint8))


# --- descriptors ------------------------------------------------------------------------------------------

def test_descriptors_of_known_images():
    flat = np.full((10, 20), 128, dtype=np.uint8)
    d = describe(flat)
    assert d["width"] == 20 and d["height"] == 10 and d["aspect"] == 2.0
    assert d["brightness"] == pytest.approx(128 / 255) and d["contrast"] == 0 and d["sharpness"] == 0
    checker = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)
    # every interior pixel's Laplacian is +-4 (in [0, 1] units), so the variance is 16
    assert laplacian_variance(checker / 255.0) == pytest.approx(16.0)
    assert list(descriptor_frame([d]).columns) == list(DESCRIPTORS)


def test_brightness_shift_and_blur_show_in_descriptors():
    """Real ELPV cells: brightening one half moves the brightness distribution far apart (KS test), the
    unshifted halves do not differ; blurring lowers sharpness."""
    from PIL import ImageFilter
    from scipy.stats import ks_2samp

    paths = elpv_paths(80, seed=1)
    order = np.random.default_rng(0).permutation(80)      # file order follows the module type: shuffle
    imgs = [open_image(paths[i]) for i in order]
    ref, cur = imgs[:40], imgs[40:]
    brighter = [Image.fromarray(np.clip(np.asarray(i, dtype=int) + 40, 0, 255).astype(np.uint8)) for i in cur]
    def b(images):
        return descriptor_frame(describe(i) for i in images)["brightness"]

    assert ks_2samp(b(ref), b(brighter)).pvalue < 1e-6
    assert ks_2samp(b(ref), b(cur)).pvalue > 0.05
    sharp = descriptor_frame(describe(i) for i in cur)["sharpness"]
    blurred = descriptor_frame(describe(i.filter(ImageFilter.GaussianBlur(2))) for i in cur)["sharpness"]
    assert (blurred < sharp).all()


# --- perturbations ----------------------------------------------------------------------------------------

def test_perturbations_change_only_what_they_name():
    from transfer_audit.vision.perturb import Perturbation, flip_rate, perturb

    imgs, _ = load_images(elpv_paths(4), Preprocess(32, 32))
    mirrored = perturb(imgs, Perturbation.FLIP_HORIZONTAL)
    assert np.array_equal(mirrored[:, :, 0], imgs[:, :, -1])
    assert np.array_equal(perturb(mirrored, Perturbation.FLIP_HORIZONTAL), imgs)
    assert np.array_equal(perturb(imgs, Perturbation.FLIP_VERTICAL)[:, 0], imgs[:, -1])
    assert np.array_equal(perturb(imgs, Perturbation.ROTATE_180),
                          perturb(perturb(imgs, Perturbation.FLIP_VERTICAL), Perturbation.FLIP_HORIZONTAL))
    brighter = perturb(imgs, Perturbation.BRIGHTNESS, 0.1)
    assert brighter.dtype == np.uint8 and 20 < (brighter.astype(int) - imgs).mean() <= 26
    flat = perturb(imgs, Perturbation.CONTRAST, -1.0)
    assert all(np.ptp(im) <= 1 for im in flat)                   # no contrast left
    noisy = perturb(imgs, Perturbation.NOISE, 0.05, seed=3)
    assert np.array_equal(noisy, perturb(imgs, Perturbation.NOISE, 0.05, seed=3)) and not np.array_equal(noisy, imgs)
    blurred = perturb(imgs, Perturbation.BLUR, 1.5)
    assert all(describe(b[..., 0])["sharpness"] < describe(i[..., 0])["sharpness"] for b, i in zip(blurred, imgs))
    assert perturb(imgs, Perturbation.JPEG, 20).shape == imgs.shape
    assert flip_rate([0, 1, 1, 0], [0, 0, 1, 1]) == 0.5
