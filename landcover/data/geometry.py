"""Where tiles and windows lie in an image, and cutting and stitching arrays by them: pure geometry, no I/O.

Where the tile size does not divide the image (2448 is not a multiple of 256 or 512), the last
row and column of tiles are aligned to the image's far edge, so they overlap their neighbours
instead of dropping a margin or padding with invented pixels. Prediction windows are laid out
the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def tile_origins(length: int, size: int, stride: int) -> list[int]:
    """Start offsets along one axis: every `stride`, plus a last tile flush with the far edge."""
    if not 1 <= stride <= size <= length:
        raise ValueError(f"need 1 <= stride ({stride}) <= size ({size}) <= length ({length})")
    origins = list(range(0, length - size + 1, stride))
    if origins[-1] + size < length:
        origins.append(length - size)
    return origins


def tile_grid(height: int, width: int, size: int, stride: int) -> list[tuple[int, int]]:
    """(y, x) of every tile's top-left corner, row by row."""
    return [(y, x) for y in tile_origins(height, size, stride) for x in tile_origins(width, size, stride)]


def overlap_stride(window: int, overlap: float) -> int:
    """The step between windows that share `overlap` (a fraction) of their side with the next one."""
    return max(1, round(window * (1 - overlap)))


def window_grid(height: int, width: int, window: int, overlap: float) -> list[tuple[int, int]]:
    """(y, x) of every prediction window, laid out like tiles with the stride that `overlap` gives."""
    return tile_grid(height, width, window, overlap_stride(window, overlap))


def cut(array: np.ndarray, size: int, stride: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (y, x, view) for every tile of an HxW[xC] array; views, not copies."""
    for y, x in tile_grid(array.shape[0], array.shape[1], size, stride):
        yield y, x, array[y : y + size, x : x + size]


def first_cover_offsets(origins: Iterable[int], size: int) -> dict[int, int]:
    """For tiles of side `size` at `origins` along one axis: where, relative to each tile, its pixels
    that no earlier tile covers begin. Scoring only those counts every pixel of an image once,
    although the edge tiles overlap their neighbours."""
    offsets, covered_to = {}, 0
    for origin in sorted(set(origins)):
        offsets[origin] = max(0, covered_to - origin)
        covered_to = max(covered_to, origin + size)
    return offsets


def stitch(tiles: Iterable[tuple[int, int, np.ndarray]], height: int, width: int) -> np.ndarray:
    """Reassemble tiles at their (y, x) into an HxW[xC] array; overlaps hold the same pixels.

    Every pixel must be covered by a tile: a gap raises ValueError rather than passing for a class
    (a zero-filled canvas would read as urban_land; this one starts as 255, the ignore value).
    """
    canvas: np.ndarray | None = None
    covered = np.zeros((height, width), dtype=bool)
    for y, x, tile in tiles:
        if canvas is None:
            canvas = np.full((height, width, *tile.shape[2:]), 255, dtype=tile.dtype)
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        covered[y : y + tile.shape[0], x : x + tile.shape[1]] = True
    if canvas is None:
        raise ValueError("no tiles to stitch")
    if not covered.all():
        rows, columns = np.nonzero(~covered)
        raise ValueError(
            f"the tiles leave {rows.size} of {height}x{width} pixels uncovered, "
            f"the first at y={rows[0]}, x={columns[0]}"
        )
    return canvas
