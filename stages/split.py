"""split: assign whole images (never single tiles), or blocks of scenes, to train, val and test."""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.data.splitting import SplitJob, split_method
from landcover.data.tilestore import TileStore
from landcover.io.errors import run_stage
from landcover.io.params import DEFAULT_PARAMS, SplitParams, load_params, read_section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tiles", type=Path, help="output of the tile stage")
    parser.add_argument("encoded", type=Path, help="output of the encode stage")
    parser.add_argument("out", type=Path, help="splits directory to write (replaced if present)")
    parser.add_argument("--distribution", type=Path, default=Path("metrics/class_distribution.json"))
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    split_params = read_section(load_params(args.params), "split", SplitParams)
    method = split_method(split_params)  # a wrong split.method is refused before anything is read

    store = TileStore(args.tiles, args.encoded)
    job = SplitJob(store, store.class_table(), store.index(), split_params, args.out, args.distribution)
    for line in method(job):
        print(line)


if __name__ == "__main__":
    run_stage(main)
