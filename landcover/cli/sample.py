"""sample: a stratified random sample of a class map's pixels, for error-adjusted areas (docs/areas.md).

    landcover-sample --map region/region.tif --output sample/
    landcover-sample --before 2020/region.tif --after 2024/region.tif \
        --merge "stable=forest_land->forest_land,urban_land->urban_land" --output sample/
    (the same as python -m landcover.cli.sample ...)

The map is a class map of this project (a scene's <id>.tif, a region's region.tif or region.vrt, a change
map change.tif) with a CRS; with --before and --after, the from-to transitions of two maps (the second
warped onto the first's grid), stable classes included. Strata are its classes (or transitions), or groups
of them (--merge NAME=CLASS,CLASS,..., repeatable). The total sample gives overall accuracy a standard error
of --target-se where each stratum's user's accuracy is as expected (--expected-accuracy; defaults 0.9, and
0.7 for strata of change), by Olofsson et al. 2014 eq. 13, or is --size points, or --per-stratum sizes;
it is allocated in proportion to area with at least --minimum points a stratum (or equally: --allocation).
Points are pixel centres, never a pixel without a class, the same for the same --seed. Into --output:
sample.csv (point_id, x, y in the map's CRS, lon, lat, stratum, map_class, an empty reference column),
sample.gpkg (the same points, where pyogrio is installed), sample.qml (their QGIS style: the map's colours,
and the class names to pick a reference from) and sample_design.json, which landcover-assess reads.
"""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path

from landcover.evaluation.area_estimation import ALLOCATIONS
from landcover.geo.map_paths import check_output_folder
from landcover.geo.polygons import require_vector_writer
from landcover.geo.sampling import (
    SAMPLE_FILES,
    CodeRaster,
    SampleOptions,
    class_map_codes,
    design_sample,
    write_sample,
)
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import atomic_file, output_folder
from landcover.region.change import change_map_table, transition_codes


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map", type=Path, help="a class map (COG, GeoTIFF or VRT) of this project, or a change map")
    parser.add_argument("--before", type=Path, help="with --after: the class map of date 1 (its grid is used)")
    parser.add_argument("--after", type=Path, help="the class map of date 2")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--target-se",
        type=float,
        default=SampleOptions.target_standard_error,
        help="the standard error overall accuracy should have, for the total size (default 0.01)",
    )
    parser.add_argument("--size", type=int, help="the total number of points, instead of --target-se")
    parser.add_argument("--per-stratum", metavar="STRATUM=N,...", help="every stratum's number of points, instead")
    parser.add_argument(
        "--minimum", type=int, default=SampleOptions.minimum, help="points a stratum at least (default 50)"
    )
    parser.add_argument(
        "--allocation",
        choices=list(ALLOCATIONS),
        default=SampleOptions.allocation,
        help="points in proportion to each stratum's area, or the same in each (default proportional)",
    )
    parser.add_argument(
        "--expected-accuracy",
        metavar="STRATUM=U,...",
        help="expected user's accuracies, for the total size (default 0.9 a class, 0.7 a stratum of change)",
    )
    parser.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="NAME=CLASS,CLASS,...",
        help="one stratum of these classes or transitions (a -> b), repeatable",
    )
    parser.add_argument("--seed", type=int, default=SampleOptions.seed, help="the same seed gives the same points")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def sample_options(args: argparse.Namespace) -> SampleOptions:
    """The options, their values checked (one line each)."""
    if not 0 < args.target_se < 0.5:
        raise PipelineError(f"--target-se: must be between 0 and 0.5, got {args.target_se:g}")
    if args.size is not None and args.per_stratum is not None:
        raise PipelineError("--size and --per-stratum: give one of them")
    if args.size is not None and args.size < 2:
        raise PipelineError(f"--size: must be at least 2, got {args.size}")
    if args.minimum < 2:
        raise PipelineError(f"--minimum: must be at least 2 (a stratum's variance needs 2 points), got {args.minimum}")
    return SampleOptions(
        target_standard_error=args.target_se,
        size=args.size,
        per_stratum=args.per_stratum,
        minimum=args.minimum,
        allocation=args.allocation,
        expected_accuracy=args.expected_accuracy,
        merges=tuple(args.merge),
        seed=args.seed,
    )


@contextmanager
def map_codes(args: argparse.Namespace):
    """What is sampled: one map's classes (a change map's codes), or two maps' from-to transitions."""
    if args.map is not None and (args.before is not None or args.after is not None):
        raise PipelineError("--map, or --before and --after: give one map or two")
    if args.map is not None:
        if not args.map.is_file():
            raise PipelineError(f"{args.map}: file not found")
        with class_map_codes(args.map, change_map_table(args.map)) as raster:
            yield raster
    elif args.before is not None and args.after is not None:
        for path in (args.before, args.after):
            if not path.is_file():
                raise PipelineError(f"{path}: file not found")
        with transition_codes(args.before, args.after) as raster:
            yield raster
    else:
        raise PipelineError("give the map: --map MAP, or --before MAP --after MAP for change")


def relative_map_paths(raster: CodeRaster, design: dict, output: Path) -> None:
    """The design names its maps relative to its own folder, so that the two can move together."""
    for entry, map_file in zip(design["maps"], raster.maps):
        entry["path"] = os.path.relpath(map_file.path.resolve(), output.resolve())


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    options = sample_options(args)
    check_output_folder(args.output)
    try:
        require_vector_writer()
        names = SAMPLE_FILES
    except PipelineError:
        names = {role: name for role, name in SAMPLE_FILES.items() if role != "gpkg"}
    with map_codes(args) as raster:
        design, points = design_sample(raster, options, progress=not args.no_progress)
        relative_map_paths(raster, design, args.output)
        with output_folder(args.output), ExitStack() as stack:
            staged = {role: stack.enter_context(atomic_file(args.output / name)) for role, name in names.items()}
            write_sample(args.output, design, points, staged, raster.crs)
    if "gpkg" not in names:
        print("sample: sample.gpkg not written: GeoPackages need the optional package pyogrio (make install-vector)")
    print(
        f"sample: {len(points)} points in {len(design['strata'])} strata -> {args.output} ({', '.join(names.values())})"
    )


def console_main() -> None:
    """The `landcover-sample` console script."""
    run_stage(main)


if __name__ == "__main__":
    run_stage(main)
