"""Mapping a scene of any size: its blended window probabilities streamed a strip of rows at a time
(inference.blending.SlidingWindows.strips, on the device the probabilities come from), and the files they become:
the rasters of geo.map_outputs (class map, confidence, probabilities), area report, polygons. Each strip's rows
are made on the device (only the uint8 maps reach the host) and written a block row at a time, so peak memory is
set by the scene's width, not its height (measured in docs/mapping.md)."""

from __future__ import annotations

import csv
import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
from tqdm import tqdm

from landcover.data.naming import image_id_of
from landcover.data.palette import ClassTable
from landcover.geo.areas import MAP_AREAS, AreaCounter, PixelAreas, pixel_areas
from landcover.geo.georaster import (
    BLOCKSIZE,
    NODATA_CLASS,
    BlockRowWriter,
    ReadOptions,
    Scene,
    gdal_env,
    open_scene,
    scratch_file,
    warn,
)
from landcover.geo.map_outputs import CLASSES, CONFIDENCE, PROBABILITIES, MapOutput, WholeImage
from landcover.geo.polygons import class_polygons, write_geopackage
from landcover.inference.blending import ProbabilityFn, SlidingWindows
from landcover.io.outputs import atomic_file
from landcover.io.params import PredictParams
from landcover.io.rasters import is_jpeg_or_png
from landcover.io.sources import Source


@dataclass(frozen=True)
class MapOptions:
    """What the mapping command writes besides the class map (docs/mapping.md)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    pixel_size: float | None = None  # metres, for images without a CRS
    confidence: bool = False
    probabilities: bool = False
    polygons: bool = False
    min_area_ha: float = 0.0  # polygons smaller than this are left out
    blocksize: int = BLOCKSIZE

    @property
    def outputs(self) -> tuple[MapOutput, ...]:
        """The rasters written: the class map, and the others asked for."""
        chosen = {CLASSES: True, CONFIDENCE: self.confidence, PROBABILITIES: self.probabilities}
        return tuple(output for output, wanted in chosen.items() if wanted)


def output_names(image_id: str, is_raster: bool, options: MapOptions) -> dict[str, str]:
    """{role: file name} of what one scene's mapping writes."""
    names = {role: name for output in options.outputs for role, name in output.names(image_id, is_raster).items()}
    names["areas_json"], names["areas_csv"] = f"{image_id}_areas.json", f"{image_id}_areas.csv"
    if options.polygons:
        names["polygons"] = f"{image_id}_polygons.gpkg"
    return names


def written_as_raster(where: Path | Source) -> bool:
    """Whether map_file writes the scene it reads from `where` (a path, or a remote raster read in place) as
    rasters (COGs), not as PNGs (a JPEG's or PNG's)."""
    return isinstance(where, Source) or not is_jpeg_or_png(where)


def scene_areas(scene: Scene, pixel_size: float | None) -> tuple[PixelAreas | None, str | None]:
    """How big the scene's pixels are, with one warning line where the area report can give no hectares."""
    if scene.crs is not None and pixel_size is not None:
        warn(f"{scene.path}: --pixel-size ignored: the raster's CRS gives its pixel size")
    areas, reason = pixel_areas(
        scene.crs, scene.transform, scene.width, scene.height, pixel_size if scene.crs is None else None
    )
    if scene.is_raster and scene.crs is None:
        tail = (
            f"areas come from --pixel-size {pixel_size:g} m"
            if areas is not None
            else "the area report has no hectares (give --pixel-size METRES for them)"
        )
        warn(f"{scene.path}: raster has no CRS: its maps are written without one, and {tail}")
    elif areas is None and not scene.is_raster:
        reason = "a JPEG or PNG carries no pixel size (give --pixel-size METRES; DeepGlobe's is 0.5)"
        warn(f"{scene.path}: no hectares in the area report: {reason}")
    elif areas is None:
        warn(f"{scene.path}: no hectares in the area report: {reason}")
    return areas, reason


def area_report(scene: Scene, table: ClassTable, counter: AreaCounter, reason: str | None) -> dict:
    hectares = counter.hectares()
    areas = counter.areas
    classes = [
        {
            "class_id": index,
            "class": name,
            "pixels": int(counter.pixels[index]),
            "hectares": None if hectares is None else float(hectares[index]),
        }
        for index, name in enumerate(table.names)
    ]
    return {
        "image": str(scene.path),
        "areas": MAP_AREAS,
        "width": scene.width,
        "height": scene.height,
        "crs": None if scene.crs is None else scene.crs.to_string(),
        "area_method": None if areas is None else areas.method,
        "no_areas_because": None if areas is not None else reason,
        "pixel_area_m2": None if areas is None else areas.pixel_area_m2,
        "classes": classes,
        "predicted_pixels": int(counter.pixels[: len(table)].sum()),
        "no_prediction_pixels": int(counter.pixels[NODATA_CLASS]),
        "predicted_hectares": None if hectares is None else float(hectares[: len(table)].sum()),
    }


