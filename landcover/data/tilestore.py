"""The prepared data on disk: the tile index, each image's files, tiles cut from them, whole images read back.

A tile is a window of a whole image, not a file of its own. The tile stage writes
`tiles/images/<id>.jpg` (the source JPEG's own bytes; `.png` for sources it had to convert),
`tiles/masks/<id>.png` (the colour mask as stored), `tiles/index.csv` (every tile's window) and
`tiles/class_dict.csv`; the encode stage writes `encoded/masks/<id>.png` (class indices) and
`encoded/pixels.csv` (class pixels per image).

Why whole images: at DeepGlobe's real size, one file per tile is 300,000 files per layer at
128 px tiles, which DVC hashes, caches and transfers one by one, and a PNG of JPEG imagery is
4-5x the JPEG's bytes. Keeping the source's bytes makes the derived data about the raw data's
size, and a tile's pixels are exactly those of decoding the source image (docs/data.md,
"The real DeepGlobe data"). Everything downstream reads them through `TileStore`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from landcover.data.palette import ClassTable
from landcover.io.errors import PipelineError
from landcover.io.imageio import read_index_png, read_rgb


class Window(NamedTuple):
    """A window of an image in pixels, as rasterio's Window orders it (rasterio itself is imported only where a
    GeoTIFF is read: DeepGlobe's JPEGs, and a machine without GDAL, need none of it)."""

    col_off: int
    row_off: int
    width: int
    height: int


def _rasters():
    import landcover.io.rasters

    return landcover.io.rasters


# Image files keep their source's format: .jpg (bytes as downloaded), .png (converted, lossless), or
# .tif (a scene's GeoTIFF as it came); class masks are .png, or .tif for scenes (read a window at a time).
IMAGE_SUFFIXES = (".jpg", ".png", ".tif")
MASK_SUFFIXES = (".png", ".tif")
RGB_BANDS = (1, 2, 3)

INDEX_COLUMNS = ("tile", "image_id", "y", "x", "size", "image_height", "image_width")


@dataclass(frozen=True)
class TileRecord:
    """One row of the tile index: a tile's name and its place in its image."""

    tile: str
    image_id: str
    y: int
    x: int
    size: int
    image_height: int
    image_width: int


def tile_name(image_id: str, y: int, x: int) -> str:
    """A tile's file stem: its image and its place there, e.g. `119_y00256_x02192`."""
    return f"{image_id}_y{y:05d}_x{x:05d}"


def read_index(path: str | Path) -> list[TileRecord]:
    """A tile index (the tile stage's, or a split's), in its order: by image, then row, then column."""
    with open(path, newline="") as handle:
        return [
            TileRecord(
                row["tile"],
                row["image_id"],
                int(row["y"]),
                int(row["x"]),
                int(row["size"]),
                int(row["image_height"]),
                int(row["image_width"]),
            )
            for row in csv.DictReader(handle)
        ]


