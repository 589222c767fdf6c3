"""A region's mosaic: a GDAL VRT over the scenes' class maps, and the region's area table computed from it.

The region grid: the CRS of the first scene (or the one given), its pixel size (as warped into that CRS
where it is in another), its pixel grid's alignment, and the extent of all the scenes. A class map already on
that grid is a source as it is; any other (another CRS, pixel size or alignment) is first warped onto it
(nearest neighbour) as a warped VRT of its own in `warped/`, which the mosaic reads. Where scenes overlap,
the first one listed wins: the VRT paints its sources in order and the first scene is painted last; its
pixels without a prediction (255) let the scenes beneath show through. The area table streams the mosaic a
strip of rows at a time, so a pixel covered by several scenes counts once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
import rasterio.shutil
import rasterio.transform
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

from landcover.data.palette import ClassTable
from landcover.geo.areas import MAP_AREAS, AreaCounter, pixel_areas
from landcover.geo.georaster import NODATA_CLASS, class_colormap, gdal_env, qgis_style, write_cloud_optimized
from landcover.geo.mapping import write_area_files
from landcover.io.errors import PipelineError
from landcover.io.outputs import atomic_file

WARPED_FOLDER = "warped"
GRID_TOLERANCE = 1e-6  # of a pixel: offsets closer than this to whole pixels are whole
STRIP_PIXELS = 1 << 22  # pixels per strip of rows the area table reads at a time


@dataclass(frozen=True)
class ClassMap:
    """One scene's class map as the mosaic sees it."""

    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int


@dataclass(frozen=True)
class Grid:
    crs: CRS
    transform: Affine  # north-up
    width: int
    height: int


def read_class_map(path: Path) -> ClassMap:
    with rasterio.open(path) as dataset:
        if dataset.crs is None:
            raise PipelineError(f"{path}: class map has no CRS, so it has no place in a mosaic")
        return ClassMap(Path(path), dataset.crs, dataset.transform, dataset.width, dataset.height)


def north_up_in(crs: CRS, first: ClassMap) -> Affine:
    """The first map's pixel size and grid origin in `crs`: its own where it is north-up in it, else GDAL's
    default for warping it there."""
    t = first.transform
    if first.crs == crs and t.b == 0 and t.d == 0 and t.e < 0:
        return t
    left, bottom, right, top = rasterio.transform.array_bounds(first.height, first.width, t)
    transform, _, _ = calculate_default_transform(first.crs, crs, first.width, first.height, left, bottom, right, top)
    return transform


def map_bounds(class_map: ClassMap, crs: CRS) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a class map in `crs`."""
    left, bottom, right, top = rasterio.transform.array_bounds(class_map.height, class_map.width, class_map.transform)
    if class_map.crs == crs:
        return left, bottom, right, top
    return transform_bounds(class_map.crs, crs, left, bottom, right, top, densify_pts=21)


def snapped_window(bounds: tuple[float, float, float, float], origin: Affine) -> tuple[int, int, int, int]:
    """(column, row, width, height) on the grid of `origin` (pixel size and alignment) covering `bounds`."""
    left, bottom, right, top = bounds
    res_x, res_y = origin.a, -origin.e
    column = math.floor((left - origin.c) / res_x + GRID_TOLERANCE)
    row = math.floor((origin.f - top) / res_y + GRID_TOLERANCE)
    end_column = math.ceil((right - origin.c) / res_x - GRID_TOLERANCE)
    end_row = math.ceil((origin.f - bottom) / res_y - GRID_TOLERANCE)
    return column, row, max(1, end_column - column), max(1, end_row - row)


def region_grid(maps: Sequence[ClassMap], crs: CRS | None = None) -> Grid:
    """The grid the mosaic is on: CRS, pixel size and alignment of the first map, extent of them all."""
    crs = crs or maps[0].crs
    origin = north_up_in(crs, maps[0])
    windows = [snapped_window(map_bounds(class_map, crs), origin) for class_map in maps]
    left, top = min(w[0] for w in windows), min(w[1] for w in windows)
    right, bottom = max(w[0] + w[2] for w in windows), max(w[1] + w[3] for w in windows)
    transform = Affine(origin.a, 0, origin.c + left * origin.a, 0, origin.e, origin.f + top * origin.e)
    return Grid(crs, transform, right - left, bottom - top)


def offset_on(grid: Grid, class_map: ClassMap) -> tuple[int, int] | None:
    """(column, row) of the map's first pixel on the grid if the map is on it (same CRS, pixel size and
    alignment), else None."""
    t, g = class_map.transform, grid.transform
    if class_map.crs != grid.crs or (t.a, t.b, t.d, t.e) != (g.a, g.b, g.d, g.e):
        return None
    column, row = (t.c - g.c) / g.a, (t.f - g.f) / g.e
    if abs(column - round(column)) > GRID_TOLERANCE or abs(row - round(row)) > GRID_TOLERANCE:
        return None
    return round(column), round(row)


def write_warped(class_map: ClassMap, grid: Grid, destination: Path) -> tuple[int, int, int, int]:
    """The class map warped (nearest) onto the grid over its own extent, as a VRT; its window on the grid."""
    column, row, width, height = snapped_window(map_bounds(class_map, grid.crs), grid.transform)
    transform = grid.transform @ Affine.translation(column, row)
    with (
        gdal_env(),
        rasterio.open(class_map.path) as source,
        WarpedVRT(
            source,
            crs=grid.crs,
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling.nearest,
            nodata=NODATA_CLASS,
        ) as warped,
        atomic_file(destination) as staging,
    ):
        rasterio.shutil.copy(warped, staging, driver="VRT")
        # GDAL names the source relative to the staging file, which sits beside the final one
    return column, row, width, height


def colour_table_xml(table: ClassTable) -> str:
    colours = class_colormap(table)
    entries = (colours.get(value, (0, 0, 0, 0)) for value in range(256))
    return "\n".join(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>' for r, g, b, a in entries)


def source_xml(relative: str, width: int, height: int, column: int, row: int) -> str:
    return f"""    <ComplexSource>
      <SourceFilename relativeToVRT="1">{escape(relative)}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>
      <DstRect xOff="{column}" yOff="{row}" xSize="{width}" ySize="{height}"/>
      <NODATA>{NODATA_CLASS}</NODATA>
    </ComplexSource>"""


def mosaic_xml(grid: Grid, table: ClassTable, sources: Sequence[str]) -> str:
    """The VRT: the grid, the colour table, the class names, and the sources in painting order."""
    t = grid.transform
    names = ",".join(table.names)
    return f"""<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">
  <SRS>{escape(grid.crs.to_wkt())}</SRS>
  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>
  <Metadata>
    <MDI key="CLASS_NAMES">{escape(names)}</MDI>
    <MDI key="NODATA_MEANING">{NODATA_CLASS}: no prediction (no data, or no scene)</MDI>
  </Metadata>
  <VRTRasterBand dataType="Byte" band="1">
    <Description>{escape("land cover class")}</Description>
    <NoDataValue>{NODATA_CLASS}</NoDataValue>
    <ColorInterp>Palette</ColorInterp>
    <ColorTable>
{colour_table_xml(table)}
    </ColorTable>
{chr(10).join(sources)}
  </VRTRasterBand>
