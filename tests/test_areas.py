"""Areas on the ground (landcover/geo/areas.py) against references written out here, independent of it.

- Web Mercator (EPSG:3857) is spherical Mercator formulas applied to WGS84 longitude and latitude: a
  north-up row of pixels is a longitude/latitude rectangle on the WGS84 ellipsoid, whose area has a
  closed form (the authalic q-function, Snyder 1987 eq. 3-12); a rotated grid's pixel has the area
  element M N cos(lat)^2 / a^2 of its map area (M, N: the radii of curvature).
- UTM is conformal: a pixel's ground area is its map area / k^2, k by Snyder's series (eq. 8-11).
- A geographic grid's small cell has area M N cos(lat) dlat dlon.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points

from landcover.geo.areas import (
    AreaCounter,
    BlockPixelAreas,
    ConstantPixelArea,
    authalic_q,
    block_edges,
    ellipsoid_of,
    pixel_areas,
)

A = 6_378_137.0  # WGS84 semi-major axis, also Web Mercator's sphere radius
E2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)  # WGS84 eccentricity squared
WEB_MERCATOR, UTM33, WGS84 = CRS.from_epsg(3857), CRS.from_epsg(32633), CRS.from_epsg(4326)
CLASSES = 7


# --- references ------------------------------------------------------------------------------------------


def q_function(latitude: np.ndarray) -> np.ndarray:
    """Snyder eq. 3-12 on WGS84, latitude in radians."""
    e = math.sqrt(E2)
    s = np.sin(latitude)
    return (1 - E2) * (s / (1 - E2 * s**2) - np.log((1 - e * s) / (1 + e * s)) / (2 * e))


def lonlat_rectangle_m2(longitude_width: float, latitude_1: np.ndarray, latitude_2: np.ndarray) -> np.ndarray:
    """Area on WGS84 between two parallels, longitude_width radians wide."""
    return A**2 * longitude_width * np.abs(q_function(latitude_1) - q_function(latitude_2)) / 2


def curvature_radii(latitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(meridian M, prime vertical N) radii of curvature on WGS84, latitude in radians."""
    w = np.sqrt(1 - E2 * np.sin(latitude) ** 2)
    return A * (1 - E2) / w**3, A / w


def cell_area_reference(latitude: float, height_degrees: float, width_degrees: float) -> float:
    """A small geographic cell's area on WGS84: M N cos(lat) dlat dlon at its middle latitude."""
    phi = math.radians(latitude)
    meridian, normal = curvature_radii(np.array(phi))
    return float(meridian * normal) * math.cos(phi) * math.radians(height_degrees) * math.radians(width_degrees)


def mercator_y(latitude_degrees: float) -> float:
    return A * math.log(math.tan(math.pi / 4 + math.radians(latitude_degrees) / 2))


def mercator_latitude(y: np.ndarray) -> np.ndarray:
    """Latitude (radians) of Web Mercator northings: the inverse Gudermannian on the sphere of radius a."""
    return 2 * np.arctan(np.exp(np.asarray(y) / A)) - np.pi / 2


