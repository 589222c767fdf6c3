"""A layer's Web Mercator tiles and pixel values, read by rio-tiler from the layer's rasters whatever their CRS
(reprojected on the fly, by nearest neighbour: a class is never blended with its neighbour), and drawn by kind:
class and change maps in their colour tables, confidence on a colour ramp, imagery as RGB stretched per band."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rio_tiler.colormap import cmap
from rio_tiler.errors import EmptyMosaicError, PointOutsideBounds, TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader

from landcover.data.palette import ClassTable
from landcover.geo.georaster import NODATA_CLASS
from landcover.viewer.outputs import CHANGE, CLASSES, CONFIDENCE, IMAGERY, Layer, Raster

TILE_SIZE = 256
CONFIDENCE_RAMP = "viridis"  # rio-tiler's colour map for confidence, low (dark blue) to high (yellow)
# zoom levels past a raster's native resolution that are still served: pixels drawn as crisp squares
EXTRA_ZOOM = 4


def table_colormap(table: ClassTable) -> dict[int, tuple[int, int, int, int]]:
    """Each class's colour, opaque; no class (255) transparent."""
    colormap = {index: (*map(int, colour), 255) for index, colour in enumerate(table.colours)}
    colormap[NODATA_CLASS] = (0, 0, 0, 0)
    return colormap


@cache
def confidence_colormap() -> dict[int, tuple[int, int, int, int]]:
    return cmap.get(CONFIDENCE_RAMP)


def open_reader(raster: Raster) -> Reader:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return Reader(raster.path)


def read_tile(raster: Raster, x: int, y: int, z: int) -> ImageData:
    """The raster's bands over tile (x, y, z), stretched to uint8 where it has ranges."""
    with open_reader(raster) as reader:
        image = reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=raster.bands)
    if raster.ranges is not None:
        in_range = [(0, 255) if span is None else span for span in raster.ranges]
        image.rescale(in_range=in_range)
    return image


def tile_png(layer: Layer, x: int, y: int, z: int) -> bytes | None:
    """The layer's tile as a PNG, or None where no raster of it covers the tile."""
    try:
        if len(layer.rasters) == 1:
            image = read_tile(layer.rasters[0], x, y, z)
        else:
            image, _ = mosaic_reader(list(layer.rasters), read_tile, x, y, z, threads=0)
    except (TileOutsideBounds, EmptyMosaicError):
        return None
    if layer.kind in (CLASSES, CHANGE):
        assert layer.table is not None, "class and change layers carry their colour table"
        return image.render(img_format="PNG", colormap=table_colormap(layer.table))
    if layer.kind == CONFIDENCE:
        return image.render(img_format="PNG", colormap=confidence_colormap())
    assert layer.kind == IMAGERY, layer.kind
    return image.render(img_format="PNG")


@cache
def empty_tile() -> bytes:
    """A transparent tile: what is drawn where a layer has no data."""
    nothing = np.ma.masked_array(np.zeros((1, TILE_SIZE, TILE_SIZE), dtype=np.uint8), mask=True)
    return ImageData(nothing).render(img_format="PNG")


@dataclass(frozen=True)
class Extent:
    """Where a layer lies (west, south, east, north in degrees) and the zoom levels its tiles are served at."""

    bounds: tuple[float, float, float, float]
    minzoom: int
    maxzoom: int


def layer_extent(layer: Layer) -> Extent:
    boxes, minzooms, maxzooms = [], [], []
    for raster in layer.rasters:
        with open_reader(raster) as reader:
            boxes.append(reader.get_geographic_bounds(reader.tms.rasterio_geographic_crs))
            minzooms.append(reader.minzoom)
            maxzooms.append(reader.maxzoom)
    west, south, east, north = zip(*boxes)
    return Extent((min(west), min(south), max(east), max(north)), max(0, min(minzooms)), max(maxzooms) + EXTRA_ZOOM)


def point_value(layer: Layer, lon: float, lat: float) -> int | None:
    """The value of the layer's first band at (lon, lat): the first raster of a mosaic that has data there, or None
    where none has."""
    for raster in layer.rasters:
        try:
            with open_reader(raster) as reader:
                point = reader.point(lon, lat, indexes=raster.bands[0])
        except PointOutsideBounds:
            continue
        if not np.asarray(point.mask).ravel()[0]:  # 0: no data there
            continue
        return int(np.asarray(point.data).ravel()[0])
    return None
