"""Scene images and their labels, read a window at a time on the image's pixel grid.

An image is read through rasterio (GeoTIFF, COG, any raster GDAL reads: any band count, uint8,
uint16, int16, float32), or, for JPEG and PNG, decoded whole by Pillow as everywhere else in the
pipeline (io.imageio; RGB only). Labels come in three kinds (docs/data.md, "Your own data"):
- `index`: a single-band integer raster of label values, looked up in the class table's values;
- `colour`: a 3-band uint8 raster or PNG of class colours (DeepGlobe's masks), looked up by colour;
- `vector`: polygons (GeoPackage, GeoJSON, Shapefile) with a class attribute holding class names or
  label values, rasterized onto the image's grid (a pixel is a polygon's when its centre is inside;
  where polygons overlap, the later one in the file wins).
Labels on another grid or extent are resampled onto the image's grid by nearest neighbour; labels in
another CRS are reprojected the same way (GDAL's warper). A label raster without a georeference must
have the image's size. Pixels without a label (outside the labels' extent, no polygon, the label
raster's nodata) become IGNORE_INDEX and are counted as unlabelled; label values or colours that are
in no class become IGNORE_INDEX too, counted as off-table.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform
from tqdm import tqdm

from landcover.data.palette import IGNORE_INDEX, ClassTable, colour_to_index, values_to_index
from landcover.io.errors import PipelineError
from landcover.io.imageio import open_image
from landcover.io.rasters import RASTER_ERRORS, is_jpeg_or_png, open_raster, raster_error, read_window

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp")
IMAGE_DTYPES = ("uint8", "uint16", "int16", "float32")
# Burnt for vector features before the lookup: no polygon, and a label value in no class.
_NO_POLYGON = 65535
_OFF_TABLE = 65534


@dataclass(frozen=True)
class ImageHeader:
    """What a scene image is, from its header: size, bands, type, georeference."""

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None
    transform: Affine
    through_gdal: bool  # read by rasterio a window at a time; else a JPEG or PNG decoded whole by Pillow
    alpha: int | None = None  # its alpha band's number: where it is 0 there are no data, and so no labels
    gcp_only: str | None = None  # gcp_only_georeference's words where ground control points are its only georeference

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return window_bounds(Window(0, 0, self.width, self.height), self.transform)


def gcp_only_georeference(dataset) -> str | None:
    """Where a raster is placed on the ground only by ground control points (no CRS on a grid), what it has and
    how to put it on a grid, in words; None for any other raster."""
    gcps, gcp_crs = dataset.gcps
    if dataset.crs is not None or not gcps:
        return None
    crs = gcp_crs.to_string() if gcp_crs else "no CRS"
    target = f" -t_srs {crs}" if gcp_crs else ""
    return (
        f"georeferenced only by {len(gcps)} ground control points (GCPs, {crs}); warp it onto a grid first "
        f"(gdalwarp{target} in.tif warped.tif)"
    )


def read_image_header(path: Path) -> ImageHeader:
    """The header of a scene image; a file neither GDAL nor Pillow reads raises PipelineError naming it."""
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    if is_jpeg_or_png(path):
        with open_image(path, warn=False) as image:
            return ImageHeader(path, image.width, image.height, 3, "uint8", None, Affine.identity(), False)
    with open_raster(path) as dataset:
        dtypes = set(dataset.dtypes)
        if len(dtypes) != 1:
            raise PipelineError(f"{path}: bands of different types ({', '.join(sorted(dtypes))}); need one type")
        dtype = dtypes.pop()
        if dtype not in IMAGE_DTYPES:
            raise PipelineError(f"{path}: bands of type {dtype}; images must be {', '.join(IMAGE_DTYPES)}")
        alpha = (
            list(dataset.colorinterp).index(ColorInterp.alpha) + 1 if ColorInterp.alpha in dataset.colorinterp else None
        )
        return ImageHeader(
            path,
            dataset.width,
            dataset.height,
            dataset.count,
            dtype,
            dataset.crs,
            dataset.transform,
            True,
            alpha,
            gcp_only_georeference(dataset),
        )


def check_bands(header: ImageHeader, bands: tuple[int, ...]) -> None:
    beyond = [band for band in bands if not 1 <= band <= header.count]
    if beyond:
        raise PipelineError(
            f"{header.path}: data.bands asks for band {beyond[0]} but the image has {header.count} "
            f"band{'s' if header.count != 1 else ''}"
        )


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --- label rasters -------------------------------------------------------------------------------


def _label_kind(path: Path, dataset) -> str:
    dtype = np.dtype(dataset.dtypes[0])
    if not np.issubdtype(dtype, np.integer):
        raise PipelineError(f"{path}: label raster of type {dtype}; labels must be integers (class values)")
    if dataset.count == 1:
        return "index"
    if dataset.count in (3, 4) and dtype == np.uint8:
        return "colour"
    raise PipelineError(
        f"{path}: label raster with {dataset.count} bands of {dtype}; need 1 band of class values "
        "or 3 uint8 bands of class colours"
    )


@contextmanager
def _on_image_grid(path: Path, dataset, image: ImageHeader) -> Iterator[tuple[object, bool]]:
    """The label dataset as seen on the image's grid, and whether it needs its alpha band for validity."""
    same_grid = (dataset.width, dataset.height) == (image.width, image.height)
    if dataset.crs is None or not image.georeferenced:
        if not same_grid:
            raise PipelineError(
                f"{path}: labels are {dataset.width}x{dataset.height} without a georeference to place them; "
                f"their image {image.path.name} is {image.width}x{image.height}"
            )
        yield dataset, False
        return
    label_bounds = transform_bounds(dataset.crs, image.crs, *dataset.bounds)
    if not _overlaps(label_bounds, image.bounds):
        raise PipelineError(f"{path}: labels do not overlap their image {image.path.name}")
    if same_grid and dataset.crs == image.crs and dataset.transform.almost_equals(image.transform):
        yield dataset, False
        return
    try:
        vrt = WarpedVRT(
            dataset,
            crs=image.crs,
            transform=image.transform,
            width=image.width,
            height=image.height,
            resampling=Resampling.nearest,
            add_alpha=True,
        )
    except RASTER_ERRORS as error:
        raise raster_error(path, error, "cannot place labels on their image's grid") from None
    with vrt:
        yield vrt, True


