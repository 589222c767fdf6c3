"""The encode stage's core: class-index masks written, and each image's pixels counted once."""

from __future__ import annotations

import numpy as np
import pytest

from landcover.data.encoding import ImagePixels, encode_images, encode_report, read_pixel_counts, write_pixel_counts
from landcover.data.geometry import tile_grid
from landcover.data.palette import IGNORE_INDEX, ClassTable, index_to_colour
from landcover.data.tilestore import TileRecord, TileStore, tile_name
from landcover.io.imageio import read_index_png, write_png

TABLE = ClassTable.deepglobe()
SIZE, STRIDE = 16, 14  # overlapping tiles: a 20x30 image has origins y 0, 4 and x 0, 14


def write_colour_mask(store: TileStore, image_id: str, index: np.ndarray) -> list[TileRecord]:
    """Store the colour picture of `index` and index its overlapping tiles, as the tile stage does."""
    store.colour_masks_dir.mkdir(parents=True, exist_ok=True)
    write_png(store.colour_mask_path(image_id), index_to_colour(index, TABLE))
    height, width = index.shape
    return [
        TileRecord(tile_name(image_id, y, x), image_id, y, x, SIZE, height, width)
        for y, x in tile_grid(height, width, SIZE, STRIDE)
    ]


@pytest.fixture
def images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    first = rng.integers(0, len(TABLE), (20, 30)).astype(np.uint8)
    first[:5, :7] = IGNORE_INDEX  # 35 pixels in no class, some of them in two tiles
    second = np.full((20, 30), 4, dtype=np.uint8)  # all water, nothing ignored
    return {"a": first, "b": second}


def test_encoded_masks_hold_class_indices_and_counts_cover_each_pixel_once(tmp_path, images):
    store = TileStore(tmp_path / "tiles", tmp_path / "encoded")
    records = [record for image_id, index in images.items() for record in write_colour_mask(store, image_id, index)]
    assert len(records) == 8
    counts = encode_images(records, store, TABLE, progress=False)
    assert sorted(path.name for path in store.class_masks_dir.iterdir()) == ["a.png", "b.png"]  # one per image
    for image_id, index in images.items():
        np.testing.assert_array_equal(read_index_png(store.class_mask_path(image_id)), index)
    for record in records:  # each tile reads back as its window of the class mask
        expected = images[record.image_id][record.y : record.y + SIZE, record.x : record.x + SIZE]
        np.testing.assert_array_equal(store.read_class_mask(record), expected)
    assert [image.image_id for image in counts] == ["a", "b"]
    for image in counts:
        index = images[image.image_id]
        assert image.per_class == tuple(int(np.count_nonzero(index == c)) for c in range(len(TABLE)))
        assert image.ignored == int(np.count_nonzero(index == IGNORE_INDEX))
        assert sum(image.per_class) + image.ignored == 20 * 30  # overlaps counted once
    assert counts[0].ignored == 35 and counts[1] == ImagePixels("b", (0, 0, 0, 0, 600, 0, 0), 0)


def test_pixel_counts_csv_round_trip(tmp_path):
    counts = [ImagePixels("7", (1, 2, 3, 4, 5, 6, 7), 8), ImagePixels("12", (0, 0, 0, 0, 0, 0, 9), 0)]
    path = tmp_path / "pixels.csv"
    write_pixel_counts(path, counts, TABLE)
    assert path.read_text().splitlines()[0] == "image_id," + ",".join(TABLE.names) + ",ignored"
    assert b"\r" not in path.read_bytes()  # "\n" line ends on every platform: the bytes DVC hashes
    assert read_pixel_counts(path, TABLE) == counts


def test_encode_report_counts_ignored_pixels():
    counts = [ImagePixels("1", (10, 20), 5), ImagePixels("2", (30, 0), 0), ImagePixels("3", (0, 0), 35)]
    assert encode_report(counts) == {
        "images": 3,
        "pixels": 100,
        "ignored_pixels": 40,
        "ignored_fraction": 0.4,
        "images_with_ignored_pixels": 2,
    }
    assert encode_report([]) == {
        "images": 0,
        "pixels": 0,
        "ignored_pixels": 0,
        "ignored_fraction": 0.0,
        "images_with_ignored_pixels": 0,
    }
    assert encode_report([ImagePixels("1", (2,), 1)])["ignored_fraction"] == 0.33333333  # rounded to 8 places
