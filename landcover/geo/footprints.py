"""A raster's footprint on the ground: the outline of its bounds in longitude and latitude (WGS 84), as a GeoJSON
Polygon, each side densified so that a CRS that bends straight lines (UTM at a zone's edge, polar projections)
still draws the outline where the pixels are. Region summaries record one per scene; the viewer draws them."""

from __future__ import annotations

import numpy as np
from rasterio.errors import RasterioError
from rasterio.warp import transform as transform_points

from landcover.io.errors import PipelineError
from landcover.io.sources import Source

POINTS_PER_SIDE = 8


def footprint(crs, transform, width: int, height: int) -> dict | None:
    """The lon/lat Polygon of a grid's bounds (a closed ring, counter-clockwise), or None without a CRS."""
    if crs is None:
        return None
    steps = np.linspace(0.0, 1.0, POINTS_PER_SIDE, endpoint=False)
    # pixel-corner coordinates around the edge: top, right, bottom, left, from the top-left corner
    columns = np.concatenate([steps * width, np.full_like(steps, width), (1 - steps) * width, np.zeros_like(steps)])
    rows = np.concatenate([np.zeros_like(steps), steps * height, np.full_like(steps, height), (1 - steps) * height])
    x, y = transform @ (columns, rows)
    lon, lat = transform_points(crs, "EPSG:4326", list(x), list(y))
    ring = [[round(a, 7), round(b, 7)] for a, b in zip(lon, lat)]
    ring.reverse()  # top-left, left side down, bottom, right side up: counter-clockwise, as GeoJSON asks
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def source_footprint(source: Source) -> dict | None:
    """The footprint of the raster at `source` from its header, or None where the header cannot be read or the
    raster has no CRS (a JPEG or PNG)."""
    try:
        with source.open_raster() as dataset:
            return footprint(dataset.crs, dataset.transform, dataset.width, dataset.height)
    except (PipelineError, RasterioError, OSError, ValueError):
        return None