class RasterLabels:
    """A label raster (index or colour), read a window at a time on its image's grid."""

    def __init__(self, path: Path, dataset, view, warped: bool, kind: str, table: ClassTable, hidden) -> None:
        self.path, self.view, self.warped, self.kind, self.table = path, view, warped, kind, table
        self.hidden = hidden  # the image's pixels without data in a window (its alpha 0), or None
        self.bands = [1] if kind == "index" else [1, 2, 3]
        self.masked = MaskFlags.all_valid not in dataset.mask_flag_enums[0]  # a nodata value or a mask band
        nodata = dataset.nodata
        if kind == "index" and nodata is not None and float(nodata).is_integer() and int(nodata) in table.values:
            name = table.names[table.values.index(int(nodata))]
            tqdm.write(
                f"warning: {path}: its nodata value {int(nodata)} is also the label value of class {name!r}: "
                "those pixels are left out as unlabelled",
                file=sys.stderr,
            )

    def read(self, window: Window) -> tuple[np.ndarray, int, int]:
        """(h x w uint8 class indices, off-table pixels, unlabelled pixels) of `window` on the image's grid."""
        data = read_window(self.view, self.path, self.bands, window)
        labelled = None
        if self.warped:  # its alpha band: 0 outside the labels' extent and on their nodata
            labelled = read_window(self.view, self.path, self.view.count, window) != 0
        elif self.masked:
            try:
                labelled = self.view.read_masks(1, window=window) != 0
            except RASTER_ERRORS as error:
                raise raster_error(self.path, error) from None
        hidden = self.hidden(window)
        if hidden is not None:
            labelled = ~hidden if labelled is None else labelled & ~hidden
        if self.kind == "index":
            index, off_table = values_to_index(data[0], self.table, None)
        else:
            index, off_table = colour_to_index(np.moveaxis(data, 0, -1), self.table)
        if labelled is None:
            return index, off_table, 0
        off_table -= int(np.count_nonzero((index == IGNORE_INDEX) & ~labelled))
        index[~labelled] = IGNORE_INDEX
        return index, off_table, int(np.count_nonzero(~labelled))


