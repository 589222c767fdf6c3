"""Small georeferenced scene datasets, for tests and benchmarks of the scenes path (docs/data.md, "Your own data").

Each scene is a grid of square cells, each of one class; its image bands are the class's level per
band plus noise (so a model can learn them), of any band count and type; its labels are a class-index
GeoTIFF, a colour GeoTIFF, or polygons (one rectangle per cell) in a GeoPackage or GeoJSON file.
The same arguments give byte-identical files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from landcover.data.palette import ClassTable
from landcover.io.imageio import write_png

PIXEL_SIZE = 0.5  # metres
ORIGIN = (500_000.0, 5_600_000.0)  # a UTM easting/northing
DEFAULT_CRS = "EPSG:32633"


def class_grid(height: int, width: int, cell: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    rows, columns = -(-height // cell), -(-width // cell)
    cells = rng.integers(0, classes, (rows, columns))
    return np.kron(cells, np.ones((cell, cell), dtype=np.int64))[:height, :width]


def band_values(classes: np.ndarray, bands: int, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """bands x H x W of `dtype`: each class its own level per band, plus noise."""
    top = 255 if dtype == "uint8" else 10_000
    levels = rng.uniform(0.1 * top, 0.9 * top, (int(classes.max()) + 1, bands))
    values = levels[classes].transpose(2, 0, 1) + rng.normal(0, 0.05 * top, (bands, *classes.shape))
    return np.clip(values, 0, top).astype(dtype)


def write_scene(
    folder: Path,
    scene_id: str,
    size: tuple[int, int],
    table: ClassTable,
    labels: str = "index",
    bands: int = 4,
    dtype: str = "uint16",
    cell: int = 16,
    seed: int = 0,
    crs: str = DEFAULT_CRS,
    origin: tuple[float, float] = ORIGIN,
    blocksize: int | None = None,
) -> tuple[Path, Path, np.ndarray]:
    """Write images/<id>.tif and labels/<id>.<tif|gpkg|geojson>; returns their paths and the class indices."""
    height, width = size
    rng = np.random.default_rng(seed)
    classes = class_grid(height, width, cell, len(table), rng)
    transform = Affine(PIXEL_SIZE, 0, origin[0], 0, -PIXEL_SIZE, origin[1])
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "crs": CRS.from_user_input(crs),
        "transform": transform,
    }
    if blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize, compress="deflate")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    image = folder / "images" / f"{scene_id}.tif"
    with rasterio.open(image, "w", count=bands, dtype=dtype, **profile) as out:
        out.write(band_values(classes, bands, dtype, rng))
    values = np.array(table.values)[classes]
    if labels == "index":
        label = folder / "labels" / f"{scene_id}.tif"
        with rasterio.open(label, "w", count=1, dtype="uint16", **profile) as out:
            out.write(values.astype(np.uint16), 1)
    elif labels == "colour":
        label = folder / "labels" / f"{scene_id}.tif"
        with rasterio.open(label, "w", count=3, dtype="uint8", **profile) as out:
            out.write(table.colours[classes].transpose(2, 0, 1))
    else:
        label = folder / "labels" / f"{scene_id}.{'gpkg' if labels == 'gpkg' else 'geojson'}"
        write_cell_polygons(label, classes, cell, transform, table, crs)
    return image, label, classes


def _cells(classes: np.ndarray, cell: int, transform: Affine):
    """(ring in map coordinates, class index) of every cell of the grid."""
    height, width = classes.shape
    for top in range(0, height, cell):
        for left in range(0, width, cell):
            bottom, right = min(top + cell, height), min(left + cell, width)
            corners = [transform @ (x, y) for x, y in ((left, top), (right, top), (right, bottom), (left, bottom))]
            yield [*corners, corners[0]], int(classes[top, left])


def write_cell_polygons(
    path: Path, classes: np.ndarray, cell: int, transform: Affine, table: ClassTable, crs: str
) -> None:
    """One rectangle per cell with a `class` attribute (its class name): a GeoPackage or a GeoJSON file."""
    cells = list(_cells(classes, cell, transform))
    if path.suffix == ".geojson":
        features = [
            {
                "type": "Feature",
                "properties": {"class": table.names[index]},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
            for ring, index in cells
        ]
        crs_member = {"type": "name", "properties": {"name": CRS.from_user_input(crs).to_string()}}
        path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs_member, "features": features}))
        return
    from pyogrio.raw import write

    from landcover.geo.polygons import polygon_wkb

    write(
        str(path),
        np.array([polygon_wkb([ring]) for ring, _ in cells], dtype=object),
        [np.array([table.names[index] for _, index in cells], dtype=object)],
        ["class"],
        driver="GPKG",
        geometry_type="Polygon",
        crs=CRS.from_user_input(crs).to_wkt(),
    )


def write_scene_dataset(
    root: Path, table: ClassTable, scenes: int = 3, size: tuple[int, int] = (96, 128), **scene_options
) -> list[np.ndarray]:
    """A `scenes` layout dataset: images/, labels/, scenes.csv and classes.csv; returns each scene's classes."""
    root.mkdir(parents=True, exist_ok=True)
    rows, grids = [], []
    for number in range(scenes):
        scene_id = f"scene-{number + 1}"
        image, label, classes = write_scene(root, scene_id, size, table, seed=number, **scene_options)
        rows.append([scene_id, image.relative_to(root).as_posix(), label.relative_to(root).as_posix()])
        grids.append(classes)
    with open(root / "scenes.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["scene_id", "image", "labels"])
        writer.writerows(rows)
    table.to_csv(root / "classes.csv")
    return grids


# --- look-alikes of public datasets, in their published layouts (docs/data.md, "Presets") --------------------------


def write_lookalike(root: Path, preset: str, scenes: int = 3, size: tuple[int, int] = (96, 128), seed: int = 0) -> None:
    """A tiny dataset in `preset`'s layout, its label values its class table's (0 = no data where it has one):
    `landcoverai` (GeoTIFFs in EPSG:2180, images/ and masks/), `openearthmap` (<region>/images/ and
    <region>/labels/ GeoTIFFs, names <region>_<k>), `loveda` (Train/ and Val/, Urban/ and Rural/, PNG
    images_png/ and masks_png/)."""
    table = ClassTable.preset(preset)
    for number in range(scenes):
        rng = np.random.default_rng(seed + number)
        classes = class_grid(*size, 16, len(table), rng)
        values = np.array(table.values, dtype=np.uint8)[classes]
        if preset != "landcoverai":
            values[:4] = 0  # a strip of no data, as the datasets' own masks have
        image = band_values(classes, 3, "uint8", rng)
        if preset == "loveda":
            folder = root / ("Train", "Val")[number % 2] / ("Urban", "Rural")[number // 2 % 2]
            (folder / "images_png").mkdir(parents=True, exist_ok=True)
            (folder / "masks_png").mkdir(parents=True, exist_ok=True)
            write_png(folder / "images_png" / f"{1366 + number}.png", np.moveaxis(image, 0, -1))
            write_png(folder / "masks_png" / f"{1366 + number}.png", values)
            continue
        if preset == "landcoverai":
            images, labels, name, crs = root / "images", root / "masks", f"M-33-20-D-c-4-{number + 1}", "EPSG:2180"
        else:
            region = ("aachen", "tokyo")[number % 2]
            images, labels, name, crs = (
                root / region / "images",
                root / region / "labels",
                f"{region}_{number + 1}",
                DEFAULT_CRS,
            )
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        transform = Affine(PIXEL_SIZE, 0, ORIGIN[0] + 1000 * number, 0, -PIXEL_SIZE, ORIGIN[1])
        profile = {
            "driver": "GTiff",
            "height": size[0],
            "width": size[1],
            "crs": CRS.from_user_input(crs),
            "transform": transform,
        }
        with rasterio.open(images / f"{name}.tif", "w", count=3, dtype="uint8", **profile) as out:
            out.write(image)
        with rasterio.open(labels / f"{name}.tif", "w", count=1, dtype="uint8", **profile) as out:
            out.write(values, 1)


def write_large_scene(
    folder: Path,
    scene_id: str,
    side: int,
    table: ClassTable,
    bands: int = 4,
    dtype: str = "uint16",
    cell: int = 256,
    seed: int = 0,
    blocksize: int = 512,
    origin: tuple[float, float] = ORIGIN,
) -> tuple[Path, Path]:
    """A `side` x `side` scene written a strip of blocks at a time (bounded memory at any size): a tiled, deflated
    GeoTIFF of `bands` bands with 512 px blocks (a COG's layout, without overviews), and its cells as polygons
    in a GeoPackage. For benchmarks of the scenes path."""
    rng = np.random.default_rng(seed)
    cells_per_side = -(-side // cell)
    cells = rng.integers(0, len(table), (cells_per_side, cells_per_side))
    top = 255 if dtype == "uint8" else 10_000
    levels = rng.uniform(0.1 * top, 0.9 * top, (len(table), bands))
    transform = Affine(PIXEL_SIZE, 0, origin[0], 0, -PIXEL_SIZE, origin[1])
    profile = {
        "driver": "GTiff",
        "height": side,
        "width": side,
        "count": bands,
        "dtype": dtype,
        "crs": CRS.from_user_input(DEFAULT_CRS),
        "transform": transform,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "deflate",
    }
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    image = folder / "images" / f"{scene_id}.tif"
    with rasterio.open(image, "w", **profile) as out:
        for row in range(0, side, blocksize):
            rows = min(blocksize, side - row)
            first, last = row // cell, (row + rows - 1) // cell
            part = np.repeat(np.repeat(cells[first : last + 1], cell, axis=0), cell, axis=1)
            strip_classes = part[row - first * cell : row - first * cell + rows, :side]
            values = levels[strip_classes].transpose(2, 0, 1) + rng.normal(0, 0.05 * top, (bands, rows, side))
            out.write(np.clip(values, 0, top).astype(dtype), window=((row, row + rows), (0, side)))
    label = folder / "labels" / f"{scene_id}.gpkg"
    write_cell_polygons(label, _cell_grid_as_pixels(cells, cell, side), cell, transform, table, DEFAULT_CRS)
    return image, label


class _CellGrid:
    """A class grid of `cell`-pixel cells, indexable at cell corners like a full-size array (for _cells)."""

    def __init__(self, cells: np.ndarray, cell: int, side: int) -> None:
        self.cells, self.cell, self.shape = cells, cell, (side, side)

    def __getitem__(self, where: tuple[int, int]) -> int:
        return int(self.cells[where[0] // self.cell, where[1] // self.cell])


def _cell_grid_as_pixels(cells: np.ndarray, cell: int, side: int) -> np.ndarray:
    return _CellGrid(cells, cell, side)  # type: ignore[return-value]
