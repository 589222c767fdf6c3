"""STAC records of what mapping made (docs/mapping.md#stac-records), written with pystac beside the outputs:

- an Item per scene's maps, `<id>.item.json`: its footprint in lon/lat, the projection (code, shape,
  transform, bbox), and an asset per file written (class map, confidence, probabilities, area tables,
  polygons, legends), each with its media type, roles, size and sha256 (file extension); the rasters with
  their bands' data type and nodata (raster extension), the class map with the class table's values, names
  and colours (classification extension);
- the model that made them as an Item of the Machine Learning Model (MLM) extension, `model-<sha256>.item.json`
  (named by the model file's digest, so maps of another model in the same folder keep theirs): the bands it
  reads and their scaling, its window, its classes, the runtime, and the model file as an asset with its sha256.
  Each map Item links to it (rel `derived_from`);
- a change map's Item (`change.item.json`), linked to the two maps it compares.

Hrefs are relative, so a folder of outputs stays a self-contained whole wherever it is moved (the model asset
points to where the model file was). An Item is written atomically, after every file it describes is in place.

Their datetime is the input's acquisition time where it is known (a STAC input item's), else `start_datetime`
and `end_datetime` are when the scene was mapped, and `landcover:datetime_is` says so.

`validate_stac` checks the records offline: each against the STAC core schema of its type and the schema of
each extension it lists, all vendored in stac_schemas/ (its README names their sources, versions and licences)
and resolved from a local registry that never fetches (a reference to anything else is an error), and every
asset's size and sha256 against its file.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import jsonschema
import pystac
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema_specifications import REGISTRY as METASCHEMAS
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.mlm import (
    AssetGeneralMLMExtension,
    InputStructure,
    MLMExtension,
    ModelInput,
    ModelOutput,
    ResultStructure,
    TaskType,
    ValueScaling,
    ValueScalingType,
)
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension

from landcover.data.palette import ClassTable
from landcover.geo.footprints import footprint as raster_footprint
from landcover.geo.georaster import NODATA_CLASS, ReadOptions
from landcover.geo.mapping import MapOptions, output_names
from landcover.inference.runtimes import Runtime
from landcover.io.digests import file_sha256
from landcover.io.errors import PipelineError
from landcover.io.outputs import write_json
from landcover.io.params import PredictParams
from landcover.io.rasters import open_raster
from landcover.io.sources import Source
from landcover.model.checkpoint import ModelInterface

ITEM_SUFFIX = ".item.json"
CHANGE_ITEM = "change.item.json"
SCHEMAS = Path(__file__).with_name("stac_schemas")  # each schema at its URL's host and path
GEOJSON = "application/geo+json"
ARCHITECTURE = "DeepLabV3+"  # landcover/model/model.py's
MODEL_MEDIA_TYPES = {"PyTorch": "application/octet-stream; application=pytorch", "ONNX": "application/x-onnx"}
NCHW, NHWC = ["batch", "channel", "height", "width"], ["batch", "height", "width", "channel"]
MODEL_NAME = "landcover-DeepLabV3plus"  # mlm:name allows letters, digits, _ . - and spaces only
SHA256_MULTIHASH = "1220"  # multihash prefix: sha2-256 (0x12), 32 bytes (0x20)
# a map Item's property: the ReadOptions its input was read with (bands, stretch, the model's scaling), as JSON
READ_PROPERTY = "landcover:read"
RUN_TIME = "the mapping run's time: the input's acquisition time is not known"
# Each runtime's MLM framework (the format of the file it runs) and its Python package (whose version is the
# runtime's, and for PyTorch the framework's).
FRAMEWORKS = {"torch": ("PyTorch", "torch"), "onnxruntime": ("ONNX", "onnxruntime"), "openvino": ("ONNX", "openvino")}
MESSAGE_CHARS = 300  # a validation message quotes the value: long ones are cut
NAME_PATTERN = re.compile(r"[^0-9A-Za-z_-]")  # characters a classification class name may not hold

# Each file's media type, by its suffix.
MEDIA_TYPES = {
    ".tif": pystac.MediaType.COG,
    ".png": pystac.MediaType.PNG,
    ".json": pystac.MediaType.JSON,
    ".csv": "text/csv",
    ".gpkg": "application/geopackage+sqlite3",
    ".qml": pystac.MediaType.XML,
    ".vrt": pystac.MediaType.XML,
}
# A mapping output's asset: its title and roles, by its role among geo.mapping.output_names.
ASSETS = {
    "classes": ("land-cover class map: class index per pixel, 255 no prediction", ["data"]),
    "colours": ("class map in the class colours", ["visual"]),
    "style": ("QGIS legend of the class map", ["metadata"]),
    "confidence": ("confidence: max class probability x 255, 0 no data", ["data"]),
    "probabilities": ("class probabilities: a band per class, round(probability x 255)", ["data"]),
    "areas_json": ("map areas per class: pixels and hectares (JSON)", ["metadata"]),
    "areas_csv": ("map areas per class: pixels and hectares (CSV)", ["metadata"]),
    "polygons": ("a polygon per region of a class", ["data"]),
}


@dataclass(frozen=True)
class Acquisition:
    """When a scene's imagery was taken, as its STAC item says: a datetime, or a start and an end."""

    datetime: str | None = None
    start: str | None = None
    end: str | None = None

    @classmethod
    def of_properties(cls, properties: dict) -> Acquisition | None:
        """A STAC item's properties' acquisition time; None where it has none."""
        found = cls(properties.get("datetime"), properties.get("start_datetime"), properties.get("end_datetime"))
        return found if found.datetime or (found.start and found.end) else None