# --- vector labels -------------------------------------------------------------------------------


def _require_vector_reader():
    try:
        import pyogrio.raw
    except ImportError:
        raise PipelineError("vector labels need the optional vector group (pyogrio): make install-vector") from None
    return pyogrio.raw


def _wkb_polygons(wkb: bytes, path: Path) -> dict:
    """A 2D WKB Polygon or MultiPolygon as a GeoJSON-like dict (what rasterio rasterizes)."""
    offset = 0

    def read(fmt: str, order: str):
        nonlocal offset
        values = struct.unpack_from(order + fmt, wkb, offset)
        offset += struct.calcsize(order + fmt)
        return values

    def polygon(order: str) -> list:
        (ring_count,) = read("I", order)
        rings = []
        for _ in range(ring_count):
            (points,) = read("I", order)
            flat = read(f"{2 * points}d", order)
            rings.append(list(zip(flat[0::2], flat[1::2])))
        return rings

    def header() -> tuple[str, int]:
        (byte_order,) = read("B", "<")
        order = "<" if byte_order == 1 else ">"
        (kind,) = read("I", order)
        return order, kind

    order, kind = header()
    if kind == 3:
        return {"type": "Polygon", "coordinates": polygon(order)}
    if kind == 6:
        (count,) = read("I", order)
        parts = []
        for _ in range(count):
            part_order, _ = header()
            parts.append(polygon(part_order))
        return {"type": "MultiPolygon", "coordinates": parts}
    raise PipelineError(f"{path}: a feature of WKB geometry type {kind}; labels must be polygons")


class VectorLabels:
    """Polygons with a class attribute, rasterized a window at a time onto their image's grid."""

    def __init__(self, path: Path, image: ImageHeader, table: ClassTable, attribute: str, hidden) -> None:
        self.path, self.image, self.table, self.hidden = path, image, table, hidden
        if not image.georeferenced:
            why = f"is {image.gcp_only}" if image.gcp_only else "has no CRS"
            raise PipelineError(f"{path}: vector labels need an image on a grid with a CRS; {image.path.name} {why}")
        raw = _require_vector_reader()
        try:
            meta, fids, geometries, fields = raw.read(path, columns=[attribute], force_2d=True, return_fids=True)
        except Exception as error:  # pyogrio raises its own error types for every GDAL failure
            raise PipelineError(f"{path}: cannot read vector labels ({error})") from None
        if not len(geometries):
            raise PipelineError(f"{path}: no features; vector labels need polygons with a class attribute")
        if attribute not in list(meta["fields"]):
            raise PipelineError(
                f"{path}: no attribute {attribute!r} (data.label_attribute); it has {_attributes(path) or 'none'}"
            )
        codes = self._codes(fields[0], fids, attribute)
        crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else image.crs
        shapes = [_wkb_polygons(bytes(wkb), path) for wkb in geometries if wkb is not None]
        codes = codes[[wkb is not None for wkb in geometries]]
        if crs != image.crs and shapes:
            shapes = transform_geom(crs, image.crs, shapes)
        self.shapes, self.codes = shapes, codes
        self.boxes = np.array([_box(shape) for shape in shapes]).reshape(-1, 4)
        if not len(shapes) or not any(_overlaps(tuple(box), image.bounds) for box in self.boxes):
            raise PipelineError(f"{path}: labels do not overlap their image {image.path.name}")

    def _codes(self, values: np.ndarray, fids: np.ndarray, attribute: str) -> np.ndarray:
        """Each feature's class index (or _OFF_TABLE): class names must be in the table; values may not be."""
        if values.dtype.kind in "OUS":
            nones = [i for i, value in enumerate(values) if value is None]
            if nones:
                raise self._bad_feature(fids[nones[0]], f"no value of attribute {attribute!r} (data.label_attribute)")
            names = [str(value) for value in values]
            unknown = sorted({name for name in names if name not in self.table.names})
            if unknown:
                raise PipelineError(
                    f"{self.path}: class {unknown[0]!r} is not in the class table ({', '.join(self.table.names)})"
                )
            return np.array([self.table.names.index(name) for name in names], dtype=np.uint16)
        numbers = values.astype(np.float64)
        null = np.flatnonzero(np.isnan(numbers))
        if len(null):
            raise self._bad_feature(fids[null[0]], f"no value of attribute {attribute!r} (data.label_attribute)")
        fractional = np.flatnonzero(~np.isfinite(numbers) | (numbers != np.round(numbers)))
        if len(fractional):
            value = values[fractional[0]]
            raise self._bad_feature(
                fids[fractional[0]], f"{attribute} {value}, not a whole label value; label values are integers"
            )
        lookup = {int(value): index for index, value in enumerate(self.table.values)}
        return np.array([lookup.get(int(value), _OFF_TABLE) for value in values], dtype=np.uint16)

    def _bad_feature(self, fid: object, what: str) -> PipelineError:
        return PipelineError(f"{self.path}: feature (FID {fid}) has {what}")

    def read(self, window: Window) -> tuple[np.ndarray, int, int]:
        from rasterio import features

        box = window_bounds(window, self.image.transform)
        boxes = self.boxes
        near = np.flatnonzero(
            (boxes[:, 0] < box[2]) & (box[0] < boxes[:, 2]) & (boxes[:, 1] < box[3]) & (box[1] < boxes[:, 3])
        )
        shape = (int(window.height), int(window.width))
        burnt = (
            features.rasterize(
                ((self.shapes[i], int(self.codes[i])) for i in near),
                out_shape=shape,
                transform=window_transform(window, self.image.transform),
                fill=_NO_POLYGON,
                dtype="uint16",
            )
            if len(near)
            else np.full(shape, _NO_POLYGON, dtype=np.uint16)
        )
        hidden = self.hidden(window)
        if hidden is not None:
            burnt[hidden] = _NO_POLYGON
        unlabelled = int(np.count_nonzero(burnt == _NO_POLYGON))
        off_table = int(np.count_nonzero(burnt == _OFF_TABLE))
        index = np.where(burnt >= _OFF_TABLE, IGNORE_INDEX, burnt).astype(np.uint8)
        return index, off_table, unlabelled


