"""Tiling covers every pixel, aligns the last tiles to the edge, and stitches back exactly."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.core.geometry import cut, overlap_stride, stitch, tile_grid, tile_origins, window_grid
from stages.core.tilestore import tile_name


@pytest.mark.parametrize("length, size, stride, expected", [
    (512, 256, 256, [0, 256]),  # divides: no overlap
    (2448, 512, 512, [0, 512, 1024, 1536, 1936]),  # DeepGlobe: last tile flush with the edge
    (300, 100, 60, [0, 60, 120, 180, 200]),
    (256, 256, 256, [0]),
])
def test_origins(length, size, stride, expected):
    assert tile_origins(length, size, stride) == expected


@given(st.integers(1, 300), st.data())
def test_tiles_cover_every_pixel_exactly_once_or_more_and_stay_inside(length, data):
    size = data.draw(st.integers(1, length))
    stride = data.draw(st.integers(1, size))
    origins = tile_origins(length, size, stride)
    covered = np.zeros(length, dtype=int)
    for origin in origins:
        assert 0 <= origin and origin + size <= length
        covered[origin:origin + size] += 1
    assert covered.min() >= 1
    assert origins == sorted(set(origins))


@given(st.integers(8, 80), st.integers(8, 80), st.data())
def test_cut_and_stitch_reassembles_the_original(height, width, data):
    size = data.draw(st.integers(1, min(height, width)))
    stride = data.draw(st.integers(1, size))
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    tiles = list(cut(image, size, stride))
    assert all(tile.shape == (size, size, 3) for _, _, tile in tiles)  # no padded or short tiles
    np.testing.assert_array_equal(stitch(tiles, height, width), image)


def test_grid_of_a_deepglobe_image():
    grid = tile_grid(2448, 2448, 256, 256)
    assert len(grid) == 10 * 10 and grid[-1] == (2192, 2192)


def test_tile_names_encode_image_and_position():
    assert tile_name("119", 256, 2192) == "119_y00256_x02192"


@pytest.mark.parametrize("length, size, stride", [(10, 11, 1), (10, 5, 0), (10, 5, 6), (0, 0, 0)])
def test_impossible_tilings_are_refused(length, size, stride):
    with pytest.raises(ValueError, match=f"stride \\({stride}\\) <= size \\({size}\\) <= length \\({length}\\)"):
        tile_origins(length, size, stride)


def test_windows_step_by_the_unshared_part_of_their_side():
    assert overlap_stride(256, 0.25) == 192
    assert overlap_stride(64, 0.5) == 32
    assert overlap_stride(10, 0.0) == 10
    assert overlap_stride(10, 0.99) == 1  # never a zero step
    assert overlap_stride(10, 0.26) == 7  # rounded, not truncated (7.4)
    assert overlap_stride(10, 0.14) == 9  # 8.6
    assert window_grid(64, 100, 32, 0.5) == [(y, x) for y in (0, 16, 32) for x in (0, 16, 32, 48, 64, 68)]
