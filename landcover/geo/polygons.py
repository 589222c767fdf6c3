"""A class map as polygons, one per connected region of a class, written as a GeoPackage.

Regions are traced by GDAL (rasterio.features.shapes: 4-connected pixels of one value, holes
kept), reading the class map a few rows at a time; their polygons are held in memory until written, so
memory grows with the number of regions, not with the scene. Each polygon carries its class
index and name, its pixel count and its area on the ground in hectares (areas.PixelAreas: the sum of
its pixels' areas, the same as the area report's, in any CRS; empty where the map has no areas).
Polygons under `--min-area` hectares are left out.

Writing GeoPackages takes pyogrio, an optional package (about 100 MB: it brings its own GDAL):
`make install-vector` installs it from requirements-vector.lock.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from affine import Affine

from landcover.data.palette import ClassTable
from landcover.geo.areas import SQUARE_METRES_PER_HECTARE, PixelAreas, Ring, polygon_area
from landcover.io.errors import PipelineError

LAYER = "land_cover"
VECTOR_PACKAGE = "pyogrio"
INSTALL_HINT = "make install-vector"


def require_vector_writer():
    """pyogrio, or one line saying how to install it (checked before any prediction starts)."""
    try:
        import pyogrio
    except ImportError:
        raise PipelineError(
            f"--polygons: writing GeoPackages needs the optional package {VECTOR_PACKAGE}, "
            f"which is not installed; install it with `{INSTALL_HINT}`"
        ) from None
    return pyogrio


def polygon_wkb(rings: Sequence[Ring]) -> bytes:
    """A polygon as little-endian WKB (type 3): ring count, then each ring's point count and x, y doubles."""
    parts = [struct.pack("<BII", 1, 3, len(rings))]
    for ring in rings:
        points = np.asarray(ring, dtype="<f8")
        parts.append(struct.pack("<I", len(points)))
        parts.append(points.tobytes())
    return b"".join(parts)


def class_polygons(
    source, transform: Affine, table: ClassTable, areas: PixelAreas | None, min_area_ha: float
) -> dict[str, list]:
    """Columns of the polygon table (geometry as WKB) for a class map: a rasterio Band or an HxW uint8 array."""
    from rasterio import features

    columns: dict[str, list] = {"geometry": [], "class_id": [], "class": [], "pixels": [], "area_ha": []}
    pixel_area = abs(transform.determinant)
    for shape, value in features.shapes(source, transform=transform):
        value = int(value)
        if value >= len(table):  # 255: no prediction
            continue
        rings = shape["coordinates"]
        hectares = None if areas is None else areas.polygon_m2(rings) / SQUARE_METRES_PER_HECTARE
        if hectares is not None and hectares < min_area_ha:
            continue
        columns["geometry"].append(polygon_wkb(rings))
        columns["class_id"].append(value)
        columns["class"].append(table.names[value])
        columns["pixels"].append(round(polygon_area(rings) / pixel_area))
        columns["area_ha"].append(hectares)
    return columns


def write_geopackage(path: Path, columns: dict[str, list], crs) -> None:
    """The polygon table as a GeoPackage layer `land_cover`, in `crs` (rasterio CRS or None)."""
    require_vector_writer()
    from pyogrio.raw import write

    known = np.array([value is not None for value in columns["area_ha"]], dtype=bool)
    area = np.array([value if value is not None else np.nan for value in columns["area_ha"]], dtype=np.float64)
    with warnings.catch_warnings():
        # The staging file's name ends in .tmp until it is renamed to .gpkg; GDAL would warn about that.
        warnings.filterwarnings("ignore", message="The filename extension should be", category=RuntimeWarning)
        write(
            str(path),
            np.array(columns["geometry"], dtype=object),
            [
                np.array(columns["class_id"], dtype=np.int32),
                np.array(columns["class"], dtype=object),
                np.array(columns["pixels"], dtype=np.int64),
                area,
            ],
            ["class_id", "class", "pixels", "area_ha"],
            field_mask=[None, None, None, ~known],
            layer=LAYER,
            driver="GPKG",
            geometry_type="Polygon",
            crs=None if crs is None else crs.to_wkt(),
        )