@dataclass(frozen=True)
class ModelFacts:
    """What the MLM Item says of the model that made the maps: the file the runtime ran and what it takes."""

    runtime: str  # torch | onnxruntime | openvino
    path: Path  # the checkpoint (torch) or ONNX file, absolute
    sha256: str
    interface: ModelInterface
    params: PredictParams

    @classmethod
    def of(cls, runtime: Runtime, params: PredictParams, sha256: str | None = None) -> ModelFacts:
        path = Path(runtime.model).resolve()
        return cls(runtime.name, path, sha256 or file_sha256(path), runtime.interface, params)

    @property
    def item_name(self) -> str:
        return f"model-{self.sha256[:12]}{ITEM_SUFFIX}"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def multihash(sha256: str) -> str:
    """A sha256 as the file extension's `file:checksum` holds it: a multihash, hex-encoded."""
    return SHA256_MULTIHASH + sha256


def item_name(image_id: str) -> str:
    return f"{image_id}{ITEM_SUFFIX}"


def class_name(name: str) -> str:
    """A class's name as the classification extension allows (letters, digits, - and _)."""
    return NAME_PATTERN.sub("_", name)


def class_objects(table: ClassTable, nodata: int | None = None, nodata_name: str = "no_prediction") -> list:
    """The class table as classification objects: value (the pixel value: the class index), name, title,
    colour, and the label value of the training masks; and the nodata value where there is one."""
    classes = [
        Classification.create(
            value=index,
            name=class_name(name),
            title=name,
            description=f"label value {value} in the training masks",
            color_hint="{:02X}{:02X}{:02X}".format(*(int(c) for c in colour)),
        )
        for index, (name, colour, value) in enumerate(zip(table.names, table.colours, table.values))
    ]
    if nodata is not None:
        classes.append(Classification.create(value=nodata, name=nodata_name, nodata=True))
    return classes


def add_file_asset(
    item: pystac.Item | pystac.Collection, key: str, path: Path, title: str, roles: list[str], sha256: str | None = None
) -> pystac.Asset:
    """The file at `path` as the item's asset `key`, its href relative to the item's file (in `path`'s folder
    unless the item's self href says otherwise), with its size and sha256 (`sha256` where it is known)."""
    href = os.path.relpath(path, Path(item.get_self_href() or path).parent)
    asset = pystac.Asset(href=href, title=title, roles=roles, media_type=MEDIA_TYPES.get(path.suffix.lower()))
    item.add_asset(key, asset)
    FileExtension.ext(asset, add_if_missing=True).apply(
        checksum=multihash(sha256 or file_sha256(path)), size=path.stat().st_size
    )
    return asset


