"""A stratified random sample of a class map's pixels for area estimation, and the labelled sample read back.

The map is read a strip of rows at a time, twice: first to count each stratum's pixels and ground area, then
to find the pixels drawn. Between the two passes each stratum's points are drawn as ranks among its pixels
(the k-th pixel of the stratum in row order), numpy's sampling without replacement, which for a small share
of a large stratum keeps only the ranks drawn: no pass holds more than one strip of the map, whatever its size.
A point is a pixel's centre, never a pixel without a class. The same map, strata, sizes and seed give the
same points.

What is sampled is a `CodeRaster`: each pixel's code, a class of one map (`class_map_codes`), or a from-to
transition of two (landcover.region.change.transition_codes). Strata are codes, or codes merged (`--merge`).
The sample is written as a CSV and, where pyogrio is installed, a GeoPackage, with a QGIS style that draws the
points by map class and offers the class names for the `reference` column; beside them the design (JSON), which
the assessment reads: the map's sha256, the strata with their pixels and hectares, the sizes, the seed and every
point.
"""

from __future__ import annotations

import csv
import json
import math
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points
from rasterio.windows import Window
from tqdm import tqdm

from landcover.data.palette import ClassTable
from landcover.evaluation.area_estimation import ALLOCATIONS, cochran_sample_size
from landcover.geo.areas import SQUARE_METRES_PER_HECTARE, PixelAreas, pixel_areas
from landcover.geo.georaster import class_table_of, gdal_env
from landcover.io.digests import file_sha256
from landcover.io.errors import PipelineError
from landcover.io.rasters import check_sources, read_window

DESIGN_FORMAT = "landcover-sample design 1"
# A point its labeller cannot tell: counted as unlabelled ("unknown" is a DeepGlobe class, so not that)
CANNOT_TELL = "cannot-tell"
POINT_COLUMNS = ("point_id", "x", "y", "lon", "lat", "stratum", "map_class", "reference")
LAYER = "sample"
# What landcover-sample writes into its --output, by role; the labelling viewer finds the CSV beside the design.
SAMPLE_FILES = {"csv": "sample.csv", "gpkg": "sample.gpkg", "qml": "sample.qml", "design": "sample_design.json"}
STRIP_PIXELS = 1 << 22  # pixels per strip of rows read at a time
# Expected user's accuracy of a stratum where none is given: a map class, or a stratum of change
EXPECTED_CLASS_ACCURACY = 0.9
EXPECTED_CHANGE_ACCURACY = 0.7
COORDINATE_TOLERANCE = 1e-6  # of a pixel: a labelled point this close to its design's is the same point


@dataclass(frozen=True)
class MapFile:
    role: str  # "map", or "before" and "after" for change
    path: Path


@dataclass
class CodeRaster:
    """A raster of codes on one grid, read a strip at a time: each code's name, colour and whether it is change."""

    names: tuple[str, ...]
    colours: np.ndarray  # (codes, 3) uint8
    changes: np.ndarray  # (codes,) bool: the code is a change between two dates
    crs: CRS
    transform: Affine
    width: int
    height: int
    maps: tuple[MapFile, ...]
    read: Callable[[int, int], np.ndarray]  # (top, bottom) -> int16 codes of those rows, -1 where no class


