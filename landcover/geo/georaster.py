"""Scenes of any size read a strip of rows at a time, and class maps written as Cloud-Optimized GeoTIFFs.

Reading (docs/mapping.md):
- JPEG and PNG files are read whole by Pillow, as everywhere else in the pipeline (imageio: the
  same accepted modes, size limit and decoding that training saw). They carry no georeference.
- Any other raster is read through rasterio (GDAL): GeoTIFF, JPEG 2000, VRT, ERDAS IMG, ... of
  any size, a strip of rows at a time; a remote one (an io.sources.Source) in place, a range at a time.
- A model of uint8 RGB (bands 1, 2, 3 of uint8 images: DeepGlobe's, and every model from before
  bands were recorded) reads RGB:
  - Bands: `--bands R,G,B` (numbered from 1, as GDAL numbers them); by default the bands whose
    colour interpretation is red, green and blue, else bands 1, 2, 3. A raster of fewer than three
    bands is refused (`--bands 1,1,1` reads a grey band as RGB).
  - uint8 bands are read as they are. Bands of any other type are scaled to 0..255:
    v -> round(255 * clip((v - low) / (high - low), 0, 1)), with low, high from `--value-range`
    if given, else the band's 2nd and 98th percentiles (`--percentiles`) over its valid pixels, in a
    sample of about a million evenly spaced pixels (a per-band stretch, as QGIS shows such imagery).
- Any other model (its BandScaling says which bands it was trained on, of which type) reads those
  bands (`--bands`: others of the raster, as many as the model takes) as raw values of the model's
  type: the scaling is the model's own, inside it, so nothing is stretched. A band of another type
  than the model's is refused (no conversion guesses what the values mean).
- A pixel gets no prediction where every chosen band is masked (its nodata value, an alpha or
  mask band) or where any chosen band is NaN or infinite.

Writing: class maps are streamed into a tiled GeoTIFF a row of blocks at a time, then copied by
GDAL's COG driver into a Cloud-Optimized GeoTIFF with overviews (or, where GDAL has no COG
driver, a tiled GeoTIFF with internal overviews laid out the same way).
"""

from __future__ import annotations

import math
import secrets
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window
from tqdm import tqdm

from landcover.data.labels import gcp_only_georeference
from landcover.data.palette import IGNORE_INDEX, ClassTable
from landcover.data.scaling import RGB, UINT8_RGB, BandScaling
from landcover.inference.blending import ArrayRows, too_small_to_predict
from landcover.io.errors import PipelineError
from landcover.io.imageio import open_image, read_rgb
from landcover.io.outputs import STAGING_SUFFIX, _staging_name
from landcover.io.rasters import check_sources, gdal_env, is_jpeg_or_png, open_raster
from landcover.io.sources import Source, read_error

NODATA_CLASS = IGNORE_INDEX  # 255: no prediction (nodata or masked input)
NODATA_CONFIDENCE = 0  # a prediction's confidence is at least 255 / number of classes, so never 0
BLOCKSIZE = 512  # side of the output GeoTIFFs' tiles
SAMPLE_PIXELS = 1 << 20  # pixels per band sampled for the percentile stretch


def warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)  # between progress bars, not through them


@dataclass(frozen=True)
class ReadOptions:
    """How a raster's bands become what the model was trained on (docs/mapping.md)."""

    # numbered from 1; None: the model's bands (a uint8 RGB model's: by colour interpretation, else 1,2,3)
    bands: tuple[int, ...] | None = None
    percentiles: tuple[float, float] = (2.0, 98.0)  # a uint8 RGB model's stretch of bands that are not uint8
    value_range: tuple[float, float] | None = None  # a fixed stretch instead (MIN, MAX)
    scaling: BandScaling = UINT8_RGB  # the model's bands, their type and scaling
    stretch_given: bool = False  # --percentiles or --value-range was given (refused for a raw-value model)

    @property
    def reads_rgb(self) -> bool:
        """Whether the model takes uint8 RGB, which any raster is made into (else: its own bands, raw)."""
        return reads_rgb(self.scaling)


