"""Land-cover change between two maps of the same area: a from-to table and a change map.

The maps are class maps of this project (a scene's COG, a region mosaic's VRT or COG): both carry their
class names (CLASS_NAMES) and colour table, and they must have the same classes. Everything is computed on
the first map's grid: the second is warped onto it by nearest neighbour (read through a warped VRT, never
resampled between classes), and a pixel without a class in either map (255, or outside the second) is left
out. Both are streamed a strip of rows at a time.

- The from-to table: pixels and hectares (the first map's pixel areas on the ground, geo.areas) per pair
  (class at date 1, class at date 2): rows the first date, columns the second.
- The change map: a COG of from-to codes on the first map's grid: 0 where the class is unchanged,
  1 + from x classes + to where it changed, 255 where a map has no class; its colour table draws unchanged
  pixels light grey and each change in the colour of the class it became, and its QGIS legend names them.
- Their STAC Item (geo.stac.write_change_item), linked to the two maps.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from landcover.data.palette import ClassTable
from landcover.geo.areas import SQUARE_METRES_PER_HECTARE, pixel_areas
from landcover.geo.georaster import (
    NODATA_CLASS,
    BlockRowWriter,
    class_table_of,
    gdal_env,
    qgis_style,
    scratch_file,
    write_cloud_optimized,
)
from landcover.geo.sampling import CodeRaster, MapFile, open_checked
from landcover.geo.stac import utc_now, write_change_item
from landcover.io.errors import PipelineError
from landcover.io.outputs import atomic_file
from landcover.io.rasters import check_sources, read_window
from landcover.region.mosaic import strips

UNCHANGED = 0
UNCHANGED_COLOUR = (220, 220, 220)


def change_code(before: int, after: int, classes: int) -> int:
    return UNCHANGED if before == after else 1 + before * classes + after


def change_codes(before: np.ndarray, after: np.ndarray, classes: int) -> np.ndarray:
    """uint8 codes: 0 unchanged, 1 + before x classes + after changed, 255 where either has no class."""
    codes = (1 + before.astype(np.int32) * classes + after).astype(np.uint8)
    codes[before == after] = UNCHANGED
    codes[(before >= classes) | (after >= classes)] = NODATA_CLASS
    return codes


def change_table(table: ClassTable) -> ClassTable:
    """Every code's name and colour: unchanged, then from -> to (the colour of `to`); same-class pairs are never
    written, and named so."""
    names, colours = ["unchanged"], [list(UNCHANGED_COLOUR)]
    for before in range(len(table)):
        for after in range(len(table)):
            same = before == after
            names.append(f"{table.names[before]} -> {table.names[after]}" + (" (not used)" if same else ""))
            colours.append(list(UNCHANGED_COLOUR) if same else [int(c) for c in table.colours[after]])
    return ClassTable(tuple(names), np.array(colours, dtype=np.uint8))


def change_colormap(codes: ClassTable) -> dict[int, tuple[int, ...]]:
    colormap = {index: (*map(int, colour), 255) for index, colour in enumerate(codes.colours)}
    colormap[NODATA_CLASS] = (0, 0, 0, 0)
    return colormap


def change_legend(codes: ClassTable) -> str:
    """The QGIS legend of the change map, without the codes that are never written."""
    return "\n".join(line for line in qgis_style(codes).splitlines() if "(not used)" not in line) + "\n"


def _check_sources(path: Path) -> None:
    with rasterio.open(path) as dataset:
        check_sources(path, dataset)


def same_classes(before: Path, after: Path) -> ClassTable:
    _check_sources(before)
    _check_sources(after)
    table, other = class_table_of(before), class_table_of(after)
    if table.names != other.names:
        raise PipelineError(
            f"{after}: its classes ({', '.join(other.names)}) are not those of {before} ({', '.join(table.names)})"
        )
    if 1 + len(table) ** 2 >= NODATA_CLASS:
        raise PipelineError(f"{before}: {len(table)} classes have too many from-to pairs for a uint8 change map")
    return table


@contextmanager
def on_grid_of(reference, path: Path) -> Iterator:
    """The map at `path` read on `reference`'s grid: as it is where the grids are one, else warped by nearest."""
    with rasterio.open(path) as dataset:
        same = (dataset.crs, dataset.transform, dataset.shape) == (reference.crs, reference.transform, reference.shape)
        if same:
            yield dataset
            return
        if dataset.crs is None or reference.crs is None:
            raise PipelineError(
                f"{path}: its grid is not that of {reference.name}, and a map without a CRS cannot be warped onto it"
            )
        if not _overlaps(transform_bounds(dataset.crs, reference.crs, *dataset.bounds), tuple(reference.bounds)):
            raise PipelineError(f"{path}: does not overlap {reference.name}; there is no change to compare")
        with WarpedVRT(
            dataset,
            crs=reference.crs,
            transform=reference.transform,
            width=reference.width,
            height=reference.height,
            resampling=Resampling.nearest,
            nodata=NODATA_CLASS,
        ) as warped:
            yield warped


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def detect_change(before: Path, after: Path, out_dir: Path) -> dict:
    """change.tif, change.qml, from_to.json and from_to.csv in `out_dir`, each whole or not at all, then their
    STAC Item (change.item.json, geo.stac); returns the from-to report."""
    started = utc_now()
    table = same_classes(before, after)
    classes = len(table)
    codes = change_table(table)
    out_dir = Path(out_dir)
    with gdal_env(), rasterio.open(before) as first, on_grid_of(first, after) as second, ExitStack() as stack:
        areas, reason = pixel_areas(first.crs, first.transform, first.width, first.height, None)
        staged = stack.enter_context(atomic_file(out_dir / "change.tif"))
        scratch = stack.enter_context(scratch_file(out_dir / "change.tif"))
        writer = BlockRowWriter(
            scratch, first.width, first.height, first.crs, first.transform, NODATA_CLASS,
            colormap=change_colormap(codes), descriptions=["land cover change: 0 unchanged, 1 + from x classes + to"],
            tags={"CLASS_NAMES": ",".join(table.names), "CHANGE_CODES": f"0: unchanged; 1 + from x {classes} + to"},
        )  # fmt: skip
        try:
            pixels, square_metres = stream_change(first, second, after, writer, classes, areas)
        finally:
            writer.close()
        write_cloud_optimized(scratch, staged, "MODE")
        crs = None if first.crs is None else first.crs.to_string()
        grid = {"crs": crs, "width": first.width, "height": first.height}
    hectares = None
    if areas is not None:
        m2 = pixels * areas.pixel_area_m2 if areas.pixel_area_m2 is not None else square_metres
        hectares = (m2 / SQUARE_METRES_PER_HECTARE).reshape(classes, classes)
    report = from_to_report(before, after, table, pixels.reshape(classes, classes), hectares, grid)
    report["area_method"], report["no_areas_because"] = (None, reason) if areas is None else (areas.method, None)
    write_from_to(report, table, out_dir)
    with atomic_file(out_dir / "change.qml") as staging:
        staging.write_text(change_legend(codes))
    write_change_item(out_dir, before, after, codes, started)
    return report