def add_raster_bands(asset: pystac.Asset, path: Path, classes: list[Classification] | None = None) -> None:
    """The raster's bands' data type and nodata (raster extension); with `classes`, the first band's class table
    (classification extension)."""
    with open_raster(path) as dataset:
        nodata = dataset.nodata
        if nodata is not None and float(nodata).is_integer():
            nodata = int(nodata)
        bands = [RasterBand.create(data_type=dtype, nodata=nodata) for dtype in dataset.dtypes]
    if classes is not None:
        ClassificationExtension.ext(bands[0], add_if_missing=False).apply(classes=classes)
        ClassificationExtension.ext(asset, add_if_missing=True)  # lists the extension on the item
    RasterExtension.ext(asset, add_if_missing=True).apply(bands=bands)


def add_projection(target: pystac.Item | pystac.Asset, dataset) -> None:
    """The raster's grid (projection extension): code (EPSG where it has one, else WKT2), shape, transform, bbox;
    the shape alone for a raster without a CRS (a JPEG's or PNG's map)."""
    crs = dataset.crs
    extension = ProjectionExtension.ext(target, add_if_missing=True)  # type: ignore[type-var]
    epsg = crs.to_epsg() if crs is not None else None
    extension.apply(
        code=f"EPSG:{epsg}" if epsg else None,
        wkt2=crs.to_wkt() if crs is not None and not epsg else None,
        shape=[dataset.height, dataset.width],
        transform=list(dataset.transform)[:6] if crs is not None else None,
        bbox=list(dataset.bounds) if crs is not None else None,
    )


def footprint(dataset) -> tuple[dict | None, list[float] | None]:
    """The raster's footprint in lon/lat (geo.footprints: its sides densified) and that outline's bbox; (None, None)
    without a CRS."""
    polygon = raster_footprint(dataset.crs, dataset.transform, dataset.width, dataset.height)
    if polygon is None:
        return None, None
    lons, lats = zip(*polygon["coordinates"][0])
    return polygon, [min(lons), min(lats), max(lons), max(lats)]


def new_item(
    item_id: str, path: Path, grid: Path, acquired: Acquisition | None, started: dt.datetime, description: str
) -> pystac.Item:
    """An Item at `path` whose footprint and projection are those of the raster `grid`, dated by `acquired`, or
    else by its making (from `started` to now)."""
    with open_raster(grid) as dataset:
        geometry, bbox = footprint(dataset)
        properties: dict = {"description": description}
        if acquired is None:
            properties |= {"start_datetime": iso(started), "end_datetime": iso(utc_now())}
            properties["landcover:datetime_is"] = RUN_TIME
        else:
            properties |= {"start_datetime": acquired.start, "end_datetime": acquired.end}
        item = pystac.Item(
            item_id,
            geometry,
            bbox,
            None if acquired is None or acquired.datetime is None else pystac.utils.str_to_datetime(acquired.datetime),
            {key: value for key, value in properties.items() if value is not None},
        )
        item.common_metadata.created = utc_now()
        item.set_self_href(str(path.resolve()))
        add_projection(item, dataset)
    return item


def iso(moment: dt.datetime) -> str:
    return pystac.utils.datetime_to_str(moment)


def write_item(item: pystac.Item | pystac.Collection, path: Path) -> None:
    """The record as JSON at `path`, atomically, its hrefs relative and without a self link."""
    write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))


def link_model(item: pystac.Item, path: Path, model_item: Path) -> None:
    href = os.path.relpath(model_item, path.parent)
    item.add_link(pystac.Link("derived_from", href, GEOJSON, "the model that made the maps (STAC MLM Item)"))