def reads_rgb(scaling: BandScaling) -> bool:
    """A model of bands 1, 2, 3 of uint8 images: rasters are read as RGB for it, stretched where not uint8."""
    return scaling.dtype == "uint8" and scaling.bands == RGB


class Scene:
    """An image to map: its size, georeference, and its pixels a strip of rows at a time."""

    path: Path | Source
    height: int
    width: int
    crs: CRS | None = None
    transform: Affine = Affine.identity()
    is_raster = False  # read through GDAL (written back as GeoTIFF), not a JPEG/PNG
    block_rows = 1  # rows of the storage blocks: reads aligned to them decode each block once

    def read_rows(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows top..bottom-1: (h x W x bands, the model's: uint8 RGB, or raw values of its type; h x W bool:
        pixel has data)."""
        raise NotImplementedError


class ImageScene(ArrayRows, Scene):
    """A JPEG or PNG, decoded whole by Pillow (its bands, for a model of others than RGB): every pixel has data.
    Its path is what messages name: a remote one's Source where the pixels came from a temporary copy."""

    def __init__(self, path: Path | Source, image: np.ndarray) -> None:
        super().__init__(image)
        self.path = path


def to_uint8(values: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """One band as uint8: as it is (value_range None), or stretched from value_range to 0..255."""
    if value_range is None:
        return values
    low, high = value_range
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low) if high > low else 0.0)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(scaled, 0, 255, out=scaled)
    return np.rint(scaled).astype(np.uint8)


