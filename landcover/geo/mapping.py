"""Mapping a scene of any size: its blended window probabilities streamed a strip of rows at a time
(inference.blending.blended_strips, on the device the probabilities come from), and the files they become:
class map, confidence, area report, polygons. Each strip's classes are made on the device (only the uint8
maps reach the host) and written a block row at a time, so peak memory is set by the scene's width, not its
height (measured in docs/mapping.md)."""

from __future__ import annotations

import csv
import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from tqdm import tqdm

from landcover.data.naming import image_id_of
from landcover.data.palette import ClassTable, index_to_colour
from landcover.geo.areas import AreaCounter, PixelAreas, pixel_areas
from landcover.geo.georaster import (
    BLOCKSIZE,
    NODATA_CLASS,
    NODATA_CONFIDENCE,
    BlockRowWriter,
    ReadOptions,
    Scene,
    class_colormap,
    gdal_env,
    open_scene,
    qgis_style,
    scratch_file,
    warn,
    write_cloud_optimized,
)
from landcover.geo.polygons import class_polygons, write_geopackage
from landcover.inference.blending import ProbabilityFn, blended_strips, classes_of, plan_windows
from landcover.io.imageio import write_png
from landcover.io.outputs import atomic_file
from landcover.io.params import PredictParams
from landcover.io.sources import Source


