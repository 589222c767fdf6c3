"""Area on the ground of a raster's pixels and of polygons drawn on it, from its CRS and transform.

- Projected CRS: every pixel has the area its transform gives (|det|, in the CRS's unit squared,
  converted to m^2 by that unit: metre, foot, ...). This is area on the map: the projection's own
  scale error stays in it (UTM: within about -0.08% to +0.2% of the true area).
- Geographic CRS (degrees): a pixel's area depends on its latitude, so it is computed row by row,
  exactly, on the CRS's ellipsoid: a cell between latitudes p1 and p2, dl radians of longitude
  wide, has area a^2 * dl * |q(p1) - q(p2)| / 2, q being the authalic-latitude function (Snyder,
  "Map Projections: A Working Manual", 1987, eq. 3-12). Only north-up grids: a rotated geographic
  grid gets no areas, and the report says why.
- No CRS: `--pixel-size` metres gives each pixel pixel_size^2 m^2; without it there are no areas.

Polygons follow the same rules. In a geographic CRS their area is the shoelace area in the
ellipsoid's cylindrical equal-area projection (x = a * lon, y = a * q(lat) / 2), which is exact for
polygons whose edges run along meridians and parallels, as the edges of pixel polygons do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine

SQUARE_METRES_PER_HECTARE = 10_000.0
# Semi-major axis (m) and inverse flattening, from WKT1 SPHEROID[...] or WKT2 ELLIPSOID[...]
_ELLIPSOID = re.compile(r'(?:SPHEROID|ELLIPSOID)\["[^"]*",\s*([-+0-9.eE]+),\s*([-+0-9.eE]+)')

Ring = Sequence[Sequence[float]]  # [(x, y), ...], closed or not


def shoelace(ring: Ring | np.ndarray) -> float:
    """The signed area enclosed by a ring of (x, y) points."""
    points = np.asarray(ring, dtype=np.float64)
    # relative to the first point: products of large map coordinates would cancel away the digits
    x, y = points[:, 0] - points[0, 0], points[:, 1] - points[0, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_area(rings: Sequence[Ring], transform_points=None) -> float:
    """Area of a polygon given as its exterior ring and its holes, each optionally transformed first."""
    total = 0.0
    for index, ring in enumerate(rings):
        points = np.asarray(ring, dtype=np.float64)
        if transform_points is not None:
            points = transform_points(points)
        area = abs(shoelace(points))
        total += area if index == 0 else -area
    return total


class PixelAreas:
    """How big a raster's pixels are on the ground."""

    method: str  # said in the area report: how the areas were found
    pixel_area_m2: float | None  # every pixel's area where it is the same for all, else None

    def rows(self, top: int, bottom: int) -> np.ndarray:
        """float64 m^2 of one pixel in each of rows top..bottom-1."""
        raise NotImplementedError

    def polygon_m2(self, rings: Sequence[Ring]) -> float:
        """m^2 of a polygon in the raster's coordinates (exterior ring first, then holes)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantPixelArea(PixelAreas):
    """Every pixel the same size: a projected CRS, or --pixel-size for an image without a CRS."""

    pixel_area_m2: float
    transform: Affine  # of the coordinates polygons come in
    method: str

    def rows(self, top: int, bottom: int) -> np.ndarray:
        return np.full(bottom - top, self.pixel_area_m2)

    def polygon_m2(self, rings: Sequence[Ring]) -> float:
        # Affine maps keep ratios of areas: the polygon covers (its area / one pixel's area) pixels.
        return polygon_area(rings) / abs(self.transform.determinant) * self.pixel_area_m2


def authalic_q(latitude: np.ndarray, eccentricity: float) -> np.ndarray:
    """Snyder's q(latitude in radians) for an ellipsoid of this eccentricity (2 sin(lat) on a sphere)."""
    sine = np.sin(latitude)
    if eccentricity == 0:
        return 2 * sine
    e = eccentricity
    return (1 - e * e) * (sine / (1 - (e * sine) ** 2) - np.log((1 - e * sine) / (1 + e * sine)) / (2 * e))


