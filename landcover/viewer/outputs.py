"""What an output folder holds, for the viewer: which command wrote it (by its own records) and the layers, legends,
area table and scene outlines it shows (docs/viewer.md).

- a region (`landcover-region`): `region.json`; the mosaic (region.tif where written, else region.vrt), each
  scene's record in scenes/ (its outputs, its input and how it was read), the area table region_areas.json;
- a change (`landcover-change`): `from_to.json` beside change.tif; the two class maps it names;
- a mapping (`landcover-map`): `<id>_areas.json` area reports, each beside its class map `<id>.tif` and its STAC
  Item `<id>.item.json` (how the input was read: geo.stac.READ_PROPERTY; the confidence map where written).

A folder with none of these is no output of ours; a map its records name but that is missing is refused, one line
each. The input imagery is shown where it can still be read, and left out with a warning where it cannot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rasterio.errors import RasterioError

from landcover.data.palette import ClassTable
from landcover.data.scaling import BandScaling
from landcover.geo.georaster import (
    RasterScene,
    ReadOptions,
    choose_bands,
    class_table_of,
    reads_rgb,
    value_ranges,
    warn,
)
from landcover.geo.stac import READ_PROPERTY, item_name
from landcover.io.errors import PipelineError
from landcover.io.sources import located
from landcover.region.change import change_map_table, change_table

# The kinds of layer, each drawn its own way by viewer.tiles.
IMAGERY, CLASSES, CONFIDENCE, CHANGE = "imagery", "classes", "confidence", "change"
# standard deviations either side of the mean that a model scaled by band statistics is shown across
STATISTICS_SPREAD = 2.0


@dataclass(frozen=True)
class Raster:
    """One file a layer reads: `bands` (from 1) and, per band, the (low, high) drawn as 0..255 (None: as it is)."""

    path: str  # a local path or GDAL path (/vsicurl/...)
    bands: tuple[int, ...] = (1,)
    ranges: tuple[tuple[float, float] | None, ...] | None = None


@dataclass(frozen=True)
class Layer:
    """A map layer: one raster, or several drawn as a mosaic (the first one listed on top). The page draws an output's
    layers in their order, the last on top."""

    id: str  # its name in URLs
    title: str
    kind: str  # IMAGERY, CLASSES, CONFIDENCE or CHANGE
    rasters: tuple[Raster, ...]
    table: ClassTable | None = None  # the colours of class and change maps
    legend_values: tuple[int, ...] | None = None  # the values the legend lists (None: every row of the table)
    visible: bool = True  # shown when the page opens


@dataclass
class ViewedOutput:
    folder: Path
    command: str  # landcover-map, landcover-region or landcover-change
    layers: list[Layer]
    areas: list[dict] = field(default_factory=list)  # tables: {"title", "unit", "rows": [{"name", "colour", "value"}]}
    scenes: list[dict] = field(default_factory=list)  # GeoJSON Features: scene outlines with status and error
    # a change's two dates: the ids of the layers of each side of the swipe (date 1 under the change map, date 2)
    swipe: tuple[tuple[str, ...], tuple[str, ...]] | None = None

    def layer(self, layer_id: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.id == layer_id), None)


def open_output(folder: Path) -> ViewedOutput:
    """The output in `folder`; PipelineError (one line) for a folder that is no output of ours or lacks a map."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: {'not a folder' if folder.exists() else 'folder not found'}")
    if (folder / "region.json").is_file():
        return region_output(folder)
    if (folder / "from_to.json").is_file():
        return change_output(folder)
    reports = area_reports(folder)
    if reports:
        return mapping_output(folder, reports)
    raise PipelineError(
        f"{folder}: not an output of landcover-map, landcover-region or landcover-change "
        "(no <id>_areas.json, region.json or from_to.json in it)"
    )


def read_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(payload, dict):
        raise PipelineError(f"{path}: not a JSON object")
    return payload


def is_area_report(report: dict) -> bool:
    return all(key in report for key in ("image", "areas", "classes"))


def area_reports(folder: Path) -> list[Path]:
    """The area reports of landcover-map in `folder` (`<id>_areas.json`), in name order."""
    return sorted(path for path in folder.glob("*_areas.json") if is_area_report(read_json(path)))


