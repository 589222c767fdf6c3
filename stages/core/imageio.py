"""Reading and writing images, with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stages.core.errors import PipelineError

# Masks and tiles are written with fast, lossless PNG compression: level 1 is ~5x faster to
# write than the default 6 and only slightly larger.
PNG_COMPRESS_LEVEL = 1


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 array; corrupt or truncated files raise PipelineError."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            image.load()  # decodes now, so a truncated file fails here and not later
            if image.mode != "RGB":
                image = image.convert("RGB")
            return np.array(image)  # writable (np.asarray of a PIL image is read-only; torch warns on those)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PipelineError(f"{path}: cannot decode image ({error})") from None


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


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write an HxW (uint8 index) or HxWx3 (RGB) array as PNG."""
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def write_jpeg(path: str | Path, array: np.ndarray, quality: int) -> None:
    Image.fromarray(array).save(path, format="JPEG", quality=quality)