def write_area_files(report: dict, json_path: Path, csv_path: Path) -> None:
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    with open(csv_path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["class_id", "class", "pixels", "map_hectares"])
        for row in report["classes"]:
            writer.writerow(
                [row["class_id"], row["class"], row["pixels"], "" if row["hectares"] is None else repr(row["hectares"])]
            )


def map_file(
    path: Path | Source,
    out_dir: Path,
    probability_fn: ProbabilityFn,
    table: ClassTable,
    predict_params: PredictParams,
    options: MapOptions,
    shown_as: Path | Source | None = None,
) -> dict:
    """Map one image (a file, or a Source: a remote raster read in place) into `out_dir`: every file written whole
    or not at all. Returns its area report. Messages and the report name the image `shown_as` where `path` is a
    stand-in for it (a remote JPEG's or PNG's temporary copy)."""
    path, out_dir = path if isinstance(path, Source) else Path(path), Path(out_dir)
    image_id = image_id_of(Path(path.name))
    with gdal_env(), open_scene(path, options.read, shown_as) as scene, ExitStack() as stack:
        areas, reason = scene_areas(scene, options.pixel_size)
        if options.polygons and options.min_area_ha > 0 and areas is None:
            warn(f"{scene.path}: --min-area not applied: the polygons have no areas")
        names = output_names(image_id, scene.is_raster, options)
        staged = {role: stack.enter_context(atomic_file(out_dir / name)) for role, name in names.items()}
        writers = _writers(scene, table, options, {role: out_dir / name for role, name in names.items()}, stack)
        counter = AreaCounter(len(table), areas)
        windows = SlidingWindows.of(probability_fn, len(table), predict_params)
        try:
            _stream(scene, windows, options.outputs, writers, counter, image_id)
        finally:
            for writer in writers.values():
                if isinstance(writer, BlockRowWriter):
                    writer.close()
        if not all(writer.complete for writer in writers.values()):
            raise RuntimeError(f"{scene.path}: the maps are missing rows")
        for output in options.outputs:
            output.finish(writers[output.role], staged, table, options.blocksize)
        report = area_report(scene, table, counter, reason)
        write_area_files(report, staged["areas_json"], staged["areas_csv"])
        if options.polygons:
            report["polygons"] = _write_polygons(
                scene, table, writers[CLASSES.role], staged["polygons"], areas, options
            )
    return report


def _writers(
    scene: Scene, table: ClassTable, options: MapOptions, finals: dict[str, Path], stack: ExitStack
) -> dict[str, BlockRowWriter | WholeImage]:
    """Where each output's rows go: whole arrays for PNGs, else scratch GeoTIFFs beside the final files (deleted as
    `stack` closes) that become the COGs."""
    writers = {}
    for output in options.outputs:
        png = output.is_png(scene.is_raster)
        scratch = None if png else stack.enter_context(scratch_file(finals[output.role]))
        writers[output.role] = output.writer(scene, table, scratch, options.blocksize)
    return writers


def _write_polygons(
    scene: Scene,
    table: ClassTable,
    classes: BlockRowWriter | WholeImage,
    staged: Path,
    areas: PixelAreas | None,
    options: MapOptions,
) -> int:
    """The class map's regions (its scratch GeoTIFF or its array) as a GeoPackage of polygons; returns how many."""
    if isinstance(classes, BlockRowWriter):
        with rasterio.open(classes.path) as classes_raster:
            columns = class_polygons(
                rasterio.band(classes_raster, 1), scene.transform, table, areas, options.min_area_ha
            )
    else:
        columns = class_polygons(classes.array, scene.transform, table, areas, options.min_area_ha)
    write_geopackage(staged, columns, scene.crs)
    return len(columns["class_id"])


def _stream(
    scene: Scene,
    windows: SlidingWindows,
    outputs: tuple[MapOutput, ...],
    writers: dict[str, BlockRowWriter | WholeImage],
    counter: AreaCounter,
    label: str,
) -> None:
    """Every output's rows written as each strip of the scene's probabilities is final; the class map's counted for
    the area report."""
    _, origins = windows.plan(scene.height, scene.width)
    with tqdm(total=len(origins), desc=label, unit="window", leave=False) as bar:
        for top, probs, has_data in windows.strips(scene, bar.update):
            strip = {output.role: output.rows(probs, has_data) for output in outputs}
            del probs
            for role, rows in strip.items():
                writers[role].write_rows(rows, has_data)
            counter.add(top, strip[CLASSES.role])
