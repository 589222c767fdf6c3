"""Tiling covers every pixel, aligns the last tiles to the edge, and stitches back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from landcover.data.geometry import (
    cut,
    first_cover_offsets,
    overlap_stride,
    stitch,
    tile_grid,
    tile_origins,
    window_grid,
)
from landcover.data.tilestore import tile_name


@pytest.mark.parametrize(
    "length, size, stride, expected",
    [
        (512, 256, 256, [0, 256]),  # divides: no overlap
        (2448, 512, 512, [0, 512, 1024, 1536, 1936]),  # DeepGlobe: last tile flush with the edge
        (300, 100, 60, [0, 60, 120, 180, 200]),
        (256, 256, 256, [0]),
    ],
)
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
        covered[origin : origin + size] += 1
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


@given(st.integers(1, 300), st.data())
def test_first_cover_offsets_count_every_pixel_once(length, data):
    size = data.draw(st.integers(1, length))
    stride = data.draw(st.integers(1, size))
    origins = tile_origins(length, size, stride)
    offsets = first_cover_offsets(origins, size)
    counted = np.zeros(length, dtype=int)
    for origin in origins:
        counted[origin + offsets[origin] : origin + size] += 1
    np.testing.assert_array_equal(counted, 1)


def test_first_cover_offsets_of_a_deepglobe_row():
    # 2448 = 9 * 256 + 144: the last tile, at 2192, repeats 112 pixels of the one at 2048
    offsets = first_cover_offsets(tile_origins(2448, 256, 256), 256)
    assert offsets == {**{origin: 0 for origin in range(0, 2304, 256)}, 2192: 112}


def test_stitch_refuses_tiles_that_leave_a_gap():
    tiles = [(0, 0, np.ones((4, 4), dtype=np.uint8)), (0, 6, np.ones((4, 4), dtype=np.uint8))]
    with pytest.raises(ValueError, match="leave 8 of 4x10 pixels uncovered, the first at y=0, x=4"):
        stitch(tiles, 4, 10)


def test_stitch_keeps_pixel_values_equal_to_the_fill_and_to_zero():
    # 255 is also the fill and 0 an untouched array's value: neither may pass for a gap or hide one
    tiles = [(0, 0, np.full((2, 2), 255, dtype=np.uint8)), (0, 2, np.zeros((2, 2), dtype=np.uint8))]
    stitched = stitch(tiles, 2, 4)
    np.testing.assert_array_equal(stitched, [[255, 255, 0, 0]] * 2)
    assert stitched.dtype == np.uint8  # the tiles' type: class masks stay uint8


def test_stitch_reports_where_a_gap_begins():
    one_column = [(0, 0, np.ones((2, 2), dtype=np.uint8)), (0, 3, np.ones((2, 2), dtype=np.uint8))]
    with pytest.raises(ValueError, match="leave 2 of 2x5 pixels uncovered, the first at y=0, x=2"):
        stitch(one_column, 2, 5)
    # tiles wider than tall cover two rows, not three: the two rows below them are the gap
    flat = [(0, 0, np.ones((2, 3), dtype=np.uint8)), (0, 3, np.ones((2, 3), dtype=np.uint8))]
    with pytest.raises(ValueError, match="leave 12 of 4x6 pixels uncovered, the first at y=2, x=0"):
        stitch(flat, 4, 6)


def test_stitch_of_no_tiles_is_an_error():
    with pytest.raises(ValueError, match="no tiles"):
        stitch([], 2, 2)


def test_stitch_places_tiles_that_are_not_square():
    tiles = [
        (0, 0, np.full((2, 3), 1, dtype=np.uint8)),
        (0, 3, np.full((2, 3), 2, dtype=np.uint8)),
        (2, 0, np.full((2, 3), 3, dtype=np.uint8)),
        (2, 3, np.full((2, 3), 4, dtype=np.uint8)),
    ]
    np.testing.assert_array_equal(stitch(tiles, 4, 6), [[1, 1, 1, 2, 2, 2]] * 2 + [[3, 3, 3, 4, 4, 4]] * 2)
