"""tile: cut every labelled image of the raw dataset and its colour mask into tiles."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.data.rawdata import find_pairs, read_class_table
from stages.core.data.tilestore import TileStore
from stages.core.data.tiling import tile_dataset
from stages.core.io.errors import run_stage
from stages.core.io.outputs import atomic_dir
from stages.core.io.params import DEFAULT_PARAMS, TileParams, load_params, read_section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path, help="dataset root (the param data.raw)")
    parser.add_argument("out", type=Path, help="tiles directory to write (replaced if present)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    tile_params = read_section(load_params(args.params), "tile", TileParams)

    # Read the class table and list the pairs first: a bad table or a missing mask fails in seconds.
    table = read_class_table(args.raw)
    pairs = find_pairs(args.raw)
    with atomic_dir(args.out) as staging:
        tiles = tile_dataset(pairs, staging, tile_params.size, tile_params.stride)
        table.to_csv(TileStore(staging).class_table_path)
    print(
        f"tile: {len(pairs)} images -> {tiles} tiles of {tile_params.size}px (stride {tile_params.stride}) "
        f"in {args.out}"
    )


if __name__ == "__main__":
    run_stage(main)