def required_map(path: Path, named_in: Path) -> Path:
    if not path.is_file():
        raise PipelineError(f"{path}: named in {named_in} but missing")
    return path


def found_file(text: str, folder: Path) -> Path | None:
    """A path a record holds: as written (absolute, or from where the command ran), else from the output folder."""
    for path in (Path(text), folder / text):
        if path.is_file():
            return path
    return None


def require_viewer_group() -> None:
    """rio-tiler (the viewer group), or one line saying how to install it; this module itself needs none of it."""
    try:
        import rio_tiler  # noqa: F401
    except ImportError:
        raise PipelineError(
            "landcover-view reads tiles with rio-tiler, an optional dependency: install it with `make install-viewer`"
        ) from None


# --- a mapping folder ---


def mapping_output(folder: Path, reports: list[Path]) -> ViewedOutput:
    class_maps, confidences, images, tables = [], [], [], []
    for report_path in reports:
        image_id = report_path.name.removesuffix("_areas.json")
        report = read_json(report_path)
        if report.get("crs") is None:
            warn(f"{report_path}: its map has no CRS (a JPEG or PNG input), so it cannot be placed on the map")
            continue
        class_maps.append(required_map(folder / f"{image_id}.tif", report_path))
        item_path = folder / item_name(image_id)
        item = read_json(item_path) if item_path.is_file() else {}
        if "confidence" in item.get("assets", {}):
            confidences.append(required_map(folder / f"{image_id}_confidence.tif", item_path))
        elif not item and (folder / f"{image_id}_confidence.tif").is_file():  # a map written without its Item
            confidences.append(folder / f"{image_id}_confidence.tif")
        read = read_options(item.get("properties", {}).get(READ_PROPERTY))
        images.append(imagery_raster(report["image"], read, folder))
        tables.append(area_table(image_id, report))
    if not class_maps:
        raise PipelineError(f"{folder}: none of its maps has a CRS; the viewer shows georeferenced maps only")
    table = class_table_of(class_maps[0])
    layers = [
        *imagery_layer(images),
        Layer(CLASSES, "Land-cover classes", CLASSES, rasters(class_maps), table),
        *confidence_layer(confidences),
    ]
    return ViewedOutput(folder, "landcover-map", layers, with_colours(tables, table))


def rasters(paths: list[Path]) -> tuple[Raster, ...]:
    return tuple(Raster(str(path)) for path in paths)


def imagery_layer(images: list[Raster | None]) -> list[Layer]:
    found = tuple(image for image in images if image is not None)
    return [Layer(IMAGERY, "Input imagery", IMAGERY, found)] if found else []


def confidence_layer(paths: list[Path]) -> list[Layer]:
    """Over the class map, which it would hide: so hidden at first, shown by its switch."""
    return [Layer(CONFIDENCE, "Confidence", CONFIDENCE, rasters(paths), visible=False)] if paths else []


def area_table(title: str, report: dict) -> dict:
    unit = "ha" if report.get("predicted_hectares") is not None else "pixels"
    rows = [
        {"name": row["class"], "value": row["hectares"] if unit == "ha" else row["pixels"]} for row in report["classes"]
    ]
    return {"title": title, "unit": unit, "rows": rows}


def with_colours(tables: list[dict], table: ClassTable) -> list[dict]:
    colours = {name: colour_hex(colour) for name, colour in zip(table.names, table.colours)}
    for area in tables:
        for row in area["rows"]:
            row["colour"] = colours.get(row["name"])
    return tables


def colour_hex(colour) -> str:
    return "#" + "".join(f"{int(channel):02x}" for channel in colour[:3])


# --- the input imagery ---


