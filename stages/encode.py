"""encode: labels (colour masks, label rasters, polygons) -> single-channel class-index masks, reporting
off-table pixels."""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.data.encoding import encode_images, encode_report, encode_scenes, write_pixel_counts
from landcover.data.palette import IGNORE_INDEX
from landcover.data.tilestore import TileStore
from landcover.io.errors import run_stage
from landcover.io.outputs import atomic_dir, write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tiles", type=Path, help="output of the tile stage")
    parser.add_argument("out", type=Path, help="encoded directory to write (replaced if present)")
    parser.add_argument("--report", type=Path, default=Path("metrics/encode.json"))
    args = parser.parse_args(argv)

    tiles = TileStore(args.tiles)
    table = tiles.class_table()
    records = tiles.index()
    with atomic_dir(args.out) as staging:
        store = TileStore(args.tiles, encoded=staging)
        if store.scenes is None:
            counts, unlabelled = encode_images(records, store, table), None
        else:
            counts, unlabelled = encode_scenes(store, table)
        write_pixel_counts(store.pixel_counts_path, counts, table)
    report = encode_report(counts, unlabelled)
    write_json(args.report, report)
    print(
        f"encode: {len(counts)} masks; {report['ignored_pixels']} pixels "
        f"({report['ignored_fraction']:.4%}) in {report['images_with_ignored_pixels']} images had a "
        f"{'label' if unlabelled is not None else 'colour'} in no class"
        + (f" or no label ({unlabelled} unlabelled)" if unlabelled is not None else "")
        + f" and were set to {IGNORE_INDEX}"
    )


if __name__ == "__main__":
    run_stage(main)
