"""tile: cut every labelled image of the raw dataset (DeepGlobe's layout, or scenes of any raster) into tiles."""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.data.scenes import find_dataset
from landcover.data.tilestore import TileStore
from landcover.io.errors import run_stage
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

    # Read the class table and list the images first: a bad table or a missing label fails in seconds.
    dataset = find_dataset(args.raw, data_params, tile_params)
    with atomic_dir(args.out) as staging:
        tiles = dataset.tile(staging)
        dataset.table.to_csv(TileStore(staging).class_table_path)
    size, stride = tile_params.size, tile_params.stride
    print(f"tile: {dataset.count} {dataset.unit} -> {tiles} tiles of {size}px (stride {stride}) in {args.out}")


if __name__ == "__main__":
    run_stage(main)