def write_scene_item(
    out_dir: Path,
    image_id: str,
    names: dict[str, str],
    table: ClassTable,
    model_item: Path | None,
    source: Path | Source,
    read: ReadOptions,
    acquired: Acquisition | None,
    started: dt.datetime,
) -> Path:
    """`<id>.item.json` for one scene's outputs `names` ({role: file name}, geo.mapping.output_names), once they
    are all in `out_dir`; `read`: how the input's bands were read (the viewer shows the imagery the same way)."""
    out_dir = Path(out_dir)
    path = out_dir / item_name(image_id)
    item = new_item(
        image_id, path, out_dir / names["classes"], acquired, started, f"land-cover maps of {Path(source.name).name}"
    )
    item.properties["landcover:input"] = str(source)
    item.properties[READ_PROPERTY] = json.loads(json.dumps(asdict(read)))
    for role, name in names.items():
        title, roles = ASSETS[role]
        asset = add_file_asset(item, role, out_dir / name, title, roles)
        if role in ("classes", "confidence", "probabilities"):
            add_raster_bands(asset, out_dir / name, class_objects(table, NODATA_CLASS) if role == "classes" else None)
    if model_item is not None:
        link_model(item, path, model_item)
    write_item(item, path)
    return path


def write_scene_records(
    out_dir: Path,
    image_id: str,
    is_raster: bool,
    source: Path | Source,
    table: ClassTable,
    options: MapOptions,
    facts: ModelFacts | None,
    acquired: Acquisition | None,
    started: dt.datetime,
) -> dict[str, str]:
    """The STAC of a scene geo.mapping.map_file has mapped from `source` into `out_dir` (as rasters, or as
    PNGs: geo.mapping.written_as_raster): the model's MLM Item (where `facts` are known) and the scene's Item.
    Returns the scene's outputs ({role: file name}) with the Item's name as `stac_item`."""
    out_dir = Path(out_dir)
    names = output_names(image_id, is_raster, options)
    model = None if facts is None else write_model_item(out_dir, facts)
    item = write_scene_item(out_dir, image_id, names, table, model, source, options.read, acquired, started)
    return names | {"stac_item": item.name}