@dataclass(frozen=True)
class GeographicPixelAreas(PixelAreas):
    """Pixels of a north-up grid in longitude/latitude: the same within a row, smaller toward the poles."""

    transform: Affine
    radians_per_unit: float
    semi_major: float
    eccentricity: float
    method: str = "geographic CRS: row by row on the ellipsoid"
    pixel_area_m2: None = None

    def rows(self, top: int, bottom: int) -> np.ndarray:
        edges = np.arange(top, bottom + 1, dtype=np.float64) * self.transform.e + self.transform.f
        q = authalic_q(edges * self.radians_per_unit, self.eccentricity)
        width = abs(self.transform.a) * self.radians_per_unit
        return self.semi_major**2 * width * np.abs(np.diff(q)) / 2

    def equal_area(self, points: np.ndarray) -> np.ndarray:
        """Points (lon, lat) in the CRS's units, in the ellipsoid's cylindrical equal-area projection (m)."""
        x = self.semi_major * points[:, 0] * self.radians_per_unit
        y = self.semi_major * authalic_q(points[:, 1] * self.radians_per_unit, self.eccentricity) / 2
        return np.column_stack([x, y])

    def polygon_m2(self, rings: Sequence[Ring]) -> float:
        return polygon_area(rings, self.equal_area)


def ellipsoid_of(crs) -> tuple[float, float]:
    """(semi-major axis in metres, eccentricity) of a rasterio CRS's ellipsoid, read from its WKT."""
    match = _ELLIPSOID.search(crs.to_wkt())
    if not match:
        raise ValueError("no ellipsoid in the CRS's definition")
    semi_major, inverse_flattening = float(match.group(1)), float(match.group(2))
    flattening = 0.0 if inverse_flattening == 0 else 1 / inverse_flattening
    return semi_major, math.sqrt(flattening * (2 - flattening))


def pixel_areas(crs, transform: Affine, height: int, pixel_size: float | None) -> tuple[PixelAreas | None, str | None]:
    """How big the pixels of a raster with this CRS (rasterio CRS or None) and transform are.

    Returns (areas, None), or (None, why there are none): no CRS and no pixel size, or a grid whose
    areas this module cannot compute correctly (a rotated geographic grid, latitudes beyond the poles).
    """
    if crs is None:
        if pixel_size is None:
            return None, "it has no CRS (give --pixel-size METRES for areas)"
        return ConstantPixelArea(pixel_size**2, transform, f"--pixel-size {pixel_size:g} m"), None
    if crs.is_projected:
        try:
            unit, metres = crs.linear_units_factor
        except Exception:  # rasterio raises CRSError for a CRS without a linear unit
            return None, "its projected CRS has no known linear unit"
        pixel = abs(transform.determinant) * metres**2
        return ConstantPixelArea(pixel, transform, f"projected CRS: pixel size in {unit}"), None
    if crs.is_geographic:
        if transform.b != 0 or transform.d != 0:
            return None, (
                "its geographic grid is rotated or sheared, so pixel areas cannot be computed row by "
                "row (reproject it to a projected CRS, e.g. gdalwarp -t_srs EPSG:<its UTM zone>)"
            )
        unit, radians = crs.units_factor
        latitudes = np.array([transform.f, transform.f + transform.e * height]) * radians
        if np.any(np.abs(latitudes) > math.pi / 2 + 1e-9):
            return None, (
                f"its geographic grid reaches beyond the poles (latitudes "
                f"{np.degrees(latitudes).round(6).tolist()} degrees)"
            )
        try:
            semi_major, eccentricity = ellipsoid_of(crs)
        except ValueError as error:
            return None, f"its geographic CRS gives no ellipsoid ({error})"
        return GeographicPixelAreas(transform, radians, semi_major, eccentricity), None
    return None, "its CRS is neither projected nor geographic"


class AreaCounter:
    """Pixels and area per class, added a strip of rows at a time."""

    def __init__(self, num_classes: int, areas: PixelAreas | None) -> None:
        self.num_classes = num_classes
        self.areas = areas
        self.pixels = np.zeros(256, dtype=np.int64)  # by value: classes, and 255 for no prediction
        self.area_m2 = np.zeros(256, dtype=np.float64)  # used where pixel areas vary by row

    def add(self, top: int, classes: np.ndarray) -> None:
        height = classes.shape[0]
        if self.areas is not None and self.areas.pixel_area_m2 is None:
            rows = np.repeat(np.arange(height, dtype=np.int64) * 256, classes.shape[1])
            per_row = np.bincount(rows + classes.ravel(), minlength=height * 256).reshape(height, 256)
            self.pixels += per_row.sum(axis=0)
            self.area_m2 += self.areas.rows(top, top + height) @ per_row
        else:
            self.pixels += np.bincount(classes.ravel(), minlength=256)

    def hectares(self) -> np.ndarray | None:
        """Hectares per value (0..255), or None where areas are unknown."""
        if self.areas is None:
            return None
        if self.areas.pixel_area_m2 is not None:
            return self.pixels * self.areas.pixel_area_m2 / SQUARE_METRES_PER_HECTARE
        return self.area_m2 / SQUARE_METRES_PER_HECTARE