def strips(height: int, width: int) -> Iterator[tuple[int, int]]:
    rows = max(1, min(height, STRIP_PIXELS // max(width, 1)))
    for top in range(0, height, rows):
        yield top, min(height, top + rows)


def open_checked(path: Path):
    if not Path(path).is_file():
        raise PipelineError(f"{path}: file not found")
    try:
        dataset = rasterio.open(path)
    except rasterio.RasterioError as error:
        raise PipelineError(f"{path}: cannot read raster ({error})") from None
    check_sources(path, dataset)
    if dataset.crs is None:
        dataset.close()
        raise PipelineError(f"{path}: the map has no georeference (no CRS), so its points have no place on the ground")
    return dataset


@contextmanager
def class_map_codes(path: Path, table: ClassTable | None = None) -> Iterator[CodeRaster]:
    """A class map of this project (a scene's COG, a region's mosaic) as codes: its classes (`table`: those its
    CLASS_NAMES and colour table give, or another's, e.g. a change map's codes)."""
    with gdal_env():
        dataset = open_checked(path)
        with dataset:
            table = table or class_table_of(path)
            classes = len(table)

            def read(top: int, bottom: int) -> np.ndarray:
                values = read_window(dataset, Path(path), 1, Window(0, top, dataset.width, bottom - top))
                values = values.astype(np.int16)
                values[values >= classes] = -1
                return values

            changes = np.array(["->" in name for name in table.names], dtype=bool)
            yield CodeRaster(
                table.names,
                np.asarray(table.colours),
                changes,
                dataset.crs,
                dataset.transform,
                dataset.width,
                dataset.height,
                (MapFile("map", Path(path)),),
                read,
            )


def ground_areas(raster: CodeRaster) -> PixelAreas:
    areas, reason = pixel_areas(raster.crs, raster.transform, raster.width, raster.height, None)
    if areas is None:
        raise PipelineError(f"{raster.maps[0].path}: its pixels have no ground areas: {reason}")
    return areas


def count_codes(raster: CodeRaster, areas: PixelAreas, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and hectares of each code, the map streamed a strip of rows at a time."""
    codes = len(raster.names)
    pixels = np.zeros(codes, dtype=np.int64)
    square_metres = np.zeros(codes, dtype=np.float64)
    for top, bottom in tqdm(
        list(strips(raster.height, raster.width)), desc="count", unit="strip", disable=not progress
    ):
        values = raster.read(top, bottom)
        valid = values >= 0
        pixels += np.bincount(values[valid], minlength=codes)
        if areas.pixel_area_m2 is None:
            square_metres += np.bincount(values[valid], weights=areas.strip_m2(top, bottom)[valid], minlength=codes)
    if areas.pixel_area_m2 is not None:
        return pixels, pixels * areas.pixel_area_m2 / SQUARE_METRES_PER_HECTARE
    return pixels, square_metres / SQUARE_METRES_PER_HECTARE


@dataclass(frozen=True)
class Strata:
    """Each stratum's name and the codes it holds; `of_code` maps each code to its stratum (-1: none)."""

    names: tuple[str, ...]
    codes: tuple[tuple[int, ...], ...]

    def of_code(self, code_count: int) -> np.ndarray:
        lookup = np.full(code_count + 1, -1, dtype=np.int32)  # the last entry: -1, no class
        for index, codes in enumerate(self.codes):
            lookup[list(codes)] = index
        return lookup


def normalised(name: str) -> str:
    """A code's name as merges may spell it: `forest->urban` and `forest -> urban` alike."""
    return "->".join(part.strip() for part in name.split("->"))


def parse_merges(texts: Sequence[str], names: Sequence[str]) -> dict[str, list[int]]:
    """--merge "NAME=CODE,CODE,..." (each one stratum) as {stratum: codes}, checked against the map's codes."""
    index = {normalised(name): code for code, name in enumerate(names)}
    merged: dict[str, list[int]] = {}
    taken: dict[int, str] = {}
    for text in texts:
        stratum, equals, members = text.partition("=")
        stratum = stratum.strip()
        parts = [normalised(part) for part in members.split(",") if part.strip()]
        if not equals or not stratum or not parts:
            raise PipelineError(f"--merge {text!r}: expected NAME=CLASS,CLASS,... (e.g. stable=forest->forest,...)")
        if stratum in merged:
            raise PipelineError(f"--merge: stratum {stratum!r} is given twice")
        codes = []
        for part in parts:
            if part not in index:
                raise PipelineError(f"--merge {stratum}: {part!r} is none of the map's classes ({', '.join(names)})")
            code = index[part]
            if code in taken:
                raise PipelineError(f"--merge: {names[code]!r} is in two strata ({taken[code]} and {stratum})")
            taken[code] = stratum
            codes.append(code)
        merged[stratum] = codes
    return merged


def make_strata(names: Sequence[str], pixels: np.ndarray, merges: dict[str, list[int]]) -> Strata:
    """Strata of the codes that have pixels: each merged group one stratum, every other code its own, in the
    order of their first code."""
    in_group = {code: stratum for stratum, codes in merges.items() for code in codes}
    clash = [stratum for stratum in merges if stratum in names and in_group.get(names.index(stratum)) != stratum]
    if clash:
        raise PipelineError(f"--merge: {clash[0]!r} is a class of the map; name the merged stratum otherwise")
    groups: dict[str, list[int]] = {}
    for code, name in enumerate(names):
        if pixels[code] > 0:
            groups.setdefault(in_group.get(code, name), []).append(code)
    return Strata(tuple(groups), tuple(tuple(codes) for codes in groups.values()))


def parse_stratum_values(text: str, strata: Sequence[str], what: str, kind: Callable[[str], float]) -> dict:
    """ "NAME=VALUE,NAME=VALUE" as {stratum: value}, every name a stratum."""
    values = {}
    for part in (part for part in text.split(",") if part.strip()):
        name, equals, value = part.rpartition("=")
        name = normalised(name)
        if not equals or name not in strata:
            raise PipelineError(f"{what} {part!r}: expected STRATUM=VALUE, STRATUM one of {', '.join(strata)}")
        try:
            values[name] = kind(value)
        except ValueError:
            raise PipelineError(f"{what} {part!r}: {value!r} is not a number") from None
    return values


def expected_accuracies(raster: CodeRaster, strata: Strata, given: dict[str, float]) -> np.ndarray:
    """Each stratum's expected user's accuracy: given, or EXPECTED_CHANGE_ACCURACY for a stratum holding change
    and EXPECTED_CLASS_ACCURACY for the others."""
    defaults = [
        EXPECTED_CHANGE_ACCURACY if raster.changes[list(codes)].any() else EXPECTED_CLASS_ACCURACY
        for codes in strata.codes
    ]
    values = np.array([given.get(name, default) for name, default in zip(strata.names, defaults)])
    for name, value in given.items():
        if not 0 < value < 1:
            raise PipelineError(f"--expected-accuracy {name}={value:g}: must be between 0 and 1")
    return values


def draw_pixels(
    raster: CodeRaster, strata: Strata, stratum_pixels: np.ndarray, sizes: np.ndarray, seed: int, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, strata) of the points: `sizes[h]` pixels of stratum h drawn at random without
    replacement, as ranks among its pixels in row order, found in a second pass over the map."""
    rng = np.random.default_rng(seed)
    ranks = [
        np.sort(rng.choice(int(count), size=int(size), replace=False)) for count, size in zip(stratum_pixels, sizes)
    ]
    lookup = strata.of_code(len(raster.names))
    seen = np.zeros(len(ranks), dtype=np.int64)  # each stratum's pixels in the strips read so far
    rows, columns, labels = [], [], []
    bar = tqdm(list(strips(raster.height, raster.width)), desc="draw", unit="strip", disable=not progress)
    for top, bottom in bar:
        of_stratum = lookup[raster.read(top, bottom)].ravel()  # code -1 looks up the last entry: no stratum
        for h, wanted in enumerate(ranks):
            here = np.flatnonzero(of_stratum == h)
            low, high = np.searchsorted(wanted, [seen[h], seen[h] + len(here)])
            positions = here[wanted[low:high] - seen[h]]
            rows.append(top + positions // raster.width)
            columns.append(positions % raster.width)
            labels.append(np.full(len(positions), h))
            seen[h] += len(here)
    if not np.array_equal(seen, stratum_pixels):
        raise RuntimeError("the map's strata changed between the two passes")
    rows_, columns_, strata_ = (np.concatenate(parts).astype(np.int64) for parts in (rows, columns, labels))
    order = np.lexsort((columns_, rows_))  # points in row order, ids from the top of the map
    return rows_[order], columns_[order], strata_[order]


def pixel_centres(transform: Affine, rows: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = transform
    x = t.a * (columns + 0.5) + t.b * (rows + 0.5) + t.c
    y = t.d * (columns + 0.5) + t.e * (rows + 0.5) + t.f
    return x, y


def longitudes_latitudes(crs, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) == 0:
        return x, y
    lon, lat = transform_points(crs, "EPSG:4326", x.tolist(), y.tolist())
    return np.asarray(lon), np.asarray(lat)


def map_codes_at(raster: CodeRaster, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The code of each point's pixel, read a strip at a time (points in row order)."""
    codes = np.empty(len(rows), dtype=np.int64)
    for top, bottom in strips(raster.height, raster.width):
        inside = (rows >= top) & (rows < bottom)
        if inside.any():
            strip = raster.read(top, bottom)
            codes[inside] = strip[rows[inside] - top, columns[inside]]
    return codes


# --- writing the sample -------------------------------------------------------------------------------------


def point_wkb(x: float, y: float) -> bytes:
    return struct.pack("<BIdd", 1, 1, x, y)


def write_points_csv(path: Path, points: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(POINT_COLUMNS)
        for point in points:
            writer.writerow([point[column] if column != "reference" else "" for column in POINT_COLUMNS])


def write_points_geopackage(path: Path, points: list[dict], crs) -> None:
    from pyogrio.raw import write

    columns = {name: [point[name] for point in points] for name in POINT_COLUMNS if name != "reference"}
    with warnings.catch_warnings():
        # The staging file's name ends in .tmp until it is renamed to .gpkg; GDAL would warn about that.
        warnings.filterwarnings("ignore", message="The filename extension should be", category=RuntimeWarning)
        write(
            str(path),
            np.array([point_wkb(p["x"], p["y"]) for p in points], dtype=object),
            [
                np.array(columns["point_id"], dtype=np.int64),
                np.array(columns["x"], dtype=np.float64),
                np.array(columns["y"], dtype=np.float64),
                np.array(columns["lon"], dtype=np.float64),
                np.array(columns["lat"], dtype=np.float64),
                np.array(columns["stratum"], dtype=object),
                np.array(columns["map_class"], dtype=object),
                np.array([""] * len(points), dtype=object),
            ],
            list(POINT_COLUMNS),
            layer=LAYER,
            driver="GPKG",
            geometry_type="Point",
            crs=crs.to_wkt(),
        )


def points_style(names: Sequence[str], colours: np.ndarray) -> str:
    """A QGIS vector style (.qml): points drawn by `map_class` in the map's colours, and the `reference` field
    edited from a list of the class names (and CANNOT_TELL), so that a labeller picks rather than types."""
    categories, symbols, options = [], [], []
    for index, (name, colour) in enumerate(zip(names, np.asarray(colours).tolist())):
        r, g, b = colour
        categories.append(
            f'      <category render="true" symbol="{index}" value={quoteattr(name)} label={quoteattr(name)}/>'
        )
        symbols.append(
            f'      <symbol type="marker" name="{index}" alpha="1" clip_to_extent="1" force_rhr="0">\n'
            f'        <layer class="SimpleMarker" enabled="1" locked="0" pass="0">\n'
            f'          <Option type="Map">\n'
            f'            <Option type="QString" name="color" value="{r},{g},{b},255"/>\n'
            f'            <Option type="QString" name="name" value="circle"/>\n'
            f'            <Option type="QString" name="outline_color" value="0,0,0,255"/>\n'
            f'            <Option type="QString" name="size" value="3"/>\n'
            f"          </Option>\n"
            f"        </layer>\n"
            f"      </symbol>"
        )
    for name in (*names, CANNOT_TELL):
        options.append(f'              <Option type="Map"><Option type="QString" name={quoteattr(name)} '
                       f"value={quoteattr(name)}/></Option>")  # fmt: skip
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="Symbology|Fields|Forms">
  <renderer-v2 type="categorizedSymbol" attr="map_class" symbollevels="0" enableorderby="0" forceraster="0">
    <categories>
{chr(10).join(categories)}
    </categories>
    <symbols>
{chr(10).join(symbols)}
    </symbols>
  </renderer-v2>
  <fieldConfiguration>
    <field name="reference" configurationFlags="None">
      <editWidget type="ValueMap">
        <config>
          <Option type="Map">
            <Option type="List" name="map">
{chr(10).join(options)}
            </Option>
          </Option>
        </config>
      </editWidget>
    </field>
  </fieldConfiguration>
  <aliases>
    <alias field="reference" index="7" name={quoteattr("reference (" + escape(CANNOT_TELL) + " if unsure)")}/>
  </aliases>
</qgis>
"""


# --- reading the labelled sample ----------------------------------------------------------------------------


def read_design(path: Path) -> dict:
    if not Path(path).is_file():
        raise PipelineError(f"{path}: file not found")
    try:
        design = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PipelineError(f"{path}: not a sample design (not JSON: {error})") from None
    if not isinstance(design, dict) or design.get("format") != DESIGN_FORMAT:
        raise PipelineError(f"{path}: not a sample design of landcover-sample (no format {DESIGN_FORMAT!r})")
    return design


def check_maps_unchanged(design: dict, design_path: Path) -> None:
    """Each map of the design still has the bytes it was sampled from (a relative path is the design's folder's)."""
    for entry in design["maps"]:
        path = Path(entry["path"])
        if not path.is_absolute():
            path = Path(design_path).parent / path
        if not path.is_file():
            raise PipelineError(f"{path}: the design's {entry['role']} map is not there; the sample cannot be checked")
        if file_sha256(path) != entry["sha256"]:
            raise PipelineError(
                f"{path}: its sha256 is not the design's: the sample was drawn from another map (or this one changed)"
            )


def read_labelled_points(path: Path) -> list[dict]:
    """The sample's rows (point_id, x, y, reference), from the CSV or the GeoPackage."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    if path.suffix.lower() == ".gpkg":
        try:
            from pyogrio.raw import read
        except ImportError:
            raise PipelineError(
                f"{path}: reading GeoPackages needs the optional package pyogrio; install it with "
                "`make install-vector`, or give the CSV"
            ) from None
        try:
            meta, _, _, fields = read(str(path), layer=LAYER, read_geometry=False)
        except Exception as error:  # pyogrio's DataSourceError, DataLayerError
            raise PipelineError(f"{path}: cannot read the sample's layer {LAYER!r} ({error})") from None
        columns = dict(zip(meta["fields"], fields))
    else:
        try:
            with open(path, newline="", encoding="utf-8-sig") as file:
                rows = list(csv.DictReader(file))
        except UnicodeDecodeError:
            raise PipelineError(f"{path}: not UTF-8 text; save the sample as UTF-8 CSV") from None
        columns = {name: [row.get(name) for row in rows] for name in (rows[0].keys() if rows else POINT_COLUMNS)}
    missing = [name for name in ("point_id", "x", "y", "reference") if name not in columns]
    if missing:
        raise PipelineError(f"{path}: the sample has no column {missing[0]!r} (it needs point_id, x, y, reference)")
    points = []
    for index in range(len(columns["point_id"])):
        try:
            point_id = int(columns["point_id"][index])
            x, y = float(columns["x"][index]), float(columns["y"][index])
        except (TypeError, ValueError):
            raise PipelineError(f"{path}: row {index + 1}: point_id, x and y must be numbers") from None
        reference = columns["reference"][index]
        reference = "" if reference is None or (isinstance(reference, float) and math.isnan(reference)) else reference
        points.append({"point_id": point_id, "x": x, "y": y, "reference": str(reference).strip()})
    return points


# --- the design -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleOptions:
    """How the sample is designed (landcover-sample's flags)."""

    target_standard_error: float = 0.01  # of overall accuracy, for the total size (Olofsson et al. 2014 eq. 13)
    size: int | None = None  # the total, given instead
    per_stratum: str | None = None  # "STRATUM=N,...": every stratum's size, given instead
    minimum: int = 50
    allocation: str = "proportional"  # a name of area_estimation.ALLOCATIONS
    expected_accuracy: str | None = None  # "STRATUM=U,...": expected user's accuracies besides the defaults
    merges: tuple[str, ...] = ()
    seed: int = 0


def stratum_sizes(
    options: SampleOptions, strata: Strata, pixels: np.ndarray, weights: np.ndarray, users: np.ndarray
) -> tuple[int, np.ndarray]:
    """(the total as eq. 13 or --size gives it, or 0 where given per stratum; each stratum's points)."""
    if options.per_stratum is not None:
        given = parse_stratum_values(options.per_stratum, strata.names, "--per-stratum", int)
        absent = [name for name in strata.names if name not in given]
        if absent:
            raise PipelineError(f"--per-stratum: gives no size for stratum {absent[0]!r}; give every stratum one")
        sizes = np.array([given[name] for name in strata.names])
        for name, size, count in zip(strata.names, sizes, pixels):
            if not 2 <= size <= count:
                raise PipelineError(
                    f"--per-stratum {name}={size}: a stratum takes from 2 points to its {int(count)} pixels"
                )
        return 0, sizes
    total = options.size or cochran_sample_size(weights, users, options.target_standard_error)
    if total > pixels.sum():
        how = (
            "--size" if options.size else f"a standard error of {options.target_standard_error:g} for overall accuracy"
        )
        raise PipelineError(
            f"{how} needs {total} points, more than the map's {int(pixels.sum())} pixels with a class; "
            "ask for fewer points or a larger standard error"
        )
    return total, ALLOCATIONS[options.allocation](total, pixels, options.minimum, strata.names)


def design_sample(raster: CodeRaster, options: SampleOptions, progress: bool = True) -> tuple[dict, list[dict]]:
    """The design (the map, strata, sizes, seed) and the points of a stratified random sample of the map."""
    areas = ground_areas(raster)
    merges = parse_merges(options.merges, raster.names)
    code_pixels, code_hectares = count_codes(raster, areas, progress)
    if code_pixels.sum() == 0:
        raise PipelineError(f"{raster.maps[0].path}: the map has no pixel with a class to sample")
    strata = make_strata(raster.names, code_pixels, merges)
    pixels = np.array([code_pixels[list(codes)].sum() for codes in strata.codes])
    hectares = np.array([code_hectares[list(codes)].sum() for codes in strata.codes])
    weights = hectares / hectares.sum()
    given = parse_stratum_values(options.expected_accuracy or "", strata.names, "--expected-accuracy", float)
    users = expected_accuracies(raster, strata, given)
    total, sizes = stratum_sizes(options, strata, pixels, weights, users)
    rows, columns, point_strata = draw_pixels(raster, strata, pixels, sizes, options.seed, progress)
    codes = map_codes_at(raster, rows, columns)
    x, y = pixel_centres(raster.transform, rows, columns)
    lon, lat = longitudes_latitudes(raster.crs, x, y)
    points = [
        {
            "point_id": index + 1,
            "row": int(rows[index]),
            "column": int(columns[index]),
            "x": float(x[index]),
            "y": float(y[index]),
            "lon": float(lon[index]),
            "lat": float(lat[index]),
            "stratum": strata.names[point_strata[index]],
            "map_class": raster.names[codes[index]],
        }
        for index in range(len(rows))
    ]
    design = {
        "format": DESIGN_FORMAT,
        "maps": [{"role": m.role, "path": str(m.path), "sha256": file_sha256(m.path)} for m in raster.maps],
        "crs": raster.crs.to_string(),
        "transform": list(raster.transform)[:6],
        "width": raster.width,
        "height": raster.height,
        "area_method": areas.method,
        "classes": list(raster.names),
        "colours": np.asarray(raster.colours).tolist(),
        "mapped": [
            {"class": name, "pixels": int(code_pixels[code]), "hectares": float(code_hectares[code])}
            for code, name in enumerate(raster.names)
        ],
        "target_standard_error": None if total == 0 or options.size else options.target_standard_error,
        "sample_size": int(sizes.sum()),
        "allocation": "given per stratum" if options.per_stratum else options.allocation,
        "minimum_per_stratum": None if options.per_stratum else options.minimum,
        "seed": options.seed,
        "strata": [
            {
                "stratum": name,
                "classes": [raster.names[code] for code in codes_],
                "pixels": int(pixels[h]),
                "hectares": float(hectares[h]),
                "weight": float(weights[h]),
                "expected_users_accuracy": float(users[h]),
                "points": int(sizes[h]),
            }
            for h, (name, codes_) in enumerate(zip(strata.names, strata.codes))
        ],
        "points": points,
    }
    return design, points


def write_sample(out_dir: Path, design: dict, points: list[dict], staged: dict[str, Path], crs) -> None:
    """The sample's files into their staging paths (`staged`: role -> path): CSV, GeoPackage (where asked),
    QGIS style and design."""
    write_points_csv(staged["csv"], points)
    if "gpkg" in staged:
        write_points_geopackage(staged["gpkg"], points, crs)
    staged["qml"].write_text(points_style(design["classes"], np.array(design["colours"])), encoding="utf-8")
    staged["design"].write_text(json.dumps(design, indent=2) + "\n", encoding="utf-8")
