"""Area on the ground of a raster's pixels and of polygons drawn on it, from its CRS and transform.

Areas are areas on the CRS's ellipsoid, whatever the projection:

- Geographic CRS (degrees): a pixel's area depends on its latitude, so it is computed row by row,
  exactly: a cell between latitudes p1 and p2, dl radians of longitude wide, has area
  a^2 * dl * |q(p1) - q(p2)| / 2, q being the authalic-latitude function (Snyder, "Map Projections:
  A Working Manual", 1987, eq. 3-12). Only north-up grids: a rotated geographic grid gets no areas,
  and the report says why.
- Projected CRS: a map's square metre is not one on the ground. The projection's areal scale
  changes across the map (Web Mercator: a pixel at 60 N covers a quarter of its map area; UTM:
  -0.08% on the central meridian to +0.2% at a zone's edge), so pixel areas are measured on the
  ground, block by block (`projected_pixel_areas`): within 0.01% for every pixel, closer still for
  a scene's total.
- No CRS: `--pixel-size` metres gives each pixel pixel_size^2 m^2; without it there are no areas.

A polygon's area is the sum of its pixels' areas: its edges run along pixel boundaries, as GDAL
traces them, and it is measured on the same pixel areas as the area report, so a class's polygons
add up to the report's hectares.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points

SQUARE_METRES_PER_HECTARE = 10_000.0
# What every area report says its hectares are: the map's pixels summed, which a map's errors bias
MAP_AREAS = (
    "map areas: each class's mapped pixels summed, biased by the map's errors and without uncertainty; "
    "landcover-sample --map <this map> --output sample/, then landcover-assess, turn them into error-adjusted "
    "areas with 95% intervals (docs/areas.md)"
)
# Semi-major axis (m) and inverse flattening, from WKT1 SPHEROID[...] or WKT2 ELLIPSOID[...]
_ELLIPSOID = re.compile(r'(?:SPHEROID|ELLIPSOID)\["[^"]*",\s*([-+0-9.eE]+),\s*([-+0-9.eE]+)')

# A projected grid's pixel areas are measured at the corners of blocks of pixels (Ground.pixel_m2),
# and every pixel of a block gets the mean of its block's four corners. Blocks start about
# BLOCK_METRES on a side and are split until neighbouring corners differ by at most BLOCK_STEP of the
# pixel area, down and across. Why that is exact enough: the areal scale is smooth, nearly linear
# across a block, so a pixel's area lies between its block's corners' and differs from their mean by
# at most 2 x BLOCK_STEP = 0.01%; what the scale does beyond linearly is of order (block side / Earth
# radius)^2, under 1e-5 for 10 km blocks, and that is all a block's total can be off by. Why it is
# cheap: PROJ transforms 4 points per block corner, not per pixel: a north-up UTM scene of 20,000 x
# 20,000 10 m pixels has 21 x 21 corners (10 ms); a Web Mercator one rotated 20 degrees at 60 N, whose
# scale changes faster across a row, blocks of 19 x 53 pixels (400,000 corners, under 2 s).
BLOCK_METRES = 10_000.0
BLOCK_STEP = 5e-5
# Pixel corners found by inverting the transform lie this close to whole numbers
GRID_TOLERANCE = 1e-6

Ring = Sequence[Sequence[float]]  # [(x, y), ...], closed or not


def shoelace(ring: Ring | np.ndarray) -> float:
    """The signed area enclosed by a ring of (x, y) points."""
    points = np.asarray(ring, dtype=np.float64)
    # relative to the first point: products of large map coordinates would cancel away the digits
    x, y = points[:, 0] - points[0, 0], points[:, 1] - points[0, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_area(rings: Sequence[Ring]) -> float:
    """Map area of a polygon given as its exterior ring and its holes."""
    total = 0.0
    for index, ring in enumerate(rings):
        area = abs(shoelace(ring))
        total += area if index == 0 else -area
    return total


class PixelAreas:
    """How big a raster's pixels are on the ground."""

    method: str  # said in the area report: how the areas were found
    pixel_area_m2: float | None  # every pixel's area where it is the same for all, else None

    def strip_m2(self, top: int, bottom: int) -> np.ndarray:
        """float64 m^2 of each pixel of rows top..bottom-1, (rows, width): where pixel_area_m2 is None."""
        raise NotImplementedError

    def polygon_m2(self, rings: Sequence[Ring]) -> float:
        """m^2 of a polygon in the raster's coordinates (exterior ring first, then holes)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantPixelArea(PixelAreas):
    """Every pixel the same size: --pixel-size for an image without a CRS."""

    pixel_area_m2: float
    transform: Affine  # of the coordinates polygons come in
    method: str

    def polygon_m2(self, rings: Sequence[Ring]) -> float:
        # Affine maps keep ratios of areas: the polygon covers (its area / one pixel's area) pixels.
        return polygon_area(rings) / abs(self.transform.determinant) * self.pixel_area_m2


def block_edges(size: int, block: int) -> np.ndarray:
    """0, block, 2 block, ... and size: where blocks of `block` pixels start, and the end."""
    return np.append(np.arange(0, size, block), size)


@dataclass(frozen=True, eq=False)
class BlockPixelAreas(PixelAreas):
    """Pixel areas that are the same within blocks of the grid: block (i, j) holds rows
    row_edges[i]..row_edges[i+1]-1 and columns column_edges[j]..column_edges[j+1]-1."""

    transform: Affine  # of the coordinates polygons come in
    row_edges: np.ndarray
    column_edges: np.ndarray
    block_m2: np.ndarray  # (row blocks, column blocks): m^2 of one pixel of each block
    method: str
    pixel_area_m2: None = None

    @cached_property
    def _column_blocks(self) -> np.ndarray:
        """The block of each column."""
        return np.searchsorted(self.column_edges, np.arange(self.column_edges[-1]), side="right") - 1

    def strip_m2(self, top: int, bottom: int) -> np.ndarray:
        row_blocks = np.searchsorted(self.row_edges, np.arange(top, bottom), side="right") - 1
        blocks, rows = np.unique(row_blocks, return_counts=True)
        # each row block's pixel areas along a row, repeated for its rows in the strip
        return np.repeat(self.block_m2[blocks][:, self._column_blocks], rows, axis=0)

    @cached_property
    def _summed_m2(self) -> np.ndarray:
        """m^2 of the pixels above and left of each block corner (row_edges[i], column_edges[j])."""
        heights, widths = np.diff(self.row_edges), np.diff(self.column_edges)
        summed = np.zeros((len(heights) + 1, len(widths) + 1))
        summed[1:, 1:] = (self.block_m2 * heights[:, None] * widths).cumsum(axis=0).cumsum(axis=1)
        return summed

    def above_left_m2(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """m^2 of the pixels above each pixel corner (row, column) and left of it.

        Within a block it is bilinear in the row and column, as pixel areas are the same there, so
        interpolating between the block's corners is exact."""
        i = np.clip(np.searchsorted(self.row_edges, rows, side="right") - 1, 0, len(self.row_edges) - 2)
        j = np.clip(np.searchsorted(self.column_edges, columns, side="right") - 1, 0, len(self.column_edges) - 2)
        down = (rows - self.row_edges[i]) / (self.row_edges[i + 1] - self.row_edges[i])
        across = (columns - self.column_edges[j]) / (self.column_edges[j + 1] - self.column_edges[j])
        summed = self._summed_m2
        top = (1 - across) * summed[i, j] + across * summed[i, j + 1]
        bottom = (1 - across) * summed[i + 1, j] + across * summed[i + 1, j + 1]
        return (1 - down) * top + down * bottom

    def pixel_corners(self, ring: Ring) -> tuple[np.ndarray, np.ndarray]:
        """A ring's points as (rows, columns) of pixel corners, closed; ValueError unless it runs along pixel edges."""
        points = np.asarray(ring, dtype=np.float64)
        if not np.array_equal(points[0], points[-1]):
            points = np.vstack([points, points[:1]])
        inverse = ~self.transform
        x, y = points[:, 0], points[:, 1]
        columns = inverse.a * x + inverse.b * y + inverse.c
        rows = inverse.d * x + inverse.e * y + inverse.f
        rows_whole, columns_whole = np.rint(rows), np.rint(columns)
        off_grid = max(np.abs(rows - rows_whole).max(), np.abs(columns - columns_whole).max())
        straight = (np.diff(rows_whole) == 0) | (np.diff(columns_whole) == 0)
        if off_grid > GRID_TOLERANCE or not straight.all():
            raise ValueError("the polygon does not run along pixel edges")
        return rows_whole, columns_whole

    def polygon_m2(self, rings: Sequence[Ring]) -> float:
        total = 0.0
        for index, ring in enumerate(rings):
            rows, columns = self.pixel_corners(ring)
            # Green's theorem on the grid: an edge down column c from row r1 to r2 adds the pixels left
            # of c in rows r1..r2-1 (up: takes them away); edges along a row add nothing.
            left = self.above_left_m2(rows[1:], columns[:-1]) - self.above_left_m2(rows[:-1], columns[:-1])
            area = abs(float(left.sum()))
            total += area if index == 0 else -area
        return total