def stream_change(
    first, second, after: Path, writer: BlockRowWriter, classes: int, areas
) -> tuple[np.ndarray, np.ndarray]:
    """The change codes written a strip at a time; pixels and m^2 (where pixel areas vary) per from-to pair."""
    pixels = np.zeros(classes * classes, dtype=np.int64)
    square_metres = np.zeros(classes * classes, dtype=np.float64)
    for top, bottom in strips(first.height, first.width):
        window = Window(0, top, first.width, bottom - top)
        from_classes = read_window(first, Path(first.name), 1, window)
        to_classes = read_window(second, Path(after), 1, window)
        writer.write_rows(change_codes(from_classes, to_classes, classes))
        valid = (from_classes < classes) & (to_classes < classes)
        pairs = from_classes[valid].astype(np.int64) * classes + to_classes[valid]
        pixels += np.bincount(pairs, minlength=classes * classes)
        if areas is not None and areas.pixel_area_m2 is None:
            weights = areas.strip_m2(top, bottom)[valid]
            square_metres += np.bincount(pairs, weights=weights, minlength=classes * classes)
    return pixels, square_metres


def from_to_report(
    before: Path, after: Path, table: ClassTable, pixels: np.ndarray, hectares: np.ndarray | None, grid: dict
) -> dict:
    changed = ~np.eye(len(table), dtype=bool)
    return {
        "before": str(before),
        "after": str(after),
        "grid": grid,
        "classes": list(table.names),
        "rows": "class at date 1 (before)",
        "columns": "class at date 2 (after)",
        "pixels": pixels.tolist(),
        "hectares": None if hectares is None else hectares.tolist(),
        "compared_pixels": int(pixels.sum()),
        "changed_pixels": int(pixels[changed].sum()),
        "changed_hectares": None if hectares is None else float(hectares[changed].sum()),
        "unchanged_hectares": None if hectares is None else float(np.trace(hectares)),
        "codes": {"0": "unchanged", "255": "no class in either map"}
        | {
            str(1 + b * len(table) + a): f"{table.names[b]} -> {table.names[a]}"
            for b in range(len(table))
            for a in range(len(table))
            if a != b
        },
    }