def model_item(facts: ModelFacts, path: Path) -> pystac.Item:
    """The MLM Item of the model `facts` describes, to be written at `path`."""
    interface, scaling, params = facts.interface, facts.interface.scaling, facts.params
    framework, package = FRAMEWORKS[facts.runtime]
    modified = dt.datetime.fromtimestamp(facts.path.stat().st_mtime, dt.UTC)
    band_names = [f"band{band}" for band in scaling.bands]
    # STAC 1.1 bands: what the MLM input's band names refer to (the input raster's bands, from 1)
    bands = [
        {"name": name, "description": f"input raster band {band}", "data_type": scaling.dtype}
        for name, band in zip(band_names, scaling.bands)
    ]
    item = pystac.Item(
        f"model-{facts.sha256[:12]}",
        None,
        None,
        modified,
        {
            "description": f"the land-cover model run by {facts.runtime} ({facts.path.name}); its datetime is "
            "the model file's modification time",
            "bands": bands,
            "landcover:runtime": facts.runtime,
            "landcover:runtime_version": package_version(package),
            "landcover:scaling": scaling.to_config(),
            "landcover:tile_size": interface.tile_size,
            "landcover:window": {"size": params.window, "overlap": params.overlap, "tta": params.tta},
            "landcover:temperature": interface.temperature,
            "landcover:checkpoint_sha256": interface.checkpoint_sha256,
        },
    )
    item.set_self_href(str(path.resolve()))
    side = params.window
    if facts.runtime == "torch":  # the network itself: scaled float32 NCHW windows
        structure = InputStructure.create([-1, scaling.channels, side, side], NCHW, DataType.FLOAT32)
        how = "scaled by the runtime: the z-score below (value_scaling)"
    else:  # an export: raw NHWC windows, scaled inside the ONNX graph
        structure = InputStructure.create([-1, side, side, scaling.channels], NHWC, DataType(scaling.input_dtype))
        how = "scaled inside the model's graph"
    model_input = ModelInput.create(
        name="image",
        bands=band_names,
        input=structure,
        description=(
            f"windows of {side} x {side} pixels overlapping by {params.overlap:g} (trained on "
            f"{interface.tile_size}-pixel tiles), {how}: each band as (x - low) / (high - low)"
            + (" clipped to 0..1" if scaling.clip else "")
            + ", then standardised by mean and std (landcover:scaling)"
        ),
    )
    if facts.runtime == "torch":
        # per band, as the MLM schema has it (pystac's ModelInput.value_scaling setter takes one object only);
        # exact where x lies within low..high
        model_input.properties["value_scaling"] = [
            ValueScaling.create(
                ValueScalingType.Z_SCORE, mean=low + mean * (high - low), stddev=std * (high - low)
            ).to_dict()
            for low, high, mean, std in zip(scaling.low, scaling.high, scaling.mean, scaling.std)
        ]
    model_output = ModelOutput.create(
        name="classes",
        tasks=[TaskType.SEMANTIC_SEGMENTATION],
        result=ResultStructure.create([-1, len(interface.table), side, side], NCHW, DataType.FLOAT32),
        description="class probabilities per pixel (softmax of logits / landcover:temperature); the map's class "
        "is their argmax",
        classes=class_objects(interface.table),
    )
    MLMExtension.ext(item, add_if_missing=True).apply(
        name=MODEL_NAME,
        architecture=ARCHITECTURE,
        tasks=[TaskType.SEMANTIC_SEGMENTATION],
        input=[model_input],
        output=[model_output],
        framework=framework,
        framework_version=package_version(package) if framework == "PyTorch" else None,
        pretrained=True,
        batch_size_suggestion=params.batch_size,
    )
    asset = add_file_asset(
        item, "model", facts.path, f"the {framework} model file {facts.runtime} ran", ["mlm:model"], facts.sha256
    )
    asset.media_type = MODEL_MEDIA_TYPES[framework]
    # the model file's input bands too: STAC 1.1.0's item schema allows `bands` in properties only where an
    # asset has them
    asset.extra_fields["bands"] = bands
    AssetGeneralMLMExtension.ext(asset, add_if_missing=True).apply(
        artifact_type="torch.save" if framework == "PyTorch" else "onnx"
    )
    return item


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_model_item(out_dir: Path, facts: ModelFacts) -> Path:
    """The model's MLM Item in `out_dir` (rewritten whole: several processes may write the same one)."""
    path = Path(out_dir) / facts.item_name
    write_item(model_item(facts, path), path)
    return path


def map_acquisition(map_path: Path) -> Acquisition | None:
    """A class map's acquisition time as the STAC beside it says: a scene's Item (`<id>.item.json`), a region's
    Collection (collection.json, its temporal extent); None where there is none or it gives none."""
    map_path = Path(map_path)
    item = map_path.with_name(item_name(map_path.stem))
    collection = map_path.with_name("collection.json")
    try:
        if item.is_file():
            properties = json.loads(item.read_text()).get("properties", {})
            if properties.get("landcover:datetime_is") != RUN_TIME:
                return Acquisition.of_properties(properties)
        elif collection.is_file():
            data = json.loads(collection.read_text())
            if not data.get("landcover:datetime_is"):
                start, end = data["extent"]["temporal"]["interval"][0]
                return Acquisition(None, start, end) if start and end else None
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return None


