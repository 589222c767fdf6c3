"""A region's STAC Collection (docs/region.md#stac-records): `collection.json` beside the mosaic, with the
mosaic (VRT, and COG where written), its area table and the run's summary as assets, and the scenes' Items
(geo.stac: each scene's maps, written by the worker that mapped it) as its items, which it links to and which
link back to it. Its extent is the union of theirs; its assets carry sizes and sha256 (file extension), the
mosaic its grid (projection) and class table (raster and classification extensions). Written last, after
everything it describes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pystac

from landcover.data.palette import ClassTable
from landcover.geo.georaster import NODATA_CLASS
from landcover.geo.stac import (
    GEOJSON,
    RUN_TIME,
    add_file_asset,
    add_projection,
    add_raster_bands,
    class_objects,
    item_name,
    write_item,
)
from landcover.io.outputs import write_json
from landcover.io.rasters import open_raster

COLLECTION = "collection.json"
WHOLE_WORLD = [-180.0, -90.0, 180.0, 90.0]
# The region's files that are the Collection's assets: key -> (title, roles)
REGION_ASSETS = {
    "mosaic": ("the region's class map: a GDAL VRT over the scenes' maps", ["data"]),
    "mosaic_cog": ("the region's class map as one Cloud-Optimized GeoTIFF", ["data"]),
    "areas_json": ("the region's map areas per class (JSON)", ["metadata"]),
    "areas_csv": ("the region's map areas per class (CSV)", ["metadata"]),
    "summary": ("the run's summary: scenes mapped, resumed, failed", ["metadata"]),
}
BACK_LINKS = ("collection", "parent", "root")


def scene_items(scenes_dir: Path, scene_ids: Sequence[str]) -> list[tuple[Path, dict]]:
    """The STAC Items of the scenes (in their order) that have one."""
    found = []
    for scene_id in scene_ids:
        path = Path(scenes_dir) / item_name(scene_id)
        if path.is_file():
            found.append((path, json.loads(path.read_text())))
    return found


def times_of(item: dict) -> list[str]:
    properties = item["properties"]
    return [properties[key] for key in ("datetime", "start_datetime", "end_datetime") if properties.get(key)]


def region_extent(items: list[dict]) -> pystac.Extent:
    """The union of the items' lon/lat bboxes (the whole world where none has one) and of their times."""
    boxes = [item["bbox"] for item in items if item.get("bbox")]
    bbox = (
        [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
        if boxes
        else WHOLE_WORLD
    )
    moments = sorted(pystac.utils.str_to_datetime(text) for item in items for text in times_of(item))
    interval: list[dt.datetime | None] = [moments[0], moments[-1]] if moments else [None, None]
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval]))


def write_region_collection(
    output: Path, scenes_folder: str, scene_ids: Sequence[str], summary: dict, table: ClassTable | None
) -> Path | None:
    """collection.json in `output` over the scenes' Items (None where no scene has one), and each Item linked
    back to it. `summary`: region.json's (which files the region has); `table`: the mosaic's classes."""
    output = Path(output)
    items = scene_items(output / scenes_folder, scene_ids)
    if not items:
        return None
    path = output / COLLECTION
    collection = pystac.Collection(
        output.resolve().name,
        f"land-cover maps of a region: {len(items)} scenes' maps, their mosaic and its area table",
        region_extent([item for _, item in items]),
        title=f"land-cover region {output.resolve().name}",
        license="other",
    )
    collection.set_self_href(str(path.resolve()))
    collection.remove_links(pystac.RelType.ROOT)  # pystac's is absolute: the folder's root is itself
    collection.add_link(pystac.Link(pystac.RelType.ROOT, f"./{COLLECTION}", pystac.MediaType.JSON))
    if any(item["properties"].get("landcover:datetime_is") == RUN_TIME for _, item in items):
        collection.extra_fields["landcover:datetime_is"] = RUN_TIME
    files = {
        "mosaic": summary.get("mosaic"),
        "mosaic_cog": summary.get("mosaic_cog"),
        "areas_json": summary.get("areas"),
        "areas_csv": None if summary.get("areas") is None else "region_areas.csv",
        "summary": "region.json",
    }
    for key, name in files.items():
        if name is None:
            continue
        title, roles = REGION_ASSETS[key]
        asset = add_file_asset(collection, key, output / name, title, roles)
        if key.startswith("mosaic") and table is not None:
            add_raster_bands(asset, output / name, class_objects(table, NODATA_CLASS))
            with open_raster(output / name) as dataset:
                add_projection(asset, dataset)
    for item_path, item in items:
        href = item_path.relative_to(output).as_posix()
        collection.add_link(pystac.Link("item", f"./{href}", GEOJSON, item["id"]))
        link_back(item_path, item, path, collection.id)
    write_item(collection, path)
    return path


def link_back(path: Path, item: dict, collection: Path, collection_id: str) -> None:
    """The scene's Item at `path` as a member of the collection at `collection`: its `collection` field and
    links to it, rewritten."""
    back = Path(os.path.relpath(collection, path.parent)).as_posix()
    item["collection"] = collection_id
    item["links"] = [link for link in item["links"] if link.get("rel") not in BACK_LINKS] + [
        {"rel": rel, "href": back, "type": pystac.MediaType.JSON} for rel in BACK_LINKS
    ]
    write_json(path, item)
