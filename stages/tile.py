"""tile: cut every labelled image of the raw dataset (DeepGlobe's layout, or scenes of any raster) into tiles."""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.data.rawdata import find_pairs, read_class_table
from landcover.data.scenes import SceneSettings, find_scenes, scene_class_table, tile_scenes
from landcover.data.tilestore import RGB_BANDS, TileStore
from landcover.data.tiling import tile_dataset
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import atomic_dir
from landcover.io.params import DEFAULT_PARAMS, DataParams, TileParams, load_params, read_section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path, help="dataset root (the param data.raw)")
    parser.add_argument("out", type=Path, help="tiles directory to write (replaced if present)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    tile_params = read_section(params, "tile", TileParams)
    data_params = read_section(params, "data", DataParams)
    size, stride = tile_params.size, tile_params.stride

    # Read the class table and list the images first: a bad table or a missing label fails in seconds.
    if data_params.layout == "deepglobe":
        if data_params.bands != RGB_BANDS:
            raise PipelineError(f"params: data.bands {list(data_params.bands)}: DeepGlobe's layout is RGB, [1, 2, 3]")
        table = read_class_table(args.raw)
        pairs = find_pairs(args.raw)
        with atomic_dir(args.out) as staging:
            tiles = tile_dataset(pairs, staging, size, stride)
            table.to_csv(TileStore(staging).class_table_path)
        count, unit = len(pairs), "images"
    else:
        table = scene_class_table(args.raw, data_params.layout)
        scenes = find_scenes(args.raw, data_params.layout)
        settings = SceneSettings(table, data_params.bands, data_params.label_attribute, tile_params.images)
        with atomic_dir(args.out) as staging:
            tiles = tile_scenes(scenes, staging, size, stride, settings)
            table.to_csv(TileStore(staging).class_table_path)
        count, unit = len(scenes), "scenes"
    print(f"tile: {count} {unit} -> {tiles} tiles of {size}px (stride {stride}) in {args.out}")


if __name__ == "__main__":
    run_stage(main)
