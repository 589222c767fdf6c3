"""The rasters mapping writes per scene, as values of one type: each output's file name, bands, type and nodata, how
its rows come from a strip of blended probabilities, and how it is finished (docs/mapping.md). geo.mapping streams
every chosen output alike: block rows of a scratch GeoTIFF copied into a COG, or for a JPEG or PNG input, whole
arrays written as PNGs where the output has one band."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landcover.data.palette import ClassTable, index_to_colour
from landcover.geo.georaster import (
    NODATA_CLASS,
    NODATA_CONFIDENCE,
    BlockRowWriter,
    Scene,
    class_colormap,
    qgis_style,
    write_cloud_optimized,
)
from landcover.inference.blending import classes_of, confidence_of, times_255
from landcover.io.imageio import write_png


class WholeImage:
    """A one-band output's rows collected into a whole array, for JPEG/PNG scenes (already whole in memory)."""

    def __init__(self, height: int, width: int, fill: int) -> None:
        self.array = np.full((height, width), fill, dtype=np.uint8)
        self.top = 0

    def write_rows(self, rows: np.ndarray, has_data: np.ndarray) -> None:
        self.array[self.top : self.top + len(rows)] = rows
        self.top += len(rows)

    @property
    def complete(self) -> bool:
        return self.top == len(self.array)


@dataclass(frozen=True)
class MapOutput:
    """One raster a scene's mapping writes, a strip of rows at a time.

    Its uint8 rows are `values` of each strip's (classes, h, W) probabilities: (h, W) for one band, (bands, h, W)
    for one per `band_names`; pixels without data get `fill`, which is the GeoTIFF's nodata value unless `masked`
    (every value being a valid one, an internal mask band marks them instead). `legend`: the values are classes,
    and the output carries the class colour table and names, with a QGIS style beside its COG or a colours PNG
    beside its PNG."""

    role: str  # its key among a scene's output names
    suffix: str  # after the image id, before .tif or .png
    band_names: Callable[[ClassTable], tuple[str, ...]]  # the band descriptions: as many as it has bands
    values: Callable[[torch.Tensor], np.ndarray]
    fill: int
    resampling: str  # of the COG's overviews, as GDAL names it
    masked: bool = False
    png: bool = True  # a JPEG or PNG input gets it as a PNG, else (several bands) as a GeoTIFF without georeference
    legend: bool = False

    def is_png(self, is_raster: bool) -> bool:
        return self.png and not is_raster

    def names(self, image_id: str, is_raster: bool) -> dict[str, str]:
        """{role: file name} of the output and what accompanies it."""
        stem = f"{image_id}{self.suffix}"
        if self.is_png(is_raster):
            return {self.role: f"{stem}.png", **({"colours": f"{stem}_colour.png"} if self.legend else {})}
        return {self.role: f"{stem}.tif", **({"style": f"{stem}.qml"} if self.legend else {})}

    def rows(self, probs: torch.Tensor, has_data: np.ndarray) -> np.ndarray:
        """The output's rows of one strip of blended probabilities."""
        rows = self.values(probs)
        rows[..., ~has_data] = self.fill
        return rows

    def writer(
        self, scene: Scene, table: ClassTable, scratch: Path | None, blocksize: int
    ) -> BlockRowWriter | WholeImage:
        """Where its rows go: a whole array for a PNG, else block rows of the tiled GeoTIFF `scratch`."""
        if self.is_png(scene.is_raster):
            return WholeImage(scene.height, scene.width, self.fill)
        assert scratch is not None, "a GeoTIFF output is streamed into a scratch file"
        tags = {"CLASS_NAMES": ",".join(table.names), "NODATA_MEANING": f"{self.fill}: no prediction (no data)"}
        return BlockRowWriter(
            scratch,
            scene.width,
            scene.height,
            scene.crs,
            scene.transform,
            None if self.masked else self.fill,
            blocksize,
            colormap=class_colormap(table) if self.legend else None,
            tags=tags if self.legend else None,
            descriptions=self.band_names(table),
            mask=self.masked,
        )

    def finish(
        self, writer: BlockRowWriter | WholeImage, staged: dict[str, Path], table: ClassTable, blocksize: int
    ) -> None:
        """The written rows into the output's staged files: a COG (and style) or a PNG (and its colours)."""
        if isinstance(writer, WholeImage):
            write_png(staged[self.role], writer.array)
            if self.legend:
                write_png(staged["colours"], index_to_colour(writer.array, table))
            return
        write_cloud_optimized(writer.path, staged[self.role], self.resampling, blocksize)
        if self.legend:
            staged["style"].write_text(qgis_style(table))


CLASSES = MapOutput("classes", "", lambda table: ("land cover class",), classes_of, NODATA_CLASS, "MODE", legend=True)
CONFIDENCE = MapOutput(
    "confidence",
    "_confidence",
    lambda table: ("confidence: max class probability x 255",),
    confidence_of,
    NODATA_CONFIDENCE,
    "AVERAGE",
)
# Where a model's probabilities are temperature-scaled, these are the scaled ones: what the blend is made of.
PROBABILITIES = MapOutput(
    "probabilities",
    "_probabilities",
    lambda table: tuple(table.names),
    times_255,
    0,
    "AVERAGE",
    masked=True,
    png=False,
)