def write_from_to(report: dict, table: ClassTable, out_dir: Path) -> None:
    """from_to.json, and from_to.csv: the hectares (pixels where there are no areas), rows date 1, columns date 2."""
    unit = "hectares" if report["hectares"] is not None else "pixels"
    matrix = report[unit]
    with atomic_file(out_dir / "from_to.json") as json_path, atomic_file(out_dir / "from_to.csv") as csv_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        with open(csv_path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow([f"from \\ to ({unit})", *table.names])
            for name, row in zip(table.names, matrix):
                writer.writerow([name, *(repr(value) for value in row)])


def transition_table(table: ClassTable) -> ClassTable:
    """Every from-to pair as a class of its own, stable pairs included (`forest_land -> forest_land`): code
    from x classes + to, in the colour of the class it became."""
    names = tuple(f"{before} -> {after}" for before in table.names for after in table.names)
    colours = np.array([table.colours[after] for _ in table.names for after in range(len(table))], dtype=np.uint8)
    return ClassTable(names, colours)


@contextmanager
def transition_codes(before: Path, after: Path) -> Iterator[CodeRaster]:
    """The from-to pair of every pixel of two maps as codes (from x classes + to; -1 where either has no
    class), on the first map's grid, the second warped onto it by nearest neighbour as for the change map."""
    table = same_classes(before, after)
    classes = len(table)
    transitions = transition_table(table)
    with gdal_env(), open_checked(before) as first, on_grid_of(first, after) as second:

        def read(top: int, bottom: int) -> np.ndarray:
            window = Window(0, top, first.width, bottom - top)
            from_classes = read_window(first, Path(before), 1, window).astype(np.int16)
            to_classes = read_window(second, Path(after), 1, window).astype(np.int16)
            valid = (from_classes < classes) & (to_classes < classes)
            return np.where(valid, from_classes * classes + to_classes, -1).astype(np.int16)

        changes = np.array([b != a for b in range(classes) for a in range(classes)], dtype=bool)
        maps = (MapFile("before", Path(before)), MapFile("after", Path(after)))
        yield CodeRaster(
            transitions.names, transitions.colours, changes, first.crs, first.transform, first.width, first.height,
            maps, read,
        )  # fmt: skip


def change_map_table(path: Path) -> ClassTable | None:
    """A change map's codes as classes (`unchanged`, `from -> to`), or None for a map that is not one.

    Its CLASS_NAMES tag names the classes; their colours are not the first entries of its colour table (those are
    change codes) but those of the codes that change into them: `from -> to` is drawn in the colour of `to`."""
    with rasterio.open(path) as dataset:
        if "CHANGE_CODES" not in dataset.tags():
            return None
        names = tuple(dataset.tags().get("CLASS_NAMES", "").split(","))
        colormap = dataset.colormap(1)
    count = len(names)
    into = [1 + ((after + 1) % count) * count + after for after in range(count)]  # a change from another class
    return change_table(ClassTable(names, np.array([colormap[code][:3] for code in into], dtype=np.uint8)))
