"""change: land-cover change between two maps of the same area (docs/region.md#change-between-two-dates).

    landcover-change --before region-2020/region.vrt --after region-2024/region.vrt --output change/
    (the same as python -m landcover.cli.change ...)

The maps are class maps of this project: two region mosaics (region.vrt or region.tif) or two scenes' maps
(<id>.tif), with the same classes. On the first map's grid (the second warped onto it by nearest neighbour;
pixels without a class in either left out) it writes, into --output: from_to.csv (hectares, rows the class at
date 1, columns the class at date 2) and from_to.json (pixels and hectares), change.tif (a COG of from-to
codes: 0 unchanged, 1 + from x classes + to changed, 255 no class; coloured by the class each pixel became),
change.qml (its QGIS legend) and change.item.json (their STAC Item, linked to the two maps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.geo.map_paths import check_output_folder
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import output_folder
from landcover.region.change import detect_change


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the class map of date 1 (its grid is used)")
    parser.add_argument("--after", type=Path, required=True, help="the class map of date 2")
    parser.add_argument("--output", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    for path in (args.before, args.after):
        if not path.is_file():
            raise PipelineError(f"{path}: file not found")
    check_output_folder(args.output)
    with output_folder(args.output):
        report = detect_change(args.before, args.after, args.output)
    if report["hectares"] is not None:
        amount = (
            f"{report['changed_hectares']:.2f} of {report['changed_hectares'] + report['unchanged_hectares']:.2f} ha"
        )
    else:
        amount = f"{report['changed_pixels']} of {report['compared_pixels']} pixels"
    print(f"change: {amount} changed -> {args.output}")


def console_main() -> None:
    """The `landcover-change` console script."""
    run_stage(main)


if __name__ == "__main__":
    run_stage(main)