def imagery_raster(source_text: str, read: ReadOptions, folder: Path) -> Raster | None:
    """The input as the model saw it: the chosen bands, stretched as mapping stretched them (a uint8 RGB model's
    percentiles or value range) or, for a model of raw values, across the range its scaling maps to 0..1."""
    source = located(source_text, None)
    if source.is_local:
        path = found_file(source_text, folder)
        if path is None:
            warn(f"{source_text}: the input imagery is not found, so it is not shown")
            return None
        source = located(str(path), None)
    try:
        with source.open_raster() as dataset:
            if dataset.crs is None:
                return None
            bands, _ = choose_bands(source, dataset, read.bands, read.scaling)
            if reads_rgb(read.scaling):
                scene = RasterScene(source, dataset, bands, [None, None, None])
                ranges = tuple(value_ranges(scene, read))
            else:
                bands, ranges = raw_value_display(bands, read.scaling)
    except (PipelineError, RasterioError, OSError) as error:
        warn(f"{source_text}: the input imagery cannot be read, so it is not shown ({error})")
        return None
    return Raster(source.gdal_path, tuple(bands), ranges)


def raw_value_display(
    bands: tuple[int, ...], scaling: BandScaling
) -> tuple[tuple[int, ...], tuple[tuple[float, float], ...]]:
    """The first three bands of a raw-value model (one band: grey), each across the values its scaling maps to 0..1:
    low..high of a fixed range, mean +- STATISTICS_SPREAD std of band statistics."""
    shown = (bands * 3)[:3] if len(bands) < 3 else bands[:3]
    ranges = []
    for band in shown:
        k = bands.index(band)
        if scaling.clip:
            ranges.append((scaling.low[k], scaling.high[k]))
        else:
            spread = STATISTICS_SPREAD * scaling.std[k] * (scaling.high[k] - scaling.low[k])
            centre = scaling.low[k] + scaling.mean[k] * (scaling.high[k] - scaling.low[k])
            ranges.append((centre - spread, centre + spread))
    return shown, tuple(ranges)


def read_options(read: dict | None) -> ReadOptions:
    """The reading options a map's records hold (a map Item's READ_PROPERTY, a region scene record's settings'
    options.read), else the mapping command's defaults."""
    if not isinstance(read, dict):
        return ReadOptions()
    try:
        return ReadOptions(
            bands=None if read.get("bands") is None else tuple(read["bands"]),
            percentiles=tuple(read.get("percentiles", ReadOptions.percentiles)),
            value_range=None if read.get("value_range") is None else tuple(read["value_range"]),
            scaling=BandScaling.from_config(read.get("scaling")),
        )
    except (TypeError, ValueError, KeyError):
        return ReadOptions()


# --- a region ---

# a scene's status in region.json -> what the viewer calls it
SCENE_STATUS = {"mapped": "done", "skipped": "resumed"}


def region_output(folder: Path) -> ViewedOutput:
    summary_path = folder / "region.json"
    summary = read_json(summary_path)
    mosaic_name = summary.get("mosaic_cog") or summary.get("mosaic")
    if not mosaic_name:
        raise PipelineError(f"{summary_path}: the region has no mosaic (no scene was mapped with a CRS)")
    mosaic = required_map(folder / mosaic_name, summary_path)
    table = class_table_of(mosaic)
    scenes_folder = folder / "scenes"
    images, confidences = [], []
    in_mosaic = [
        result for result in summary.get("scene_results", []) if result["scene"] not in summary["not_in_mosaic"]
    ]
    for result in in_mosaic:
        record_path = scenes_folder / f"{result['scene']}.record.json"
        record = read_json(required_map(record_path, summary_path))
        outputs = record.get("outputs", [])
        for name in outputs:
            required_map(scenes_folder / name, record_path)
        confidence = f"{result['scene']}_confidence.tif"
        if confidence in outputs:
            confidences.append(scenes_folder / confidence)
        source = (record.get("source_seen") or {}).get("path") or record["key"]["source"].get("source")
        source = source or result.get("source")
        read = (record["key"].get("settings") or {}).get("options", {}).get("read")
        images.append(imagery_raster(source, read_options(read), folder) if source else None)
    layers = [
        *imagery_layer(images),
        Layer(CLASSES, "Land-cover classes", CLASSES, (Raster(str(mosaic)),), table),
        *confidence_layer(confidences),
    ]
    areas = []
    if summary.get("areas"):
        report = read_json(required_map(folder / summary["areas"], summary_path))
        areas = with_colours([area_table("Region", report)], table)
    return ViewedOutput(folder, "landcover-region", layers, areas, scene_outlines(summary))