def pixel_centres(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Map x, y of every pixel's centre, (height, width) each."""
    rows, columns = np.mgrid[0:height, 0:width] + 0.5
    return (
        transform.a * columns + transform.b * rows + transform.c,
        transform.d * columns + transform.e * rows + transform.f,
    )


def utm_ground_m2(transform: Affine, height: int, width: int, central_meridian: float) -> np.ndarray:
    """Each pixel's ground area in UTM: map area / k^2 at its centre, k by Snyder's eq. 8-11."""
    x, y = pixel_centres(transform, height, width)
    lon, lat = (np.radians(np.reshape(v, x.shape)) for v in transform_points(UTM33, WGS84, x.ravel(), y.ravel()))
    second = E2 / (1 - E2)
    a_, t, c = (lon - math.radians(central_meridian)) * np.cos(lat), np.tan(lat) ** 2, second * np.cos(lat) ** 2
    k = 0.9996 * (
        1
        + (1 + c) * a_**2 / 2
        + (5 - 4 * t + 42 * c + 13 * c**2 - 28 * second) * a_**4 / 24
        + (61 - 148 * t + 16 * t**2) * a_**6 / 720
    )
    return abs(transform.determinant) / k**2


def class_m2(classes: np.ndarray, pixel_m2: np.ndarray) -> np.ndarray:
    """m^2 of each class value 0..CLASSES-1, summing given per-pixel areas."""
    return np.bincount(classes.ravel(), weights=pixel_m2.ravel(), minlength=CLASSES)[:CLASSES]


def counted_m2(areas, classes: np.ndarray, split: int) -> np.ndarray:
    """m^2 per class from AreaCounter, fed in two strips split at row `split`."""
    counter = AreaCounter(CLASSES, areas)
    counter.add(0, classes[:split])
    counter.add(split, classes[split:])
    return counter.hectares()[:CLASSES] * 10_000


def random_classes(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, CLASSES, (height, width)).astype(np.uint8)


def polygons_m2(areas, classes: np.ndarray, transform: Affine) -> np.ndarray:
    """m^2 per class from polygon_m2 of the class map's polygons, as GDAL traces them."""
    total = np.zeros(CLASSES)
    for shape, value in features.shapes(classes, transform=transform):
        total[int(value)] += areas.polygon_m2(shape["coordinates"])
    return total


# --- Web Mercator ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("latitude", [0, 45, 60])
def test_web_mercator_pixels_have_their_ground_area(latitude):
    # 300 x 300 pixels of 10 m centred at the latitude: rows are longitude/latitude rectangles
    top = mercator_y(latitude) + 1500
    transform = Affine(10, 0, 1_000_000, 0, -10, top)
    areas, reason = pixel_areas(WEB_MERCATOR, transform, 300, 300, pixel_size=None)
    assert reason is None and areas.pixel_area_m2 is None and areas.method.startswith("projected CRS: ground area")
    edges = mercator_latitude(top - 10 * np.arange(301))
    row_m2 = lonlat_rectangle_m2(10 / A, edges[:-1], edges[1:])  # one pixel of each row
    pixel_m2 = areas.strip_m2(0, 300)
    assert pixel_m2.shape == (300, 300)
    np.testing.assert_allclose(pixel_m2, np.repeat(row_m2[:, None], 300, axis=1), rtol=1e-4)
    assert pixel_m2.sum() == pytest.approx(row_m2.sum() * 300, rel=1e-6)
    if latitude == 60:  # the map says 900 ha
        assert pixel_m2.sum() / 10_000 == pytest.approx(225.76, rel=1e-4)
    classes = random_classes(300, 300)
    expected = class_m2(classes, np.repeat(row_m2[:, None], 300, axis=1))
    np.testing.assert_allclose(counted_m2(areas, classes, 128), expected, rtol=1e-4)
    # north-up Mercator: areas change only down the grid, so a block spans every column, and many rows
    np.testing.assert_array_equal(areas.column_edges, [0, 300])
    block_rows = np.diff(areas.row_edges).max()
    assert block_rows >= 10
    assert areas.method == f"projected CRS: ground area on the ellipsoid, in blocks of up to {block_rows} x 300 pixels"


def test_a_rotated_web_mercator_grid_is_measured_pixel_by_pixel_where_it_must():
    rotated = Affine.translation(2_000_000, mercator_y(60)) @ Affine.rotation(30) @ Affine.scale(10, -10)
    areas, _ = pixel_areas(WEB_MERCATOR, rotated, 240, 250, pixel_size=None)
    _, y = pixel_centres(rotated, 250, 240)
    latitude = mercator_latitude(y)
    meridian, normal = curvature_radii(latitude)
    expected = 100 * meridian * normal * np.cos(latitude) ** 2 / A**2  # area element at each pixel's centre
    np.testing.assert_allclose(areas.strip_m2(0, 250), expected, rtol=1e-4)
    np.testing.assert_allclose(areas.strip_m2(100, 117), expected[100:117], rtol=1e-4)
    # blocks smaller than the grid both ways, but not single pixels
    assert len(areas.row_edges) > 2 and len(areas.column_edges) > 2
    assert np.diff(areas.row_edges).max() > 1 and np.diff(areas.column_edges).max() > 1
    classes = random_classes(250, 240, seed=1)
    np.testing.assert_allclose(counted_m2(areas, classes, 77), class_m2(classes, expected), rtol=1e-4)


# --- UTM and equal-area -----------------------------------------------------------------------------------


def test_utm_at_a_zone_edge_loses_its_scale_error():
    # EPSG:32633 (central meridian 15 E) at the equator, 330 km east: 17.97 E, by the zone's edge,
    # where the map's areas are 0.19% too large
    transform = Affine(10, 0, 830_000, 0, -10, 3_000)
    areas, _ = pixel_areas(UTM33, transform, 300, 300, pixel_size=None)
    expected = utm_ground_m2(transform, 300, 300, central_meridian=15)
    assert expected.mean() == pytest.approx(100 / 1.0019, rel=2e-4)
    np.testing.assert_allclose(areas.strip_m2(0, 300), expected, rtol=1e-4)
    classes = random_classes(300, 300, seed=2)
    np.testing.assert_allclose(counted_m2(areas, classes, 200), class_m2(classes, expected), rtol=1e-5)


def test_a_wide_utm_grid_varies_across_its_columns():
    # 400 km from the central meridian eastward at 45 N, 200 m pixels: the east is ~0.2% smaller on the
    # ground than the west; each half of the map gets its own area
    transform = Affine(200, 0, 500_000, 0, -200, 5_000_000)
    areas, _ = pixel_areas(UTM33, transform, 2000, 30, pixel_size=None)
    expected = utm_ground_m2(transform, 30, 2000, central_meridian=15)
    np.testing.assert_allclose(areas.strip_m2(0, 30), expected, rtol=1e-4)
    halves = np.repeat((np.arange(2000) >= 1000)[None, :], 30, axis=0).astype(np.uint8)
    west, east = counted_m2(areas, halves, 10)[:2]
    assert west == pytest.approx(expected[:, :1000].sum(), rel=1e-5)
    assert east == pytest.approx(expected[:, 1000:].sum(), rel=1e-5)
    assert east / west < 0.999  # the halves differ by 0.2%: twenty times the tolerance


def test_an_equal_area_projection_keeps_map_areas():
    # ETRS89-extended / LAEA Europe, far from its centre (52 N, 10 E) and rotated, and 0.5 m pixels:
    # factor 1 everywhere
    laea = CRS.from_epsg(3035)
    for transform in (
        Affine(20, 0, 6_000_000, 0, -20, 1_600_000),
        Affine(20, 3, 2_000_000, 4, -20, 5_000_000),
        Affine(0.5, 0, 4_321_000, 0, -0.5, 3_210_000),
    ):
        areas, _ = pixel_areas(laea, transform, 200, 150, pixel_size=None)
        np.testing.assert_allclose(areas.strip_m2(0, 150), abs(transform.determinant), rtol=1e-7)


def test_blocks_start_10_km_wide_and_pixels_larger_are_blocks_of_their_own():
    # LAEA near its centre: the scale is 1 everywhere, so the first blocks stay, 10 km of 20 m pixels
    areas, _ = pixel_areas(CRS.from_epsg(3035), Affine(20, 0, 4_300_000, 0, -20, 3_200_000), 2000, 1200, None)
    assert {np.diff(areas.column_edges)[0] * 20, np.diff(areas.row_edges)[0] * 20} <= {9980, 10_000}
    # 15 km UTM pixels, and 5 km Web Mercator ones rotated at 60 N, whose scale changes too fast across one
    for crs, transform in (
        (UTM33, Affine(15_000, 0, 500_000, 0, -15_000, 5_000_000)),
        (WEB_MERCATOR, Affine.translation(0, mercator_y(60)) @ Affine.rotation(30) @ Affine.scale(5000, -5000)),
    ):
        areas, _ = pixel_areas(crs, transform, 4, 3, pixel_size=None)
        np.testing.assert_array_equal(areas.row_edges, [0, 1, 2, 3])
        np.testing.assert_array_equal(areas.column_edges, [0, 1, 2, 3, 4])


def test_feet_need_no_unit_of_their_own():
    # NY Long Island (EPSG:2263, US survey feet), between its standard parallels: scale within 1e-4 of 1
    transform = Affine(10, 0, 1_000_000, 0, -10, 200_000)
    areas, _ = pixel_areas(CRS.from_epsg(2263), transform, 40, 40, pixel_size=None)
    np.testing.assert_allclose(areas.strip_m2(0, 40), (10 * 1200 / 3937) ** 2, rtol=1e-4)


def test_a_sphere_has_no_flattening():
    # LAEA on the authalic sphere (no EPSG code: a PROJ string): equal-area, so the map's areas come back
    sphere = CRS.from_proj4("+proj=laea +lat_0=45 +lon_0=0 +R=6371007.181 +units=m +no_defs")
    transform = Affine(30, 0, 1_500_000, 0, -30, 2_000_000)
    areas, _ = pixel_areas(sphere, transform, 50, 40, pixel_size=None)
    np.testing.assert_allclose(areas.strip_m2(0, 40), 900, rtol=1e-7)


def test_grids_that_do_not_lie_on_the_ellipsoid_have_no_areas_and_say_why():
    cases = [
        (UTM33, Affine(10, 0, 1e8, 0, -10, 0), "PROJ cannot place its pixels on the ellipsoid: "),
        (UTM33, Affine(10, 0, 500_000, 0, 0, 5e6), "its pixels have no size on the ellipsoid)"),
        (UTM33, Affine(0, 0, 500_000, 0, -10, 5e6), "its pixels have no size on the ellipsoid)"),
        # Web Mercator rows far past 85 N: the top ones fall on the pole itself
        (WEB_MERCATOR, Affine(1e6, 0, 0, 0, -1e8, 3e8), "some of its pixels have no area on the ellipsoid)"),
    ]
    for crs, transform, why in cases:
        areas, reason = pixel_areas(crs, transform, 2, 4, pixel_size=None)
        assert areas is None and reason.startswith("its projected CRS gives no areas on the ground (")
        assert why in reason
    areas, reason = pixel_areas(CRS.from_epsg(4978), Affine.identity(), 2, 2, pixel_size=None)  # geocentric
    assert areas is None and reason == "its CRS is neither projected nor geographic"


# --- geographic -----------------------------------------------------------------------------------------------


def test_geographic_pixel_areas_are_exact_row_by_row():
    # A whole-Earth 1-degree grid adds up to the WGS84 ellipsoid's area, 510,065,621.7 km^2
    areas, _ = pixel_areas(WGS84, Affine(1, 0, -180, 0, -1, 90), 360, 180, pixel_size=None)
    assert areas.pixel_area_m2 is None and areas.method == "geographic CRS: row by row on the ellipsoid"
    assert areas.strip_m2(0, 180).sum() / 1e6 == pytest.approx(510_065_621.7, rel=1e-9)
    # Small cells agree with the curvature radii at their middle latitude
    areas, _ = pixel_areas(WGS84, Affine(0.001, 0, 10, 0, -0.001, 60), 3, 1000, pixel_size=None)
    rows = areas.strip_m2(0, 1000)
    for row in (0, 499, 999):
        expected = cell_area_reference(60 - 0.001 * (row + 0.5), 0.001, 0.001)
        np.testing.assert_allclose(rows[row], expected, rtol=1e-7)
    assert rows[0, 0] < rows[999, 0]  # smaller toward the pole
    # a sphere's q is 2 sin(lat)
    np.testing.assert_allclose(authalic_q(np.array([0.3, -1.0]), 0.0), 2 * np.sin([0.3, -1.0]))


def test_geographic_grids_beyond_the_poles_or_rotated_have_no_areas():
    areas, reason = pixel_areas(WGS84, Affine(1, 0, 0, 0, -1, 95), 10, 10, pixel_size=None)
    assert areas is None and reason == "its geographic grid reaches beyond the poles (latitudes [95.0, 85.0] degrees)"
    areas, reason = pixel_areas(WGS84, Affine(1, 0, 0, 0, -1.5, -80.123456789), 10, 10, pixel_size=None)
    assert reason == "its geographic grid reaches beyond the poles (latitudes [-80.123457, -95.123457] degrees)"
    areas, reason = pixel_areas(WGS84, Affine(1, 0.1, 0, 0, -1, 50), 10, 10, pixel_size=None)
    assert areas is None and reason == (
        "its geographic grid is rotated or sheared, so pixel areas cannot be computed row by row "
        "(reproject it to a projected CRS, e.g. gdalwarp -t_srs EPSG:<its UTM zone>)"
    )


def test_a_crs_without_an_ellipsoid_is_refused():
    with pytest.raises(ValueError, match="^no ellipsoid in the CRS's definition$"):
        ellipsoid_of(SimpleNamespace(to_wkt=lambda: 'LOCAL_CS["somewhere",UNIT["metre",1]]'))


def test_without_a_crs_a_pixel_size_gives_constant_areas():
    areas, reason = pixel_areas(None, Affine.identity(), 10, 10, pixel_size=None)
    assert areas is None and reason == "it has no CRS (give --pixel-size METRES for areas)"
    counter = AreaCounter(CLASSES, None)
    counter.add(0, np.array([[1, 1, 255]], dtype=np.uint8))
    assert counter.hectares() is None and (counter.pixels[1], counter.pixels[255]) == (2, 1)
    areas, _ = pixel_areas(None, Affine.scale(2, -2), 10, 10, pixel_size=0.5)
    assert isinstance(areas, ConstantPixelArea) and areas.pixel_area_m2 == 0.25
    assert areas.method == "--pixel-size 0.5 m"
    classes = random_classes(20, 10)
    np.testing.assert_allclose(counted_m2(areas, classes, 5), np.bincount(classes.ravel())[:CLASSES] * 0.25)
    # an L of 14 pixels with a 1-pixel hole, in coordinates 2 units to a pixel side
    ell, hole = [(0, 0), (8, 0), (8, -4), (4, -4), (4, -10), (0, -10)], [(0, 0), (2, 0), (2, -2), (0, -2)]
    assert areas.polygon_m2([ell]) == 14 * 0.25 and areas.polygon_m2([ell, hole]) == 13 * 0.25


# --- polygons -----------------------------------------------------------------------------------------------


def blocky_classes(height: int, width: int, seed: int = 3) -> np.ndarray:
    """Classes in 10 px squares with single pixels scattered in them: polygons with holes, of many sizes."""
    rng = np.random.default_rng(seed)
    classes = np.kron(rng.integers(0, CLASSES, (height // 10 + 1, width // 10 + 1)), np.ones((10, 10), int))
    classes = classes[:height, :width]
    classes[rng.integers(0, height, 40), rng.integers(0, width, 40)] = 3
    return classes.astype(np.uint8)


@pytest.mark.parametrize(
    "crs, transform",
    [
        (WEB_MERCATOR, Affine.translation(2_000_000, mercator_y(60)) @ Affine.rotation(30) @ Affine.scale(10, -10)),
        (UTM33, Affine(200, 0, 500_000, 0, -200, 5_000_000)),
        (WGS84, Affine(0.001, 0, 15, 0, -0.001, 46)),
    ],
)
def test_polygons_add_up_to_the_pixels_they_cover(crs, transform):
    classes = blocky_classes(60, 1500 if crs == UTM33 else 90)
    height, width = classes.shape
    areas, _ = pixel_areas(crs, transform, width, height, pixel_size=None)
    assert isinstance(areas, BlockPixelAreas)
    np.testing.assert_allclose(polygons_m2(areas, classes, transform), counted_m2(areas, classes, 20), rtol=1e-9)


def test_polygon_areas_are_ground_areas_in_web_mercator():
    transform = Affine(10, 0, 1_000_000, 0, -10, mercator_y(60) + 300)
    areas, _ = pixel_areas(WEB_MERCATOR, transform, 90, 60, pixel_size=None)
    edges = mercator_latitude(transform.f - 10 * np.arange(61))
    row_m2 = lonlat_rectangle_m2(10 / A, edges[:-1], edges[1:])
    classes = blocky_classes(60, 90)
    expected = class_m2(classes, np.repeat(row_m2[:, None], 90, axis=1))
    np.testing.assert_allclose(polygons_m2(areas, classes, transform), expected, rtol=1e-4)
    # a hole is taken away; a ring need not be closed (column, row corners, the last edge left out)
    square, hole = [(30, 20), (0, 20), (0, 0), (30, 0)], [(10, 5), (20, 5), (20, 15), (10, 15), (10, 5)]
    rings = [[transform @ point for point in ring] for ring in (square, hole)]
    assert areas.polygon_m2(rings) == pytest.approx((row_m2[:20].sum() * 30 - row_m2[5:15].sum() * 10), rel=1e-4)
    square = [(30, 0), (30, 20), (0, 20), (0, 0)]
    assert areas.polygon_m2([[transform @ point for point in square]]) == pytest.approx(
        row_m2[:20].sum() * 30, rel=1e-4
    )


def test_polygons_off_the_pixel_grid_are_refused():
    transform = Affine(10, 0, 1_000_000, 0, -10, mercator_y(60))
    areas, _ = pixel_areas(WEB_MERCATOR, transform, 50, 50, pixel_size=None)
    for ring in ([(0, 0), (4, 0), (4, 3.5), (0, 3.5)], [(0, 0), (4, 0), (4, 3), (1, 4)]):
        with pytest.raises(ValueError, match="^the polygon does not run along pixel edges$"):
            areas.polygon_m2([[transform @ point for point in ring]])


def test_block_edges_end_at_the_size():
    np.testing.assert_array_equal(block_edges(10, 4), [0, 4, 8, 10])
    np.testing.assert_array_equal(block_edges(8, 4), [0, 4, 8])
    np.testing.assert_array_equal(block_edges(3, 10), [0, 3])