def authalic_q(latitude: np.ndarray, eccentricity: float) -> np.ndarray:
    """Snyder's q(latitude in radians) for an ellipsoid of this eccentricity (2 sin(lat) on a sphere)."""
    sine = np.sin(latitude)
    if eccentricity == 0:
        return 2 * sine
    e = eccentricity
    return (1 - e * e) * (sine / (1 - (e * sine) ** 2) - np.log((1 - e * sine) / (1 + e * sine)) / (2 * e))


def geographic_pixel_areas(
    transform: Affine, width: int, height: int, radians_per_unit: float, semi_major: float, eccentricity: float
) -> BlockPixelAreas:
    """A north-up grid in longitude/latitude: pixels the same within a row, smaller toward the poles."""
    edges = np.arange(height + 1, dtype=np.float64) * transform.e + transform.f
    q = authalic_q(edges * radians_per_unit, eccentricity)
    row_m2 = semi_major**2 * abs(transform.a) * radians_per_unit * np.abs(np.diff(q)) / 2
    method = "geographic CRS: row by row on the ellipsoid"
    return BlockPixelAreas(transform, np.arange(height + 1), np.array([0, width]), row_m2[:, None], method)


def ellipsoid_of(crs) -> tuple[float, float]:
    """(semi-major axis in metres, eccentricity) of a rasterio CRS's ellipsoid, read from its WKT."""
    match = _ELLIPSOID.search(crs.to_wkt())
    if not match:
        raise ValueError("no ellipsoid in the CRS's definition")
    semi_major, inverse_flattening = float(match.group(1)), float(match.group(2))
    flattening = 0.0 if inverse_flattening == 0 else 1 / inverse_flattening
    return semi_major, math.sqrt(flattening * (2 - flattening))