def _attributes(path: Path) -> str:
    """The attribute names of a vector file, comma-separated, for a message."""
    import pyogrio

    try:
        return ", ".join(map(str, pyogrio.read_info(path)["fields"]))
    except Exception:  # pyogrio raises its own error types for every GDAL failure
        return ""


def _box(shape: dict) -> tuple[float, float, float, float]:
    rings = shape["coordinates"] if shape["type"] == "Polygon" else [r for part in shape["coordinates"] for r in part]
    points = np.array([point for ring in rings for point in ring], dtype=np.float64).reshape(-1, 2)
    return (*points.min(axis=0), *points.max(axis=0))


@contextmanager
def open_labels(
    path: Path, image: ImageHeader, table: ClassTable, attribute: str
) -> Iterator[RasterLabels | VectorLabels]:
    """The labels at `path`, ready to read windows of `image`'s grid; every refusal names the file. Where the
    image's alpha band is 0 the labels are left out as unlabelled: mapping gives those pixels no prediction."""
    with ExitStack() as stack:
        hidden = stack.enter_context(_alpha_zero(image))
        if path.suffix.lower() in VECTOR_SUFFIXES:
            yield VectorLabels(path, image, table, attribute, hidden)
            return
        dataset = stack.enter_context(open_raster(path))
        kind = _label_kind(path, dataset)
        view, warped = stack.enter_context(_on_image_grid(path, dataset, image))
        yield RasterLabels(path, dataset, view, warped, kind, table, hidden)


@contextmanager
def _alpha_zero(image: ImageHeader) -> Iterator[Callable[[Window], np.ndarray | None]]:
    """Where the image's alpha band is 0 in a window (h x w bool), or None for an image without one."""
    if image.alpha is None:
        yield lambda window: None
        return
    band = image.alpha
    with open_raster(image.path) as dataset:
        yield lambda window: read_window(dataset, image.path, band, window) == 0