def write_index(path: str | Path, records: Iterable[TileRecord]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        for record in records:
            writer.writerow([getattr(record, column) for column in INDEX_COLUMNS])


def group_by_image(records: Iterable[TileRecord]) -> dict[str, list[TileRecord]]:
    """Tiles per image id, images in their first appearance's order."""
    groups: dict[str, list[TileRecord]] = {}
    for record in records:
        groups.setdefault(record.image_id, []).append(record)
    return groups


def whole_images(
    records: Iterable[TileRecord], read_whole: Callable[[TileRecord], np.ndarray]
) -> Iterator[tuple[str, np.ndarray]]:
    """(image id, whole array) for every image of `records`, one image at a time.

    `read_whole` says which layer: `store.whole_image`, `store.whole_colour_mask` or `store.whole_class_mask`.
    """
    for image_id, tiles in group_by_image(records).items():
        yield image_id, read_whole(tiles[0])


def crop(whole: np.ndarray, record: TileRecord) -> np.ndarray:
    """The tile `record` of its image's whole array (a copy: the whole may be cached and reused)."""
    return whole[record.y : record.y + record.size, record.x : record.x + record.size].copy()


@dataclass(frozen=True)
class TileStore:
    """The tile stage's output folder and, once encoded, the encode stage's."""

    tiles: Path
    encoded: Path | None = None

    @property
    def index_path(self) -> Path:
        return self.tiles / "index.csv"

    @property
    def class_table_path(self) -> Path:
        return self.tiles / "class_dict.csv"

    @property
    def images_dir(self) -> Path:
        return self.tiles / "images"

    @property
    def colour_masks_dir(self) -> Path:
        return self.tiles / "masks"

    @property
    def class_masks_dir(self) -> Path:
        return self._encoded() / "masks"

    @property
    def pixel_counts_path(self) -> Path:
        return self._encoded() / "pixels.csv"

    def _encoded(self) -> Path:
        if self.encoded is None:
            raise ValueError("this TileStore was given no encoded folder")
        return self.encoded

    def index(self) -> list[TileRecord]:
        return read_index(self.index_path)

    @property
    def scenes_path(self) -> Path:
        """The scenes' record (scenes datasets only): bands, type, and each scene's labels."""
        return self.tiles / "scenes.json"

    @property
    def labels_dir(self) -> Path:
        return self.tiles / "labels"

    def class_table(self) -> ClassTable:
        return ClassTable.from_csv(self.class_table_path)

    @cached_property
    def scenes(self) -> dict | None:
        """tiles/scenes.json where the dataset is made of scenes, else None (DeepGlobe's layout)."""
        return json.loads(self.scenes_path.read_text()) if self.scenes_path.is_file() else None

    @property
    def bands(self) -> tuple[int, ...]:
        """The image bands every read returns, in order (data.bands; RGB for DeepGlobe's layout)."""
        return RGB_BANDS if self.scenes is None else tuple(self.scenes["bands"])

    @property
    def dtype(self) -> str:
        """The images' type: uint8 for DeepGlobe's layout, the scenes' own otherwise."""
        return "uint8" if self.scenes is None else str(self.scenes["dtype"])

    def image_path(self, image_id: str) -> Path:
        """The image's file: `<id>.jpg` where the source's bytes were kept, `<id>.tif` for a scene's GeoTIFF,
        else `<id>.png`."""
        return _first_existing(self.images_dir, image_id, IMAGE_SUFFIXES)

    def colour_mask_path(self, image_id: str) -> Path:
        return self.colour_masks_dir / f"{image_id}.png"

    def class_mask_path(self, image_id: str) -> Path:
        return _first_existing(self.class_masks_dir, image_id, MASK_SUFFIXES)

    # Whole images, given any tile of theirs: HxWxC (image: its bands, of its type; colour mask: RGB) or
    # HxW uint8 class indices. Sizes are checked against the index, so a file replaced by hand fails with its name.
    def whole_image(self, record: TileRecord) -> np.ndarray:
        path = self.image_path(record.image_id)
        if path.suffix == ".tif":
            with _rasters().open_raster(path) as dataset:
                whole = _rasters().read_pixels(dataset, path, self.bands, _whole_window(record))
            return checked(whole, record, path)
        rgb = checked(read_rgb(path), record, path)
        return rgb if self.bands == RGB_BANDS else np.ascontiguousarray(rgb[..., [band - 1 for band in self.bands]])

    def whole_colour_mask(self, record: TileRecord) -> np.ndarray:
        path = self.colour_mask_path(record.image_id)
        return checked(read_rgb(path, "mask"), record, path)

    def whole_class_mask(self, record: TileRecord) -> np.ndarray:
        path = self.class_mask_path(record.image_id)
        if path.suffix == ".tif":
            with _rasters().open_raster(path) as dataset:
                return checked(_rasters().read_window(dataset, path, 1, _whole_window(record)), record, path)
        return checked(read_index_png(path), record, path)

    # Regions: what predict and evaluate score, a whole image or a block of a scene (split.method blocks).
    def region_class_mask(self, region: Region) -> np.ndarray:
        if region.whole:
            return self.whole_class_mask(region.record)
        windows = ImageWindows(self, region.record, images=False)
        try:
            return windows.read_mask(region.window)
        finally:
            windows.close()

    @contextmanager
    def region_rows(self, region: Region) -> Iterator[RegionRows]:
        """A region's image opened to be read a strip of rows at a time (a scene's GeoTIFF: only the strips are in
        memory)."""
        windows = ImageWindows(self, region.record, masks=False)
        try:
            yield RegionRows(windows, region)
        finally:
            windows.close()

    def windows(self, record: TileRecord, masks: bool = True) -> ImageWindows:
        """`record`'s image (and class mask) opened for reading any of its tiles: close it when done."""
        return ImageWindows(self, record, masks)

    # Single tiles. Each decodes its whole image: to read many tiles, decode once and crop
    # (TileDataset keeps the images it is reading).
    def read_image(self, record: TileRecord) -> np.ndarray:
        return crop(self.whole_image(record), record)

    def read_colour_mask(self, record: TileRecord) -> np.ndarray:
        return crop(self.whole_colour_mask(record), record)

    def read_class_mask(self, record: TileRecord) -> np.ndarray:
        return crop(self.whole_class_mask(record), record)


BLOCKS_FILE = "blocks.csv"  # the split stage's blocks of scenes (split.method blocks), beside the split indexes


@dataclass(frozen=True)
class Region:
    """A part of an image that predict maps and evaluate scores: the whole image, or one block of a scene."""

    record: TileRecord  # any tile of its image: the image's id and size
    y: int = 0
    x: int = 0
    height: int | None = None  # None: the whole image
    width: int | None = None

    @property
    def whole(self) -> bool:
        return self.height is None

    @property
    def image_id(self) -> str:
        return self.record.image_id

    @property
    def name(self) -> str:
        """The prediction's file stem: the image id, or for a block the id and its place, as a tile's."""
        return self.image_id if self.whole else tile_name(self.image_id, self.y, self.x)

    @property
    def window(self) -> Window:
        if self.height is None or self.width is None:
            return Window(0, 0, self.record.image_width, self.record.image_height)
        return Window(self.x, self.y, self.width, self.height)


def split_regions(split_index: Path) -> list[Region]:
    """What predict maps and evaluate scores for a split's index (e.g. splits/test.csv): its blocks where the
    split stage cut scenes into blocks (blocks.csv beside it), else its whole images."""
    split_index = Path(split_index)
    blocks = split_index.parent / BLOCKS_FILE
    if not blocks.is_file():
        return [Region(tiles[0]) for tiles in group_by_image(read_index(split_index)).values()]
    return [block for block, split in read_blocks(blocks) if split == split_index.stem]


BLOCK_COLUMNS = ("image_id", "y", "x", "height", "width", "image_height", "image_width", "split")


def write_blocks(path: Path, blocks: Iterable[tuple[Region, str]]) -> None:
    """Every block of every scene and its split (the split stage's blocks.csv)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(BLOCK_COLUMNS)
        for block, split in blocks:
            image = block.record
            writer.writerow(
                [
                    block.image_id,
                    block.y,
                    block.x,
                    block.height,
                    block.width,
                    image.image_height,
                    image.image_width,
                    split,
                ]
            )


def read_blocks(path: Path) -> list[tuple[Region, str]]:
    with open(path, newline="") as handle:
        return [
            (
                Region(
                    TileRecord(
                        row["image_id"], row["image_id"], 0, 0, 0, int(row["image_height"]), int(row["image_width"])
                    ),
                    int(row["y"]),
                    int(row["x"]),
                    int(row["height"]),
                    int(row["width"]),
                ),
                row["split"],
            )
            for row in csv.DictReader(handle)
        ]


class RegionRows:
    """A region of an image as a row source for prediction (inference.blending.RowSource): its bands, a strip of
    rows at a time, every pixel with data."""

    def __init__(self, windows: ImageWindows, region: Region) -> None:
        self.windows, self.region = windows, region
        window = region.window
        self.height, self.width = int(window.height), int(window.width)
        self.block_rows = windows.block_rows

    def read_rows(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        window = self.region.window
        rows = self.windows.read_image(Window(window.col_off, window.row_off + top, self.width, bottom - top))
        return rows, np.ones((bottom - top, self.width), dtype=bool)


class ImageWindows:
    """One image's tiles (and their class masks), read without decoding the image for each.

    A GeoTIFF is kept open and each tile's window read from it (a scene of any size takes the memory
    of its tiles); a JPEG or PNG, which cannot be read a window at a time, is decoded once and cropped.
    """

    def __init__(self, store: TileStore, record: TileRecord, masks: bool = True, images: bool = True) -> None:
        self._files = ExitStack()
        self.block_rows = record.image_height  # rows decoded at a time: a whole JPEG, or a GeoTIFF's blocks
        self._read_image = (
            self._reader(store.image_path(record.image_id), record, store.bands, store.whole_image) if images else None
        )
        self._read_mask = (
            self._reader(store.class_mask_path(record.image_id), record, 1, store.whole_class_mask) if masks else None
        )

    def read_image(self, window: Window) -> np.ndarray:
        """The image's bands in `window` (H x W x bands, of the image's type)."""
        assert self._read_image is not None, "opened without images"
        return self._read_image(window)

    def read_mask(self, window: Window) -> np.ndarray:
        """The class indices in `window` (H x W uint8)."""
        assert self._read_mask is not None, "opened without masks"
        return self._read_mask(window)

    def image(self, record: TileRecord) -> np.ndarray:
        return self.read_image(Window(record.x, record.y, record.size, record.size))

    def mask(self, record: TileRecord) -> np.ndarray:
        return self.read_mask(Window(record.x, record.y, record.size, record.size))

    def _reader(self, path: Path, record: TileRecord, bands, read_whole) -> Callable[[Window], np.ndarray]:
        if path.suffix != ".tif":
            whole = read_whole(record)
            return lambda window: whole[
                window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width
            ].copy()
        rasters = _rasters()
        dataset = self._files.enter_context(rasters.open_raster(path))
        check_size(dataset.height, dataset.width, record, path)
        if isinstance(bands, int):
            return lambda window: rasters.read_window(dataset, path, bands, window)
        self.block_rows = dataset.block_shapes[0][0]
        return lambda window: rasters.read_pixels(dataset, path, bands, window)

    def close(self) -> None:
        self._files.close()


def _whole_window(record: TileRecord) -> Window:
    return Window(0, 0, record.image_width, record.image_height)


def _first_existing(folder: Path, image_id: str, suffixes: tuple[str, ...]) -> Path:
    for suffix in suffixes:
        path = folder / f"{image_id}{suffix}"
        if path.is_file():
            return path
    return folder / f"{image_id}{suffixes[0]}"  # the reader names it in its "file not found"


def checked(whole: np.ndarray, record: TileRecord, path: Path) -> np.ndarray:
    """`whole` if it has the size the index gives its image, else a PipelineError naming `path`."""
    height, width = whole.shape[:2]
    check_size(height, width, record, path)
    return whole


def check_size(height: int, width: int, record: TileRecord, path: Path) -> None:
    """A PipelineError naming `path` unless it is of the size the index gives its image."""
    if (height, width) != (record.image_height, record.image_width):
        raise PipelineError(
            f"{path}: is {width}x{height} but the tile index says image {record.image_id} is "
            f"{record.image_width}x{record.image_height}; rerun the tile stage"
        )
