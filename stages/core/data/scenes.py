"""Finding the scenes of a dataset: an image raster and its labels each, in the layouts the pipeline reads.

A scene is one image (a GeoTIFF or any raster GDAL reads, or a JPEG/PNG) and its labels: a class-index
raster, a colour-coded raster, or a vector file of polygons with a class attribute (docs/data.md,
"Your own data"). `data.layout` says how they are found under `data.raw`:
- `scenes`: a manifest `scenes.csv` with columns scene_id,image,labels (paths relative to data.raw);
- `landcoverai`: LandCover.ai's `images/<name>.tif` and `masks/<name>.tif`;
- `openearthmap`: OpenEarthMap's `<region>/images/<name>.tif` and `<region>/labels/<name>.tif`;
- `loveda`: LoveDA's `{Train,Val}/{Urban,Rural}/images_png/<k>.png` and `masks_png/<k>.png`.
(`deepglobe`, the default, is rawdata's: JPEG images and colour PNG masks.)
The class table is `classes.csv` under data.raw where there is one, else the preset's
(`presets/<layout>/classes.csv`); a `scenes` dataset must bring its own.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from stages.core.data.labels import VECTOR_SUFFIXES
from stages.core.data.naming import ID_PATTERN, natural_key
from stages.core.data.palette import ClassTable
from stages.core.io.errors import PipelineError
from stages.core.io.textfiles import read_utf8

SCENE_LAYOUTS = ("scenes", "landcoverai", "openearthmap", "loveda")
LAYOUTS = ("deepglobe", *SCENE_LAYOUTS)
MANIFEST = "scenes.csv"
MANIFEST_COLUMNS = ("scene_id", "image", "labels")
CLASS_TABLE = "classes.csv"


@dataclass(frozen=True)
class SceneFiles:
    """One scene as found under data.raw: its id, its image file and its labels file."""

    scene_id: str
    image: Path
    labels: Path

    @property
    def labels_are_vector(self) -> bool:
        return self.labels.suffix.lower() in VECTOR_SUFFIXES


def scene_class_table(root: Path, layout: str) -> ClassTable:
    """`classes.csv` under `root` if there is one, else the preset's table for `layout`."""
    own = Path(root) / CLASS_TABLE
    if own.is_file():
        return ClassTable.from_csv(own)
    if layout == "scenes":
        raise PipelineError(f"data.raw: {own} not found; a '{layout}' dataset needs its class table there")
    return ClassTable.preset(layout)  # the presets' tables ship with the pipeline (a dvc.yaml dep of tile)


def find_scenes(root: str | Path, layout: str) -> list[SceneFiles]:
    """Every labelled scene under `root` in `layout`, sorted by id; each file must exist inside `root`."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"data.raw: {root} does not exist or is not a directory")
    finders = {"scenes": _from_manifest, "landcoverai": _landcoverai, "openearthmap": _openearthmap, "loveda": _loveda}
    if layout not in finders:
        raise PipelineError(f"data.layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    scenes = finders[layout](root)
    if not scenes:
        raise PipelineError(f"data.raw: no labelled scenes found in {root} (data.layout {layout})")
    seen: dict[str, SceneFiles] = {}
    for scene in scenes:
        if not ID_PATTERN.match(scene.scene_id):
            raise PipelineError(f"{scene.image}: scene id {scene.scene_id!r} must be letters, digits, '.' or '-'")
        if scene.scene_id in seen:
            raise PipelineError(f"{scene.image}: scene id {scene.scene_id!r} is also {seen[scene.scene_id].image}'s")
        seen[scene.scene_id] = scene
        for path in (scene.image, scene.labels):
            if not path.resolve().is_relative_to(root.resolve()):
                raise PipelineError(f"{path}: leads to {path.resolve()}, outside data.raw ({root})")
            if not path.is_file():
                raise PipelineError(f"{path}: file not found (scene {scene.scene_id})")
    return sorted(scenes, key=lambda scene: natural_key(scene.scene_id))


def _from_manifest(root: Path) -> list[SceneFiles]:
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise PipelineError(f"data.raw: {manifest} not found (columns {','.join(MANIFEST_COLUMNS)})")
    reader = csv.DictReader(io.StringIO(read_utf8(manifest, "scene manifest"), newline=""))
    try:
        missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{manifest}: missing column {missing[0]!r} (expected {','.join(MANIFEST_COLUMNS)})")
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise PipelineError(f"{manifest}, line {reader.line_num}: not a CSV table ({error})") from None
    scenes = []
    for line, row in rows:
        if not all((row[column] or "").strip() for column in MANIFEST_COLUMNS):
            raise PipelineError(f"{manifest}, line {line}: scene_id, image and labels must all be given")
        scenes.append(SceneFiles(row["scene_id"].strip(), root / row["image"].strip(), root / row["labels"].strip()))
    return scenes


def _pairs(images: list[Path], labels_of, id_of) -> list[SceneFiles]:
    """A scene per image whose labels file exists; an image without one is refused, naming it."""
    scenes = []
    for image in images:
        labels = labels_of(image)
        if not labels.is_file():
            raise PipelineError(f"{image}: no labels {labels} beside it")
        scenes.append(SceneFiles(id_of(image), image, labels))
    return scenes


def _landcoverai(root: Path) -> list[SceneFiles]:
    images = sorted((root / "images").glob("*.tif"))
    return _pairs(images, lambda image: root / "masks" / image.name, lambda image: image.stem)


def _openearthmap(root: Path) -> list[SceneFiles]:
    # Its names are <region>_<k>: ids become tile-name prefixes (<id>_y..._x...), so '_' becomes '-'.
    images = sorted(root.glob("*/images/*.tif"))
    return _pairs(
        images, lambda image: image.parent.parent / "labels" / image.name, lambda image: image.stem.replace("_", "-")
    )


def _loveda(root: Path) -> list[SceneFiles]:
    # Test/ has no masks; Train/ and Val/ do. Ids say where a scene comes from: train-urban-1366.
    images = sorted(
        path
        for split in ("Train", "Val")
        for domain in ("Urban", "Rural")
        for path in (root / split / domain / "images_png").glob("*.png")
    )
    return _pairs(
        images,
        lambda image: image.parent.parent / "masks_png" / image.name,
        lambda image: f"{image.parents[2].name.lower()}-{image.parents[1].name.lower()}-{image.stem}",
    )
