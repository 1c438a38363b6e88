"""Safe image decoding: every way a file can be unusable ends in one InputError naming the file (exit 2).

Checked before any pixel is decoded: the file exists, is a regular file and is not larger than `max_bytes`;
the header's width x height is within `max_pixels` and `max_side` (a decompression bomb declares a huge
canvas in a tiny file). Then the pixels are decoded in full, so a truncated file fails here, not later.
Modes are brought to 'L' (one gray channel) or 'RGB'; transparent images are composited on white (as
Hugging Face's convert_rgb does); 16-bit gray is scaled to 8 bits; modes without a fixed range (32-bit
integer 'I', float 'F') are refused. Multi-frame files (GIF, TIFF) use their first frame.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, Message

MSG_BAD_IMAGE = Message("bad_image", "{where}: cannot use the image {value!r}: {reason}.")

GRAY_MODES = {"1", "L"}
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa", "P"}     # P may carry a transparent palette entry
COLOUR_MODES = {"RGB", "CMYK", "YCbCr", "RGBX"}


@dataclass(frozen=True)
class ImageLimits:
    """Caps checked before decoding. 40 megapixels is about 2x a 20-megapixel photo and half of Pillow's own
    warning level; a 300x300 inspection image is 90 kilopixels."""

    max_bytes: int = 64 << 20
    max_pixels: int = 40_000_000
    max_side: int = 20_000


DEFAULT_LIMITS = ImageLimits()


def bad_image(where: str, path, reason: str) -> InputError:
    return InputError.make(MSG_BAD_IMAGE, where=where, value=str(path), reason=reason)


def open_image(path: str | Path, where: str = "image", limits: ImageLimits = DEFAULT_LIMITS):
    """The decoded image in mode 'L' or 'RGB' (a PIL Image, pixels loaded, file closed)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise bad_image(where, path, "the file does not exist")
    if not path.is_file():
        raise bad_image(where, path, "it is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise bad_image(where, path, "the file is empty")
    if size > limits.max_bytes:
        raise bad_image(where, path, f"the file has {size} bytes, more than the {limits.max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_dimensions(img.size, where, path, limits)
                img.load()       # decodes everything now: a truncated file raises here
                return _normalise_mode(img, where, path)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise bad_image(where, path, "it is not an image format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise bad_image(where, path, f"it may be a decompression bomb ({e})") from None
    except MemoryError:
        raise bad_image(where, path, "decoding it needs more memory than is available") from None
    except Exception as e:   # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError, zlib errors...
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise bad_image(where, path, f"it is corrupt or truncated ({text})") from None


def _check_dimensions(size: tuple[int, int], where: str, path: Path, limits: ImageLimits) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise bad_image(where, path, f"it has no pixels ({w}x{h})")
    if max(w, h) > limits.max_side:
        raise bad_image(where, path, f"it is {w}x{h} pixels; a side longer than {limits.max_side} is refused")
    if w * h > limits.max_pixels:
        raise bad_image(where, path, f"it is {w}x{h} = {w * h} pixels, more than the {limits.max_pixels}-pixel "
                                     "limit (a possible decompression bomb)")


def _normalise_mode(img, where: str, path: Path):
    from PIL import Image

    mode = img.mode
    if mode in GRAY_MODES:
        return img.convert("L")
    if mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(img, dtype=np.uint16)
        return Image.fromarray(np.rint(wide / 257.0).astype(np.uint8), mode="L")
    if mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        composed = Image.alpha_composite(white, rgba)
        return composed.convert("L" if mode in ("LA", "La") else "RGB")
    if mode in COLOUR_MODES:
        return img.convert("RGB")
    raise bad_image(where, path, f"its pixel mode {mode!r} is not supported (use 8- or 16-bit grayscale, "
                                 "RGB, RGBA, palette or CMYK)")