@dataclass(frozen=True)
class Ground:
    """Where a projected raster's pixel grid lies on its CRS's ellipsoid."""

    crs: CRS
    transform: Affine
    semi_major: float
    eccentricity: float

    def geocentric(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Grid points (row, column: pixel coordinates, any shape) as geocentric x, y, z in metres (shape + (3,))."""
        t = self.transform
        x, y = t.a * columns + t.b * rows + t.c, t.d * columns + t.e * rows + t.f
        # longitude and latitude on the CRS's own ellipsoid: no datum shift
        lonlat = CRS.from_proj4(f"+proj=longlat +a={self.semi_major!r} +es={self.eccentricity**2!r} +no_defs")
        try:
            lon, lat = transform_points(self.crs, lonlat, x.ravel(), y.ravel())
        except Exception as error:  # rasterio raises CPLE_AppDefinedError for points outside the projection
            raise ValueError(f"PROJ cannot place its pixels on the ellipsoid: {error}") from None
        lon, lat = np.radians(np.reshape(lon, x.shape)), np.radians(np.reshape(lat, x.shape))
        e2 = self.eccentricity**2
        normal = self.semi_major / np.sqrt(1 - e2 * np.sin(lat) ** 2)  # prime vertical radius of curvature
        return np.stack(
            [normal * np.cos(lat) * np.cos(lon), normal * np.cos(lat) * np.sin(lon), normal * (1 - e2) * np.sin(lat)],
            axis=-1,
        )

    def pixel_quads(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Corners of a pixel-sized quad centred on each grid point of rows x columns, geocentric:
        (rows, columns, 4, 3), the corners in order around (up-left, up-right, down-right, down-left)."""
        row_offsets, column_offsets = np.array([-0.5, -0.5, 0.5, 0.5]), np.array([-0.5, 0.5, 0.5, -0.5])
        corner_rows = rows[:, None, None] + row_offsets
        corner_columns = columns[None, :, None] + column_offsets
        return self.geocentric(*np.broadcast_arrays(corner_rows, corner_columns))

    def pixel_m2(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Ground m^2 of a pixel-sized quad centred on each grid point of rows x columns: (rows, columns).

        The quad's area is half the cross product of its diagonals in geocentric space: the area of
        the flat quad through its corners, which differs from the curved ground's by a fraction of
        order (pixel side / Earth radius)^2 (2.5e-12 for 10 m pixels, 2.5e-6 for 10 km ones)."""
        quads = self.pixel_quads(rows, columns)
        cross = np.cross(quads[..., 2, :] - quads[..., 0, :], quads[..., 3, :] - quads[..., 1, :])
        m2 = 0.5 * np.linalg.norm(cross, axis=-1)
        if not np.all(m2 > 0):  # NaN included
            raise ValueError("some of its pixels have no area on the ellipsoid")
        return m2


def relative_step(corners: np.ndarray, axis: int) -> float:
    """The largest difference between neighbouring values along an axis, as a fraction of the smaller."""
    values = np.moveaxis(corners, axis, 0)
    step = np.abs(values[1:] - values[:-1]) / np.minimum(values[1:], values[:-1])
    return float(step.max(initial=0.0))


def projected_pixel_areas(crs, transform: Affine, width: int, height: int) -> BlockPixelAreas:
    """Ground areas of a projected grid's pixels, block by block (BLOCK_METRES, BLOCK_STEP: how exact).

    ValueError where PROJ cannot place the grid on the CRS's ellipsoid."""
    ground = Ground(crs, transform, *ellipsoid_of(crs))
    centre = ground.pixel_quads(np.array([height / 2]), np.array([width / 2]))[0, 0]
    side_down, side_across = np.linalg.norm(centre[3] - centre[0]), np.linalg.norm(centre[1] - centre[0])  # m
    if not (side_down > 0 and side_across > 0):
        raise ValueError("its pixels have no size on the ellipsoid")
    rows, columns = max(1, int(BLOCK_METRES / side_down)), max(1, int(BLOCK_METRES / side_across))
    while True:
        row_edges, column_edges = block_edges(height, rows), block_edges(width, columns)
        corners = ground.pixel_m2(row_edges.astype(np.float64), column_edges.astype(np.float64))
        down, across = relative_step(corners, 0), relative_step(corners, 1)
        # a block whose corners differ too much is split in proportion (blocks of one pixel cannot be)
        finer_rows = rows if down <= BLOCK_STEP else max(1, int(rows * BLOCK_STEP / down))
        finer_columns = columns if across <= BLOCK_STEP else max(1, int(columns * BLOCK_STEP / across))
        if (finer_rows, finer_columns) == (rows, columns):
            break
        rows, columns = finer_rows, finer_columns
    block_m2 = (corners[:-1, :-1] + corners[:-1, 1:] + corners[1:, :-1] + corners[1:, 1:]) / 4
    largest = f"{np.diff(row_edges).max()} x {np.diff(column_edges).max()}"
    method = f"projected CRS: ground area on the ellipsoid, in blocks of up to {largest} pixels"
    return BlockPixelAreas(transform, row_edges, column_edges, block_m2, method)


def pixel_areas(
    crs, transform: Affine, width: int, height: int, pixel_size: float | None
) -> tuple[PixelAreas | None, str | None]:
    """How big the pixels of a raster with this CRS (rasterio CRS or None), transform and size are.

    Returns (areas, None), or (None, why there are none): no CRS and no pixel size, or a grid whose
    areas this module cannot compute correctly (a rotated geographic grid, latitudes beyond the poles,
    pixels outside the projection's domain).
    """
    if crs is None:
        if pixel_size is None:
            return None, "it has no CRS (give --pixel-size METRES for areas)"
        return ConstantPixelArea(pixel_size**2, transform, f"--pixel-size {pixel_size:g} m"), None
    if crs.is_projected:
        try:
            return projected_pixel_areas(crs, transform, width, height), None
        except ValueError as error:
            return None, f"its projected CRS gives no areas on the ground ({error})"
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
        return geographic_pixel_areas(transform, width, height, radians, semi_major, eccentricity), None
    return None, "its CRS is neither projected nor geographic"


class AreaCounter:
    """Pixels and area per class, added a strip of rows at a time."""

    def __init__(self, num_classes: int, areas: PixelAreas | None) -> None:
        self.num_classes = num_classes
        self.areas = areas
        self.pixels = np.zeros(256, dtype=np.int64)  # by value: classes, and 255 for no prediction
        self.area_m2 = np.zeros(256, dtype=np.float64)  # used where pixel areas vary

    def add(self, top: int, classes: np.ndarray) -> None:
        self.pixels += np.bincount(classes.ravel(), minlength=256)
        if self.areas is not None and self.areas.pixel_area_m2 is None:
            pixel_m2 = self.areas.strip_m2(top, top + classes.shape[0])
            self.area_m2 += np.bincount(classes.ravel(), weights=pixel_m2.ravel(), minlength=256)

    def hectares(self) -> np.ndarray | None:
        """Hectares per value (0..255), or None where areas are unknown."""
        if self.areas is None:
            return None
        if self.areas.pixel_area_m2 is not None:
            return self.pixels * self.areas.pixel_area_m2 / SQUARE_METRES_PER_HECTARE
        return self.area_m2 / SQUARE_METRES_PER_HECTARE