</VRTDataset>
"""


def build_mosaic(map_paths: Sequence[Path], out_dir: Path, table: ClassTable, crs: CRS | None = None) -> Path:
    """`out_dir`/region.vrt over the class maps (first listed wins), with region.qml; returns the VRT's path."""
    out_dir = Path(out_dir)
    maps = [read_class_map(path) for path in map_paths]
    if not maps:
        raise PipelineError(f"{out_dir}: no scene was mapped, so there is no mosaic")
    grid = region_grid(maps, crs)
    placed = []
    for class_map in maps:
        offset = offset_on(grid, class_map)
        if offset is not None:
            placed.append((class_map.path, offset[0], offset[1], class_map.width, class_map.height))
            continue
        warped = out_dir / WARPED_FOLDER / f"{class_map.path.stem}.vrt"
        warped.parent.mkdir(parents=True, exist_ok=True)
        column, row, width, height = write_warped(class_map, grid, warped)
        placed.append((warped, column, row, width, height))
    # GDAL paints later sources over earlier ones: the first scene goes last, so it wins
    sources = [
        source_xml(os.path.relpath(path, out_dir), width, height, column, row)
        for path, column, row, width, height in reversed(placed)
    ]
    vrt = out_dir / "region.vrt"
    with atomic_file(vrt) as staging:
        staging.write_text(mosaic_xml(grid, table, sources))
    with atomic_file(out_dir / "region.qml") as staging:
        staging.write_text(qgis_style(table))
    return vrt


def mosaic_as_cog(vrt: Path, destination: Path) -> None:
    """The mosaic as one Cloud-Optimized GeoTIFF (overviews by MODE), written whole or not at all."""
    with gdal_env(), atomic_file(destination) as staging:
        write_cloud_optimized(vrt, staging, "MODE")


def strips(height: int, width: int) -> Iterator[tuple[int, int]]:
    rows = max(1, min(height, STRIP_PIXELS // max(width, 1)))
    for top in range(0, height, rows):
        yield top, min(height, top + rows)


def region_area_report(vrt: Path, table: ClassTable) -> dict:
    """Pixels and hectares per class over the mosaic, streamed a strip of rows at a time."""
    with gdal_env(), rasterio.open(vrt) as mosaic:
        areas, reason = pixel_areas(mosaic.crs, mosaic.transform, mosaic.width, mosaic.height, None)
        counter = AreaCounter(len(table), areas)
        for top, bottom in strips(mosaic.height, mosaic.width):
            counter.add(top, mosaic.read(1, window=Window(0, top, mosaic.width, bottom - top)))
        width, height, crs = mosaic.width, mosaic.height, mosaic.crs
    hectares = counter.hectares()
    return {
        "mosaic": vrt.name,
        "areas": MAP_AREAS,
        "width": width,
        "height": height,
        "crs": crs.to_string(),
        "area_method": None if areas is None else areas.method,
        "no_areas_because": reason,
        "pixel_area_m2": None if areas is None else areas.pixel_area_m2,
        "classes": [
            {
                "class_id": index,
                "class": name,
                "pixels": int(counter.pixels[index]),
                "hectares": None if hectares is None else float(hectares[index]),
            }
            for index, name in enumerate(table.names)
        ],
        "predicted_pixels": int(counter.pixels[: len(table)].sum()),
        "no_prediction_pixels": int(counter.pixels[NODATA_CLASS]),
        "predicted_hectares": None if hectares is None else float(hectares[: len(table)].sum()),
    }


def write_region_areas(vrt: Path, table: ClassTable, out_dir: Path) -> dict:
    """region_areas.json and region_areas.csv (as a scene's area report), each written whole or not at all."""
    report = region_area_report(vrt, table)
    with atomic_file(out_dir / "region_areas.json") as json_path, atomic_file(out_dir / "region_areas.csv") as csv_path:
        write_area_files(report, json_path, csv_path)
    return report


def parse_crs(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except Exception as error:  # rasterio's CRSError
        raise PipelineError(f"--crs {text}: not a CRS GDAL knows ({error})") from None
