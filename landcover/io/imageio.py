"""Reading and writing images, with errors that name the file.

Which images are accepted (docs/data.md, "Images and masks the pipeline accepts"):
- imagery: 8-bit RGB; also greyscale, palette and CMYK, converted to RGB. A 4th band (RGBA,
  RGBX: alpha or near-infrared) is dropped with a warning line naming the file. 16-bit images
  are refused: keeping 8 of their 16 bits (what Pillow does) ruins the colours.
- colour masks: 8-bit RGB or palette ("P") PNGs; an alpha band is dropped with a warning.
  Single-channel and 16-bit masks are refused: read as colours, every pixel would be grey and
  become a black or white class.
- size: up to MAX_IMAGE_PIXELS, checked from the header before anything is decoded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from landcover.io.errors import PipelineError

# Masks and tiles are written with fast, lossless PNG compression: level 1 is ~5x faster to
# write than the default 6 and only slightly larger.
PNG_COMPRESS_LEVEL = 1

# The largest image accepted, in pixels: 250 MP, e.g. 15000 x 15000 or 25000 x 10000. Pillow's own
# limit (~179 MP) refuses ordinary orthophotos; this one is set by memory instead: the tile stage
# holds about 8 bytes per pixel (measured: 1.8 GB at 225 MP), predict about 47 with 7 classes (its
# float32 class scores; about 12 GB at the limit). Read at call time, so tests can lower it.
MAX_IMAGE_PIXELS = 250_000_000

# Modes converted to RGB without comment: they hold 8-bit colour (or grey) and nothing is lost.
_IMAGERY_MODES = frozenset({"RGB", "L", "P", "1", "CMYK", "YCbCr", "LAB", "HSV"})
_MASK_MODES = frozenset({"RGB", "P"})
# Modes whose last band is dropped by the conversion to RGB: worth a warning.
EXTRA_BAND_MODES = frozenset({"RGBA", "RGBX", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Converting images to arrays a strip of rows at a time keeps one decoded copy plus a strip.
_STRIP_PIXELS = 1 << 22


def _bit_depth_16(image: Image.Image) -> bool:
    """16-bit images, including 16-bit RGB PNGs, which Pillow opens as 8-bit "RGB" (raw mode "RGB;16B")."""
    return image.mode in _HIGH_DEPTH_MODES or any(";16" in str(tile.args) for tile in image.tile)  # type: ignore[attr-defined]


def _warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)  # between progress bars, not through them


def _check_mode(path: Path, image: Image.Image, role: str, warn: bool) -> None:
    mode = image.mode
    if _bit_depth_16(image):
        raise PipelineError(f"{path}: 16-bit {role} (mode {mode}) is not supported; convert it to 8-bit RGB first")
    # Grey with or without alpha; a palette image has one band too, but its values index colours.
    single_channel = mode not in ("P", "PA") and len([band for band in image.getbands() if band not in "Aa"]) == 1
    if role == "mask" and single_channel:
        raise PipelineError(
            f"{path}: single-channel mask (mode {mode}); masks must be RGB colour or palette (P) "
            "PNGs: read as colours, every pixel would become a black or white class"
        )
    if mode in EXTRA_BAND_MODES:
        if warn:
            _warn(
                f"{path}: {role} has {len(image.getbands())} bands (mode {mode}); band {len(image.getbands())} "
                "(alpha or near-infrared) is dropped and the rest read as RGB"
            )
        return
    if role == "mask":
        if mode not in _MASK_MODES:
            raise PipelineError(f"{path}: unsupported mask mode {mode}; masks must be RGB colour or palette (P) PNGs")
    elif mode not in _IMAGERY_MODES:
        raise PipelineError(f"{path}: unsupported image mode {mode}; convert it to 8-bit RGB first")


@contextmanager
def open_image(path: str | Path, role: str = "image", warn: bool = True) -> Iterator[Image.Image]:
    """The image at `path`, header read and checked (size, mode for `role`: "image" or "mask"), not yet decoded.

    decode() decodes it; its size is known before that, so mismatches fail before any work. `warn` False: no
    warning line for a dropped band, for a check ahead of the read that warns.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below replaces Pillow's, which refuses ordinary orthophotos
    try:
        image = Image.open(path)
    except (OSError, SyntaxError, ValueError) as error:
        raise PipelineError(f"{path}: cannot decode image ({error})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit
    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise PipelineError(
                f"{path}: image is {width}x{height} = {width * height:,} pixels, over the limit of "
                f"{MAX_IMAGE_PIXELS:,} pixels; cut it into smaller images"
            )
        _check_mode(path, image, role, warn)
        yield image


def decode(path: str | Path, image: Image.Image) -> Image.Image:
    """Decode an image from open_image() in place; a truncated or corrupt file raises PipelineError."""
    try:
        image.load()  # decodes now, so a truncated file fails here and not later
    except (OSError, SyntaxError, ValueError) as error:
        raise PipelineError(f"{path}: cannot decode image ({error})") from None
    return image


def rgb_array(image: Image.Image) -> np.ndarray:
    """A decoded image as a writable HxWx3 uint8 array, converted a strip at a time for large images.

    np.array(image) would hold three full copies at its peak (Pillow's, the bytes it exports, the
    array); strips keep Pillow's and the array's.
    """
    width, height = image.size
    if width * height <= _STRIP_PIXELS:
        return np.array(image if image.mode == "RGB" else image.convert("RGB"))  # writable; torch warns on read-only
    array = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(top + rows, height)))
        array[top : top + rows] = np.asarray(strip if strip.mode == "RGB" else strip.convert("RGB"))
    return array


def read_rgb(path: str | Path, role: str = "image") -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 array; corrupt, truncated or unsupported files raise PipelineError."""
    with open_image(path, role) as image:
        return rgb_array(decode(path, image))


def read_index_png(path: str | Path) -> np.ndarray:
    """Read a single-channel class-index PNG as an HxW uint8 array."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode != "L":
                raise PipelineError(f"{path}: expected a single-channel class-index PNG, got mode {image.mode}")
            return np.array(image)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise PipelineError(f"{path}: cannot decode image ({error})") from None


def save_png(path: str | Path, image: Image.Image) -> None:
    image.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write an HxW (uint8 index) or HxWx3 (RGB) array as PNG."""
    save_png(path, Image.fromarray(np.ascontiguousarray(array)))


def write_jpeg(path: str | Path, array: np.ndarray, quality: int) -> None:
    Image.fromarray(array).save(path, format="JPEG", quality=quality)