def scene_outlines(summary: dict) -> list[dict]:
    """A GeoJSON Feature per scene whose footprint is recorded: its id, status (done, resumed, failed) and error."""
    features = []
    entries = [(result, SCENE_STATUS.get(result["status"], result["status"])) for result in summary["scene_results"]]
    entries += [(failure, "failed") for failure in summary.get("failures", [])]
    for entry, status in entries:
        if entry.get("footprint"):
            properties = {"scene": entry["scene"], "status": status, "error": entry.get("error", "")}
            features.append({"type": "Feature", "geometry": entry["footprint"], "properties": properties})
    return features


# --- a change ---


def change_output(folder: Path) -> ViewedOutput:
    report_path = folder / "from_to.json"
    report = read_json(report_path)
    change_map = required_map(folder / "change.tif", report_path)
    if change_map_table(change_map) is None:
        raise PipelineError(f"{change_map}: not a change map of landcover-change (no CHANGE_CODES in its metadata)")
    dates = []
    for role in ("before", "after"):
        path = found_file(report[role], folder)
        if path is None:
            raise PipelineError(f"{report[role]}: the {role} map named in {report_path} is missing")
        dates.append(path)
    table = class_table_of(dates[0])
    codes = change_table(table)  # the colours of the class maps' table: the change map's own are its codes'
    classes = len(table)
    pixels = report["pixels"]
    present = tuple(
        1 + before * classes + after
        for before in range(classes)
        for after in range(classes)
        if before != after and pixels[before][after] > 0
    )
    sides = []
    for number, (role, path) in enumerate(zip(("before", "after"), dates), 1):
        imagery = dated_imagery(path, f"date {number}")
        side = [Layer(f"imagery-{role}", f"Date {number}: input imagery", IMAGERY, imagery)] if imagery else []
        side.append(Layer(role, f"Date {number}: {Path(report[role]).name}", CLASSES, (Raster(str(path)),), table))
        sides.append(side)
    change = Layer(CHANGE, "Change (from -> to)", CHANGE, (Raster(str(change_map)),), codes, (0, *present))
    layers = [*sides[0], *sides[1], change]
    swipe = tuple(layer.id for layer in sides[0]), tuple(layer.id for layer in sides[1])
    return ViewedOutput(folder, "landcover-change", layers, [from_to_table(report, codes, present)], [], swipe)


def dated_imagery(class_map: Path, date: str) -> tuple[Raster, ...]:
    """The input imagery of a change's class map, as the output it belongs to shows it: a region's mosaic or a
    mapping output's map (the folder holding it); none, with a warning, where that folder is no such output."""
    folder = class_map.parent
    try:
        if (folder / "region.json").is_file():
            output = region_output(folder)
        else:
            reports = area_reports(folder)
            if not reports:
                warn(
                    f"{class_map}: in no output of landcover-map or landcover-region, so {date}'s imagery is not shown"
                )
                return ()
            output = mapping_output(folder, reports)
    except PipelineError as error:
        warn(f"{class_map}: {date}'s imagery is not shown ({error})")
        return ()
    imagery = output.layer(IMAGERY)
    return () if imagery is None else imagery.rasters


def from_to_table(report: dict, codes: ClassTable, present: tuple[int, ...]) -> dict:
    unit = "ha" if report.get("hectares") is not None else "pixels"
    matrix = report["hectares"] if unit == "ha" else report["pixels"]
    classes = len(report["classes"])
    rows = []
    for code in present:
        before, after = divmod(code - 1, classes)
        rows.append(
            {"name": codes.names[code], "colour": colour_hex(codes.colours[code]), "value": matrix[before][after]}
        )
    rows.sort(key=lambda row: -row["value"])
    unchanged = sum(matrix[k][k] for k in range(classes))
    rows.insert(0, {"name": "unchanged", "colour": colour_hex(codes.colours[0]), "value": unchanged})
    return {"title": "Change (from -> to)", "unit": unit, "rows": rows}
