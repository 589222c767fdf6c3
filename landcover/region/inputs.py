"""A region's scenes, from what `--input` names: raster files, folders, globs, text lists of paths, and STAC
ItemCollections or Catalogs (local JSON read with pystac) whose assets are local files or URLs. Each scene's
source is an io.sources.Source: which paths and URLs are read, and how, is decided there.

Each scene keeps the order it was given in (a folder's and a glob's files sorted by name; a list's lines and
a catalog's items in their order): where scenes overlap in the mosaic, the first one wins. A scene's outputs
are named by its file's name (as the mapping command names them), so two scenes whose files share a name
are refused before anything runs.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pystac

from landcover.data.naming import image_id_of
from landcover.geo.stac import Acquisition
from landcover.io.errors import PipelineError
from landcover.io.sources import Source, located, parse_source

# Files a folder is searched for (by name): the rasters GDAL reads that imagery usually comes in.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".vrt")
LIST_SUFFIXES = (".txt", ".list")
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class SceneInput:
    """One scene to map: its id (the name of its outputs, after its file's name), where it is, and when it was
    taken where that is known (a STAC item's datetime: its maps' STAC Item keeps it)."""

    id: str
    source: Source
    acquired: Acquisition | None = None


def scene_of(text: str, folder: Path | None = None) -> SceneInput:
    """A scene by its path (a relative one from `folder`, made absolute: workers may run elsewhere than here),
    URL or GDAL path."""
    source = located(text, folder)
    return SceneInput(image_id_of(Path(source.name)), source)


def region_scenes(inputs: list[str], asset: str | None = None) -> list[SceneInput]:
    """Every scene the inputs name, in order; PipelineError naming the input that cannot be read, names
    no scene, or whose scene's outputs would take another's names."""
    scenes: list[SceneInput] = []
    for given in inputs:
        scenes.extend(scenes_of(given, asset))
    if not scenes:
        raise PipelineError(f"{' '.join(inputs)}: --input names no scene")
    by_id: dict[str, SceneInput] = {}
    for scene in scenes:
        other = by_id.setdefault(scene.id, scene)
        if other is not scene:
            if other.source == scene.source:
                raise PipelineError(f"{scene.source}: given twice in --input")
            raise PipelineError(
                f"{scene.source}: its outputs would replace those of {other.source} (both are named {scene.id})"
            )
    return scenes


def scenes_of(given: str, asset: str | None) -> list[SceneInput]:
    if not parse_source(given).is_plain_path:  # a URL or GDAL path: one scene
        return [scene_of(given)]
    if any(character in given for character in GLOB_CHARACTERS) and not Path(given).exists():
        matches = sorted(glob.glob(given))
        if not matches:
            raise PipelineError(f"{given}: no file matches this pattern")
        return [scene_of(match) for match in matches if Path(match).is_file()]
    path = Path(given)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
        if not files:
            raise PipelineError(f"{path}: folder holds no raster ({', '.join(RASTER_SUFFIXES)})")
        return [scene_of(str(p)) for p in files]
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    if path.suffix.lower() == ".json":
        return stac_scenes(path, asset)
    if path.suffix.lower() in LIST_SUFFIXES:
        return listed_scenes(path)
    return [scene_of(given)]


def listed_scenes(path: Path) -> list[SceneInput]:
    """A text list: a path or URL a line (relative paths from the list's folder); blank lines, # comments skipped."""
    scenes = []
    for line in path.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        scenes.append(scene_of(entry, path.parent))
    if not scenes:
        raise PipelineError(f"{path}: the list names no scene")
    return scenes


def stac_scenes(path: Path, asset: str | None) -> list[SceneInput]:
    """The chosen asset of every item of a STAC ItemCollection, Item, Catalog or Collection (its child catalogs too)."""
    try:
        kind = json.loads(path.read_text()).get("type")
    except (ValueError, AttributeError) as error:
        raise PipelineError(f"{path}: not a STAC JSON file ({error})") from None
    try:
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_file(str(path)))
        elif kind == "Feature":
            items = [pystac.Item.from_file(str(path))]
        elif kind in ("Catalog", "Collection"):
            items = list(pystac.Catalog.from_file(str(path)).get_items(recursive=True))
        else:
            raise PipelineError(f"{path}: type {kind!r} is not a STAC ItemCollection, Item, Catalog or Collection")
    except PipelineError:
        raise
    except Exception as error:  # pystac raises its own types (and KeyError, ValueError) for malformed files
        raise PipelineError(f"{path}: cannot read it as STAC ({type(error).__name__}: {error})") from None
    if not items:
        raise PipelineError(f"{path}: the catalog has no items")
    return [asset_source(path, item, asset) for item in items]


def asset_source(path: Path, item, asset: str | None) -> SceneInput:
    """The item's asset as a scene (a relative href from the item's file where that is local, else the JSON's)."""
    if asset is None:
        if len(item.assets) != 1:
            raise PipelineError(
                f"{path}: item {item.id} has assets {', '.join(sorted(item.assets))}: say which to map with --asset"
            )
        (asset,) = item.assets
    if asset not in item.assets:
        raise PipelineError(f"{path}: item {item.id} has no asset {asset!r} (it has {', '.join(sorted(item.assets))})")
    base = parse_source(item.get_self_href() or str(path))
    folder = base.local_path.parent if base.is_local else path.parent
    scene = scene_of(item.assets[asset].href, folder)
    return replace(scene, acquired=Acquisition.of_properties(item.to_dict()["properties"]))
