"""A layer's Web Mercator tiles and pixel values, read by rio-tiler from the layer's rasters whatever their CRS
(reprojected on the fly, by nearest neighbour: a class is never blended with its neighbour), and drawn by kind:
class and change maps in their colour tables, confidence on a colour ramp, imagery as RGB stretched per band."""

from __future__ import annotations

import warnings
from functools import cache

import morecantile
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
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")  # the tiles' grid: rio-tiler's default, MapLibre's
CONFIDENCE_RAMP = "viridis"  # rio-tiler's colour map for confidence, low (dark blue) to high (yellow)
# zoom levels past a raster's native resolution that are still served: pixels drawn as crisp squares
EXTRA_ZOOM = 4


def table_colormap(table: ClassTable) -> dict[int, tuple[int, int, int, int]]:
    """Each class's colour, opaque; no class (255) transparent."""
    colormap = {index: (int(red), int(green), int(blue), 255) for index, (red, green, blue) in enumerate(table.colours)}
    colormap[NODATA_CLASS] = (0, 0, 0, 0)
    return colormap


@cache
def confidence_colormap() -> dict[int, tuple[int, int, int, int]]:
    colormap = cmap.get(CONFIDENCE_RAMP)
    assert isinstance(colormap, dict), "rio-tiler's named colour maps are a colour per value"
    return {int(value): colour for value, colour in colormap.items()}


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


@cache
def empty_tile() -> bytes:
    """A transparent tile: what is drawn where a layer has no data."""
    nothing = np.ma.masked_array(np.zeros((1, TILE_SIZE, TILE_SIZE), dtype=np.uint8), mask=True)
    return ImageData(nothing).render(img_format="PNG")


Box = tuple[float, float, float, float]  # west, south, east, north in degrees


def overlaps(a: Box, b: Box) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class TiledLayer:
    """A layer ready to serve: where each of its rasters lies, so that a tile or point reads only the rasters that
    reach it (a region of many scenes opens a few per tile, not all), and the zoom levels it is served at: from
    its coarsest raster's whole-map level to EXTRA_ZOOM past its finest raster's pixel size."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        boxes, minzooms, maxzooms = [], [], []
        for raster in layer.rasters:
            with open_reader(raster) as reader:
                boxes.append(tuple(reader.get_geographic_bounds(reader.tms.rasterio_geographic_crs)))
                minzooms.append(reader.minzoom)
                maxzooms.append(reader.maxzoom)
        self.boxes: list[Box] = boxes
        west, south, east, north = zip(*boxes)
        self.bounds: Box = (min(west), min(south), max(east), max(north))
        self.minzoom, self.maxzoom = max(0, min(minzooms)), max(maxzooms) + EXTRA_ZOOM

    def reaching(self, box: Box) -> list[Raster]:
        """The rasters whose bounds meet `box`, in the layer's order."""
        return [raster for raster, bounds in zip(self.layer.rasters, self.boxes) if overlaps(bounds, box)]

    def tile_png(self, x: int, y: int, z: int) -> bytes | None:
        """The tile as a PNG, or None where no raster of the layer covers it."""
        west, south, east, north = WEB_MERCATOR.bounds(morecantile.Tile(x, y, z))
        rasters = self.reaching((west, south, east, north))
        try:
            if len(rasters) == 1:
                image = read_tile(rasters[0], x, y, z)
            elif rasters:
                image, _ = mosaic_reader(rasters, read_tile, x, y, z, threads=0)
            else:
                return None
        except (TileOutsideBounds, EmptyMosaicError):
            return None
        layer = self.layer
        if layer.kind in (CLASSES, CHANGE):
            assert layer.table is not None, "class and change layers carry their colour table"
            return image.render(img_format="PNG", colormap=table_colormap(layer.table))
        if layer.kind == CONFIDENCE:
            return image.render(img_format="PNG", colormap=confidence_colormap())
        assert layer.kind == IMAGERY, layer.kind
        return image.render(img_format="PNG")

    def point_value(self, lon: float, lat: float) -> int | None:
        """The value of the layer's first band at (lon, lat): the first raster of a mosaic that has data there, or
        None where none has."""
        for raster in self.reaching((lon, lat, lon, lat)):
            try:
                with open_reader(raster) as reader:
                    point = reader.point(lon, lat, indexes=raster.bands[0])
            except PointOutsideBounds:
                continue
            if not np.asarray(point.mask).ravel()[0]:  # 0: no data there
                continue
            return int(np.asarray(point.data).ravel()[0])
        return None