class RasterScene(Scene):
    """A raster read through rasterio a strip at a time: its chosen bands made uint8 RGB (`value_ranges` per band),
    or (`value_ranges` None) as they are, raw values of their type (NaN and infinities as 0, pixels without data)."""

    is_raster = True

    def __init__(
        self,
        path: Path | Source,
        dataset,
        bands: tuple[int, ...],
        value_ranges: Sequence[tuple[float, float] | None] | None,
    ) -> None:
        self.path, self.dataset, self.bands = path, dataset, bands
        self.value_ranges = None if value_ranges is None else tuple(value_ranges)
        self.height, self.width = dataset.height, dataset.width
        check_georeference(path, dataset)
        self.crs, self.transform = dataset.crs, dataset.transform
        self.block_rows = dataset.block_shapes[bands[0] - 1][0]
        self.all_valid = all(MaskFlags.all_valid in dataset.mask_flag_enums[band - 1] for band in bands)
        self.floating = any(np.issubdtype(np.dtype(dataset.dtypes[band - 1]), np.floating) for band in bands)

    def valid(self, data: np.ndarray, **where) -> np.ndarray:
        """Pixels of `data` (bands x h x w, read with the same `where`) that have data."""
        if self.all_valid:
            valid = np.ones(data.shape[1:], dtype=bool)
        else:
            valid = (self.dataset.read_masks(self.bands, **where) != 0).any(axis=0)
        if self.floating:
            valid &= np.isfinite(data).all(axis=0)
        return valid

    def read_rows(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        window = Window(0, top, self.width, bottom - top)
        try:
            data = self.dataset.read(self.bands, window=window)
            valid = self.valid(data, window=window)
        except (RasterioError, CPLE_BaseError) as error:
            raise read_error(self.path, error) from None
        if self.value_ranges is None:  # raw values, as the model takes them
            image = np.ascontiguousarray(np.moveaxis(data, 0, -1))
            if self.floating:
                image[~np.isfinite(image)] = 0
            return image, valid
        rgb = np.empty((bottom - top, self.width, 3), dtype=np.uint8)
        for channel in range(3):
            rgb[..., channel] = to_uint8(data[channel], self.value_ranges[channel])
        return rgb, valid

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """About SAMPLE_PIXELS evenly spaced pixels of the chosen bands (GDAL's nearest-neighbour
        decimation; an overview where the file has one), and which of them have data."""
        step = max(1, math.ceil(math.sqrt(self.height * self.width / SAMPLE_PIXELS)))
        shape = (len(self.bands), math.ceil(self.height / step), math.ceil(self.width / step))
        where = {"out_shape": shape, "resampling": Resampling.nearest}
        try:
            data = self.dataset.read(self.bands, **where)
            return data, self.valid(data, **where)
        except (RasterioError, CPLE_BaseError) as error:
            raise read_error(self.path, error) from None


def band_list(bands: Sequence[int]) -> str:
    return ",".join(map(str, bands))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def require_bands_exist(path: Path | Source, bands: Sequence[int], count: int, what: str) -> None:
    """Every band of `bands` (`what` names where they come from) is one of the raster's `count` bands."""
    missing = [band for band in bands if not 1 <= band <= count]
    if missing:
        raise PipelineError(f"{path}: {what}: the raster has {plural(count, 'band')}, so no band {missing[0]}")


def choose_bands(
    path: Path | Source, dataset, bands: tuple[int, ...] | None, scaling: BandScaling = UINT8_RGB
) -> tuple[tuple[int, ...], str | None]:
    """The bands read for a model of `scaling` (as R, G, B for a uint8 RGB model), and a note where bands are left
    out without --bands; PipelineError if impossible."""
    count = dataset.count
    if bands is not None:
        require_bands_exist(path, bands, count, f"--bands {band_list(bands)}")
        if len(bands) != scaling.channels:
            takes = "R,G,B" if reads_rgb(scaling) else f"bands {band_list(scaling.bands)} when it was trained"
            raise PipelineError(
                f"{path}: --bands {band_list(bands)}: the model takes {plural(scaling.channels, 'band')} ({takes})"
            )
        return bands, None
    if not reads_rgb(scaling):
        what = f"the model reads bands {band_list(scaling.bands)} (its data.bands; --bands picks others)"
        require_bands_exist(path, scaling.bands, count, what)
        return scaling.bands, None
    if count < 3:
        raise PipelineError(
            f"{path}: raster has {count} band{'s' if count != 1 else ''}; RGB needs 3 (to read a "
            "grey band as RGB, give --bands 1,1,1)"
        )
    interpretation = list(dataset.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    red, green, blue = (
        (interpretation.index(colour) + 1 for colour in wanted)
        if all(colour in interpretation for colour in wanted)
        else (1, 2, 3)
    )
    chosen = (red, green, blue)
    note = None
    # an alpha band is not left out: GDAL reads it as the mask of pixels without data (no prediction)
    rest = [
        band for band in range(1, count + 1) if band not in chosen and interpretation[band - 1] != ColorInterp.alpha
    ]
    if rest:
        note = (
            f"{path}: raster has {count} bands; bands {','.join(map(str, chosen))} are read as RGB and the rest "
            "left out (--bands picks others)"
        )
    return chosen, note


def check_dtypes(path: Path | Source, dataset, bands: Sequence[int], scaling: BandScaling | None = None) -> None:
    """The bands can be read: integer or float, and for a model of raw values (not uint8 RGB) of its type."""
    for band in bands:
        dtype = np.dtype(dataset.dtypes[band - 1])
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise PipelineError(f"{path}: band {band} is of type {dtype}; only integer and float bands can be read")
        if scaling is not None and not reads_rgb(scaling) and dtype != np.dtype(scaling.dtype):
            raise PipelineError(
                f"{path}: band {band} is {dtype}, but the model takes {scaling.dtype} bands (the type it was "
                f"trained on); a raster of the same values as {scaling.dtype} is read (gdal_translate -ot)"
            )


def image_bands(path: Path | Source, image: np.ndarray, options: ReadOptions) -> np.ndarray:
    """A decoded JPEG or PNG (uint8 RGB) as the model's bands: itself for a uint8 RGB model, else its bands
    `options.bands` (or the model's) of 1 (red), 2 (green), 3 (blue), for a model of uint8 bands."""
    if options.reads_rgb:
        return image
    scaling = options.scaling
    if scaling.dtype != "uint8":
        raise PipelineError(f"{path}: a JPEG or PNG holds uint8 bands, but the model takes {scaling.dtype} bands")
    bands = options.bands if options.bands is not None else scaling.bands
    given = "--bands" if options.bands is not None else "the model reads bands"
    missing = [band for band in bands if not 1 <= band <= 3]
    if missing:
        raise PipelineError(f"{path}: {given} {band_list(bands)}: a JPEG or PNG has 3 bands, so no band {missing[0]}")
    if len(bands) != scaling.channels:
        raise PipelineError(
            f"{path}: --bands {band_list(bands)}: the model takes {plural(scaling.channels, 'band')} "
            f"(bands {band_list(scaling.bands)} when it was trained)"
        )
    return np.ascontiguousarray(image[..., [band - 1 for band in bands]])


def value_ranges(scene: RasterScene, options: ReadOptions) -> list[tuple[float, float] | None]:
    """Per chosen band: None for uint8 (read as it is), else the (low, high) its stretch maps to 0..255."""
    is_uint8 = [scene.dataset.dtypes[band - 1] == "uint8" for band in scene.bands]
    if all(is_uint8):
        return [None, None, None]
    if options.value_range is not None:
        return [None if plain else options.value_range for plain in is_uint8]
    data, valid = scene.sample()
    ranges: list[tuple[float, float] | None] = []
    for channel, plain in enumerate(is_uint8):
        values = data[channel][valid]
        if plain:
            ranges.append(None)
        elif values.size == 0:
            ranges.append((0.0, 1.0))  # nothing has data: nothing will be predicted either
        else:
            low, high = np.percentile(values.astype(np.float64), options.percentiles)
            ranges.append((float(low), float(high)))
    if not valid.any():
        warn(f"{scene.path}: no pixel of the sample has data (all nodata or masked)")
    return ranges


def check_scene(path: Path | Source, options: ReadOptions, model_known: bool = True) -> bool:
    """Refuse, before any prediction starts, an input that cannot be mapped: not a readable file or object, too
    small to predict, a raster whose bands or band types cannot be read, a JPEG or PNG whose header imageio
    refuses (its pixels are checked as they are decoded). Returns whether it is read as a raster (else as a
    JPEG or PNG). A remote source's header is read in place by GDAL, a JPEG's or PNG's too.

    Without `model_known` (paths are checked before the model is chosen) only what any model needs is checked:
    given --bands exist and are of a type that can be read; with it, also the model's band count and type."""
    if isinstance(path, Source) and path.is_local:
        path = path.local_path
    if isinstance(path, Path) and check_file(path):
        with open_image(path, warn=False) as image:  # the read for mapping warns of a dropped band
            (width, height), jpeg_or_png = image.size, True
    else:
        with gdal_env(), path.open_raster() if isinstance(path, Source) else open_raster(path) as dataset:
            jpeg_or_png = isinstance(path, Source) and path.is_jpeg_or_png()  # decoded from a copy when mapped
            if not jpeg_or_png:
                check_bands(path, dataset, options, model_known)
                check_georeference(path, dataset)
                check_sources(path, dataset)
            width, height = dataset.width, dataset.height
    if jpeg_or_png and model_known:
        image_bands(path, np.zeros((1, 1, 3), dtype=np.uint8), options)
    reason = too_small_to_predict(height, width)
    if reason is not None:
        raise PipelineError(f"{path}: {reason}")
    return not jpeg_or_png


def check_georeference(path: Path | Source, dataset) -> None:
    """Refuse a raster placed on the ground only by ground control points: its maps would carry no place and no
    CRS, and areas from its pixel grid would be wrong. Warped onto a CRS (gdalwarp), it maps with both."""
    reason = gcp_only_georeference(dataset)
    if reason is not None:
        raise PipelineError(f"{path}: {reason} and map that; its maps cannot carry GCPs")


def check_file(path: Path) -> bool:
    """Refuse a path that is not a readable file; whether it is a JPEG or PNG."""
    if path.is_dir():
        raise PipelineError(f"{path}: is a folder, not an image file")
    if not path.exists():
        raise PipelineError(f"{path}: file not found")
    if not path.is_file():
        raise PipelineError(f"{path}: not a regular file")
    try:
        return is_jpeg_or_png(path)
    except OSError as error:
        raise PipelineError(f"{path}: cannot read ({error.strerror})") from None


def check_bands(path: Path | Source, dataset, options: ReadOptions, model_known: bool) -> None:
    """Refuse bands that cannot be read: the model's (`model_known`), else only given --bands."""
    if model_known:
        bands, _ = choose_bands(path, dataset, options.bands, options.scaling)
        check_dtypes(path, dataset, bands, options.scaling)
    elif options.bands is not None:
        require_bands_exist(path, options.bands, dataset.count, f"--bands {band_list(options.bands)}")
        check_dtypes(path, dataset, options.bands)


@contextmanager
def open_scene(path: Path | Source, options: ReadOptions, shown_as: Path | Source | None = None) -> Iterator[Scene]:
    """The scene at `path`, ready to read: a raster through rasterio, a JPEG or PNG through Pillow; the bands the
    model of `options.scaling` takes. A Source's raster is opened as it says (a remote one in place). A JPEG or
    PNG read from a stand-in (a remote one's temporary copy) is named `shown_as` in messages and reports."""
    path = path if isinstance(path, Source) else Path(path)
    if isinstance(path, Path) and path.is_file() and is_jpeg_or_png(path):
        shown = shown_as or path
        yield ImageScene(shown, image_bands(shown, read_rgb(path), options))
        return
    with path.open_raster() if isinstance(path, Source) else open_raster(path) as dataset:
        bands, note = choose_bands(path, dataset, options.bands, options.scaling)
        check_dtypes(path, dataset, bands, options.scaling)
        if note:
            warn(note)
        if options.reads_rgb:
            scene = RasterScene(path, dataset, bands, [None, None, None])
            scene.value_ranges = tuple(value_ranges(scene, options))
        else:
            scene = RasterScene(path, dataset, bands, None)  # raw values: the model scales them itself
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield scene


@contextmanager
def scratch_file(final: Path) -> Iterator[Path]:
    """A path beside `final`, deleted on leaving, named like outputs' staging files
    (`.<name>.<pid>.<random>.tmp`) so that the next run removes one that a killed run left behind."""
    path = _staging_name(final, secrets.token_hex(8), STAGING_SUFFIX)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


class BlockRowWriter:
    """A uint8 tiled GeoTIFF of one band per description (one band without any) written top to bottom, a row of
    blocks at a time.

    Rows come in strips of any height; they are held until a whole row of blocks is complete and
    then written, so GDAL writes each block once and the writer holds at most one row of blocks.
    With `mask`, pixels without data are marked by an internal mask band (given with each strip) instead of a
    nodata value: for rasters where every value is a valid one.
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        crs,
        transform: Affine,
        nodata: int | None,
        blocksize: int = BLOCKSIZE,
        colormap: dict | None = None,
        tags: dict | None = None,
        descriptions: Sequence[str] = (),
        mask: bool = False,
    ) -> None:
        self.path, self.width, self.height, self.blocksize = path, width, height, blocksize
        count = max(1, len(descriptions))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a JPEG's or PNG's outputs have no georeference
            self.dataset = rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=width,
                height=height,
                count=count,
                dtype="uint8",
                crs=crs,
                transform=transform,
                nodata=nodata,
                tiled=True,
                blockxsize=blocksize,
                blockysize=blocksize,
                compress="deflate",
                zlevel=1,
                bigtiff="if_safer",
            )
        if colormap:
            self.dataset.write_colormap(1, colormap)
        if tags:
            self.dataset.update_tags(**tags)
        for band, description in enumerate(descriptions, start=1):
            self.dataset.set_band_description(band, description)
        self.pending = np.empty((count, min(blocksize, height), width), dtype=np.uint8)
        self.pending_mask = np.empty(self.pending.shape[1:], dtype=bool) if mask else None
        self.filled = 0  # rows of `pending` holding data
        self.top = 0  # first row of `pending` in the raster

    def write_rows(self, rows: np.ndarray, has_data: np.ndarray | None = None) -> None:
        """A strip's (h, W) rows of a single band or (bands, h, W), and for a masked raster its (h, W) bool has
        data."""
        rows = rows.reshape(len(self.pending), -1, self.width)
        offset = 0
        while offset < rows.shape[1]:
            block_rows = min(self.blocksize, self.height - self.top)
            take = min(block_rows - self.filled, rows.shape[1] - offset)
            self.pending[:, self.filled : self.filled + take] = rows[:, offset : offset + take]
            if self.pending_mask is not None:
                assert has_data is not None, "a masked raster's rows come with their has-data mask"
                self.pending_mask[self.filled : self.filled + take] = has_data[offset : offset + take]
            self.filled += take
            offset += take
            if self.filled == block_rows:
                self._write_block_row(block_rows)

    def _write_block_row(self, block_rows: int) -> None:
        window = Window(0, self.top, self.width, block_rows)
        self.dataset.write(self.pending[:, :block_rows], window=window)
        if self.pending_mask is not None:
            self.dataset.write_mask(self.pending_mask[:block_rows], window=window)
        self.top += block_rows
        self.filled = 0

    @property
    def complete(self) -> bool:
        return self.top == self.height

    def close(self) -> None:
        self.dataset.close()


def cog_driver_available() -> bool:
    with rasterio.Env() as env:
        return "COG" in env.drivers()


def write_cloud_optimized(source: Path, destination: Path, resampling: str, blocksize: int = BLOCKSIZE) -> None:
    """Copy a tiled GeoTIFF into a Cloud-Optimized GeoTIFF with overviews (made with `resampling`)."""
    options = {"compress": "DEFLATE", "bigtiff": "IF_SAFER", "num_threads": "ALL_CPUS"}
    if cog_driver_available():
        rasterio.shutil.copy(
            source, destination, driver="COG", blocksize=blocksize, overview_resampling=resampling, **options
        )
        return
    # GDAL before 3.1: the layout the COG driver makes, by hand (overviews first, then a copy of them)
    with rasterio.open(source, "r+") as dataset:
        factors: list[int] = []
        side = max(dataset.width, dataset.height)
        while side > blocksize:
            factors.append(2 ** (len(factors) + 1))
            side //= 2
        if factors:
            dataset.build_overviews(factors, Resampling[resampling.lower()])
    rasterio.shutil.copy(
        source,
        destination,
        driver="GTiff",
        tiled=True,
        blockxsize=blocksize,
        blockysize=blocksize,
        copy_src_overviews=True,
        **options,
    )


def class_colormap(table: ClassTable) -> dict[int, tuple[int, ...]]:
    """The colour table embedded in class maps: each class's colour; no prediction (255) transparent."""
    colormap = {index: (*map(int, colour), 255) for index, colour in enumerate(table.colours)}
    colormap[NODATA_CLASS] = (0, 0, 0, 0)
    return colormap


def qgis_style(table: ClassTable) -> str:
    """A QGIS layer style (.qml) for a class map: QGIS loads `<name>.qml` beside `<name>.tif` by itself,
    and the legend then names the classes (the colour table alone gives their numbers)."""
    entries = "\n".join(
        f'        <paletteEntry value="{index}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" label={quoteattr(name)}/>'
        for index, (name, (r, g, b)) in enumerate(zip(table.names, table.colours.tolist()))
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" invertColors="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def class_table_of(path: Path) -> ClassTable:
    """The class table a class map carries: names from its CLASS_NAMES tag, colours from its colour table."""
    with rasterio.open(path) as dataset:
        names = dataset.tags().get("CLASS_NAMES")
        if not names:
            raise PipelineError(f"{path}: not a class map of this project (no CLASS_NAMES in its metadata)")
        try:
            colormap = dataset.colormap(1)
        except ValueError:
            raise PipelineError(f"{path}: class map has no colour table") from None
    classes = tuple(names.split(","))
    colours = np.array([colormap[index][:3] for index in range(len(classes))], dtype=np.uint8)
    return ClassTable(classes, colours)