def classes_and_confidence(
    probs: torch.Tensor, has_data: np.ndarray, confidence: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 class indices (255 without data) and, if asked, round(max probability x 255) (0 without data):
    computed on the probabilities' device, only the uint8 maps copied to the host."""
    classes, certainty = classes_of(torch.as_tensor(probs), confidence)
    classes[~has_data] = NODATA_CLASS
    if certainty is not None:
        certainty[~has_data] = NODATA_CONFIDENCE
    return classes, certainty


@dataclass(frozen=True)
class MapOptions:
    """What the mapping command writes besides the class map (docs/mapping.md)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    pixel_size: float | None = None  # metres, for images without a CRS
    confidence: bool = False
    polygons: bool = False
    min_area_ha: float = 0.0  # polygons smaller than this are left out
    blocksize: int = BLOCKSIZE


def output_names(image_id: str, is_raster: bool, options: MapOptions) -> dict[str, str]:
    """{role: file name} of what one scene's mapping writes."""
    names = (
        {"classes": f"{image_id}.tif", "style": f"{image_id}.qml"}
        if is_raster
        else {"classes": f"{image_id}.png", "colours": f"{image_id}_colour.png"}
    )
    if options.confidence:
        names["confidence"] = f"{image_id}_confidence.{'tif' if is_raster else 'png'}"
    names["areas_json"], names["areas_csv"] = f"{image_id}_areas.json", f"{image_id}_areas.csv"
    if options.polygons:
        names["polygons"] = f"{image_id}_polygons.gpkg"
    return names


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
        writer.writerow(["class_id", "class", "pixels", "hectares"])
        for row in report["classes"]:
            writer.writerow(
                [row["class_id"], row["class"], row["pixels"], "" if row["hectares"] is None else repr(row["hectares"])]
            )


class _WholeImage:
    """Rows collected into whole arrays, for JPEG/PNG scenes (already whole in memory)."""

    def __init__(self, height: int, width: int, fill: int) -> None:
        self.array = np.full((height, width), fill, dtype=np.uint8)
        self.top = 0

    def write_rows(self, rows: np.ndarray) -> None:
        self.array[self.top : self.top + len(rows)] = rows
        self.top += len(rows)

    @property
    def complete(self) -> bool:
        return self.top == len(self.array)


def map_file(
    path: Path | Source,
    out_dir: Path,
    probability_fn: ProbabilityFn,
    table: ClassTable,
    predict_params: PredictParams,
    options: MapOptions,
) -> dict:
    """Map one image (a file, or a Source: a remote raster read in place) into `out_dir`: every file written whole
    or not at all. Returns its area report."""
    path, out_dir = path if isinstance(path, Source) else Path(path), Path(out_dir)
    image_id = image_id_of(Path(path.name))
    with gdal_env(), open_scene(path, options.read) as scene, ExitStack() as stack:
        areas, reason = scene_areas(scene, options.pixel_size)
        if options.polygons and options.min_area_ha > 0 and areas is None:
            warn(f"{path}: --min-area not applied: the polygons have no areas")
        names = output_names(image_id, scene.is_raster, options)
        staged = {role: stack.enter_context(atomic_file(out_dir / name)) for role, name in names.items()}
        sinks: dict[str, Path] = {
            role: stack.enter_context(scratch_file(out_dir / names[role]))
            for role in ("classes", "confidence")
            if scene.is_raster and role in names
        }
        writers = _map_writers(scene, table, names, sinks, options.blocksize)
        counter = AreaCounter(len(table), areas)
        try:
            _stream(scene, probability_fn, table, predict_params, options.confidence, writers, counter, image_id)
        finally:
            for writer in writers.values():
                if isinstance(writer, BlockRowWriter):
                    writer.close()
        if not all(writer.complete for writer in writers.values()):
            raise RuntimeError(f"{path}: the class map is missing rows")
        _write_maps(scene, table, writers, sinks, staged, options)
        report = area_report(scene, table, counter, reason)
        write_area_files(report, staged["areas_json"], staged["areas_csv"])
        if options.polygons:
            report["polygons"] = _write_polygons(scene, table, writers, sinks, staged["polygons"], areas, options)
    return report


def _map_writers(
    scene: Scene, table: ClassTable, names: dict[str, str], sinks: dict[str, Path], blocksize: int
) -> dict:
    """Where the class (and confidence) rows go: block rows of scratch GeoTIFFs for a raster, whole arrays else."""
    if scene.is_raster:
        return _raster_writers(scene, table, sinks, blocksize)
    return {
        role: _WholeImage(scene.height, scene.width, fill)
        for role, fill in (("classes", NODATA_CLASS), ("confidence", NODATA_CONFIDENCE))
        if role in names
    }


def _write_maps(
    scene: Scene, table: ClassTable, writers: dict, sinks: dict[str, Path], staged: dict[str, Path], options: MapOptions
) -> None:
    """The finished maps into their staged files: COGs and a QGIS legend for a raster, PNGs for a JPEG or PNG."""
    if scene.is_raster:
        write_cloud_optimized(sinks["classes"], staged["classes"], "MODE", options.blocksize)
        if options.confidence:
            write_cloud_optimized(sinks["confidence"], staged["confidence"], "AVERAGE", options.blocksize)
        staged["style"].write_text(qgis_style(table))
        return
    classes = writers["classes"].array
    write_png(staged["classes"], classes)
    write_png(staged["colours"], index_to_colour(classes, table))
    if options.confidence:
        write_png(staged["confidence"], writers["confidence"].array)


def _write_polygons(
    scene: Scene,
    table: ClassTable,
    writers: dict,
    sinks: dict[str, Path],
    staged: Path,
    areas: PixelAreas | None,
    options: MapOptions,
) -> int:
    """The class map's regions as a GeoPackage of polygons; returns how many."""
    if scene.is_raster:
        with rasterio.open(sinks["classes"]) as classes_raster:
            columns = class_polygons(
                rasterio.band(classes_raster, 1), scene.transform, table, areas, options.min_area_ha
            )
    else:
        columns = class_polygons(writers["classes"].array, scene.transform, table, areas, options.min_area_ha)
    write_geopackage(staged, columns, scene.crs)
    return len(columns["class_id"])


def _raster_writers(scene: Scene, table: ClassTable, paths: dict[str, Path], blocksize: int) -> dict:
    writers = {
        "classes": BlockRowWriter(
            paths["classes"],
            scene.width,
            scene.height,
            scene.crs,
            scene.transform,
            NODATA_CLASS,
            blocksize,
            colormap=class_colormap(table),
            description="land cover class",
            tags={"CLASS_NAMES": ",".join(table.names), "NODATA_MEANING": f"{NODATA_CLASS}: no prediction (no data)"},
        )
    }
    if "confidence" in paths:
        writers["confidence"] = BlockRowWriter(
            paths["confidence"],
            scene.width,
            scene.height,
            scene.crs,
            scene.transform,
            NODATA_CONFIDENCE,
            blocksize,
            description="confidence: max class probability x 255",
        )
    return writers


def _stream(
    scene: Scene,
    probability_fn: ProbabilityFn,
    table: ClassTable,
    predict_params: PredictParams,
    confidence: bool,
    writers: dict,
    counter: AreaCounter,
    label: str,
) -> None:
    _, origins = plan_windows(scene.height, scene.width, predict_params.window, predict_params.overlap)
    with tqdm(total=len(origins), desc=label, unit="window", leave=False) as bar:
        for top, probs, has_data in blended_strips(
            probability_fn,
            scene,
            len(table),
            predict_params.window,
            predict_params.overlap,
            predict_params.batch_size,
            bar.update,
        ):
            classes, certainty = classes_and_confidence(probs, has_data, confidence)
            del probs
            writers["classes"].write_rows(classes)
            if confidence:
                writers["confidence"].write_rows(certainty)
            counter.add(top, classes)