def write_change_item(out_dir: Path, before: Path, after: Path, codes: ClassTable, started: dt.datetime) -> Path:
    """change.item.json for the change outputs in `out_dir`, linked to the two maps (rel derived_from): dated from
    the first map's acquisition to the second's where both are known, else by the run."""
    out_dir = Path(out_dir)
    path = out_dir / CHANGE_ITEM
    first, second = map_acquisition(before), map_acquisition(after)
    acquired = None
    if first is not None and second is not None:
        acquired = Acquisition(None, first.start or first.datetime, second.end or second.datetime)
    item = new_item("change", path, out_dir / "change.tif", acquired, started, f"land-cover change {before} -> {after}")
    change = add_file_asset(item, "change", out_dir / "change.tif", "change map: from-to codes", ["data"])
    unused = [index for index, name in enumerate(codes.names) if name.endswith("(not used)")]
    add_raster_bands(change, out_dir / "change.tif", [
        code for code in class_objects(codes, NODATA_CLASS, "no_class") if code.value not in unused
    ])  # fmt: skip
    add_file_asset(item, "style", out_dir / "change.qml", "QGIS legend of the change map", ["metadata"])
    add_file_asset(item, "from_to_json", out_dir / "from_to.json", "from-to table: pixels and hectares", ["metadata"])
    add_file_asset(item, "from_to_csv", out_dir / "from_to.csv", "from-to table (CSV)", ["metadata"])
    for when, map_path in (("date 1", before), ("date 2", after)):
        href = os.path.relpath(Path(map_path).resolve(), out_dir.resolve())
        media_type = MEDIA_TYPES.get(Path(map_path).suffix.lower())
        item.add_link(pystac.Link("derived_from", href, media_type, f"the class map of {when}"))
    write_item(item, path)
    return path


# ---- validation ---------------------------------------------------------------------------------------------


def is_date_time(value: object) -> bool:
    """RFC 3339's date-time (the schemas' `format: date-time`, which jsonschema checks only with a package not
    installed here): a date, T, a time, and its offset from UTC."""
    if not isinstance(value, str):
        return True  # the schema's type says what is wrong
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return moment.tzinfo is not None and value[10:11] in ("T", "t")


# the formats jsonschema checks by itself, and date-time
FORMATS = jsonschema.FormatChecker()
FORMATS.checks("date-time")(is_date_time)


@functools.cache
def schema_registry() -> referencing.Registry:
    """Every vendored schema by its URL (its path under stac_schemas/ after https://) and its own $id, with
    JSON Schema's metaschemas; the registry retrieves nothing: a reference outside it is unresolvable."""
    resources = []
    for path in sorted(SCHEMAS.rglob("*.json")):
        contents = json.loads(path.read_text())
        resource = referencing.jsonschema.DRAFT7.create_resource(contents)
        url = "https://" + path.relative_to(SCHEMAS).as_posix()
        resources.append((url, resource))
        declared = str(contents.get("$id", "")).rstrip("#")
        if declared and declared != url:
            resources.append((declared, resource))
    return METASCHEMAS.with_resources(resources).crawl()


def schema_of(url: str) -> dict:
    """The vendored schema of `url`; PipelineError where there is none."""
    try:
        return schema_registry().contents(url.rstrip("#"))
    except referencing.exceptions.NoSuchResource:
        raise PipelineError(f"{url}: no vendored schema for it in {SCHEMAS} (it is never fetched)") from None


def schema_problems(document: dict, schema: dict) -> list[str]:
    """Where `document` breaks `schema` (the most relevant error of each failing branch), each as `field: why`;
    PipelineError naming a reference the registry cannot resolve."""
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator = validator_class(schema, registry=schema_registry(), format_checker=FORMATS)
    try:
        errors = list(validator.iter_errors(document))
    except referencing.exceptions.Unresolvable as error:
        raise PipelineError(f"schema reference {error} cannot be resolved offline: it is not vendored") from None
    best = jsonschema.exceptions.best_match(errors)
    if best is None:
        return []
    best = deepest(best)
    message = best.message if len(best.message) <= MESSAGE_CHARS else best.message[:MESSAGE_CHARS] + " ..."
    return [f"{field_of(best)}: {message}"]


def deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The error's most specific cause: through each failed oneOf/anyOf/allOf, the sub-error deepest in the
    document (an Item failing a schema's Collection branch at `type` fails its Item branch deeper)."""
    while error.context:
        error = max(error.context, key=lambda sub: len(sub.absolute_path))
    return error


def field_of(error: jsonschema.ValidationError) -> str:
    """The document's field an error is about, as a path: assets/classes/raster:bands/0/data_type."""
    path = "/".join(str(part) for part in error.absolute_path)
    return path or "(the document)"


CORE_SCHEMAS = {
    "Feature": "https://schemas.stacspec.org/v{}/item-spec/json-schema/item.json",
    "Collection": "https://schemas.stacspec.org/v{}/collection-spec/json-schema/collection.json",
    "Catalog": "https://schemas.stacspec.org/v{}/catalog-spec/json-schema/catalog.json",
}


def document_problems(document: dict) -> list[str]:
    """A STAC document's schema problems: against its type's core schema and each extension it lists."""
    kind, version = document.get("type"), document.get("stac_version")
    if kind not in CORE_SCHEMAS or not isinstance(version, str):
        return [f"type/stac_version: not a STAC Item, Collection or Catalog ({kind!r}, {version!r})"]
    problems = [f"[STAC {kind} {version}] {problem}" for problem in
                schema_problems(document, schema_of(CORE_SCHEMAS[kind].format(version)))]  # fmt: skip
    for url in document.get("stac_extensions", []):
        problems += [f"[{url}] {problem}" for problem in schema_problems(document, schema_of(url))]
    return problems


def file_problems(document: dict, path: Path, root: Path) -> list[str]:
    """Each local asset's size and sha256 against the file; every relative link and asset href inside `root`
    must lead to a file."""
    problems = []
    for key, asset in document.get("assets", {}).items():
        target = (path.parent / asset["href"]).resolve()
        if not target.is_file():
            if root in target.parents:
                problems.append(f"assets/{key}/href: {asset['href']} is not a file")
            continue
        checksum, size = asset.get("file:checksum"), asset.get("file:size")
        if checksum is not None and checksum != multihash(file_sha256(target)):
            problems.append(f"assets/{key}/file:checksum: does not match {asset['href']}'s sha256")
        if size is not None and size != target.stat().st_size:
            problems.append(f"assets/{key}/file:size: {size}, but {asset['href']} has {target.stat().st_size} bytes")
    for index, link in enumerate(document.get("links", [])):
        href = link.get("href", "")
        if "://" in href or os.path.isabs(href):
            continue
        target = (path.parent / href).resolve()
        if root in target.parents and not target.exists():
            problems.append(f"links/{index}/href: {href} ({link.get('rel')}) is not a file")
    return problems


def stac_files(paths: Iterable[Path]) -> list[Path]:
    """The STAC JSON files among `paths` and in the folders among them (recursively, by `stac_version`)."""
    found = []
    for given in paths:
        candidates = sorted(Path(given).rglob("*.json")) if Path(given).is_dir() else [Path(given)]
        for path in candidates:
            if not path.is_file():
                raise PipelineError(f"{path}: file not found")
            try:
                document = json.loads(path.read_text())
            except ValueError as error:
                if not Path(given).is_dir():
                    raise PipelineError(f"{path}: not JSON ({error})") from None
                continue
            if isinstance(document, dict) and "stac_version" in document:
                found.append(path)
            elif not Path(given).is_dir():
                raise PipelineError(f"{path}: not a STAC document (no stac_version)")
    return found


def validate_stac(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """(the STAC files checked, their problems as `file: field: why` lines) for the files and folders `paths`."""
    files = stac_files(paths)
    problems = []
    for path in files:
        document = json.loads(path.read_text())
        root = _root_of(path, paths).resolve()
        for problem in document_problems(document) + file_problems(document, path, root):
            problems.append(f"{path}: {problem}")
    return files, problems


def _root_of(path: Path, paths: Sequence[Path]) -> Path:
    """The folder given in `paths` that holds `path` (its own folder where none does)."""
    for given in paths:
        if Path(given).is_dir() and Path(given).resolve() in path.resolve().parents:
            return Path(given)
    return path.parent
