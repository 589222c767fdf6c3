"""assess: accuracy and error-adjusted areas, with 95% intervals, from a labelled sample (docs/areas.md).

    landcover-assess --sample sample/sample.gpkg --design sample/sample_design.json --output assessment/
    (the same as python -m landcover.cli.assess ...)

The sample is landcover-sample's sample.csv or sample.gpkg with its `reference` column filled in by class
name (a from-to transition's name, `a -> b`, for a change design); `cannot-tell` or empty is unlabelled, and
unlabelled points are refused unless --allow-missing leaves them out. The design's map must still have the
sha256 it was sampled with. Into --output: assessment.json (overall accuracy; per class its map area, its
estimated area, user's and producer's accuracy, each with a 95% interval; the error matrix in points and in
estimated area proportions), assessment.csv (a row per class), error_matrix.csv and assessment.md.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

from landcover.geo.area_report import assessment_report, labelled_sample, write_assessment
from landcover.geo.map_paths import check_output_folder
from landcover.geo.sampling import check_maps_unchanged, read_design, read_labelled_points
from landcover.io.errors import run_stage
from landcover.io.outputs import atomic_file, output_folder

OUTPUT_NAMES = {
    "json": "assessment.json",
    "csv": "assessment.csv",
    "matrix": "error_matrix.csv",
    "markdown": "assessment.md",
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, required=True, help="the labelled sample.csv or sample.gpkg")
    parser.add_argument("--design", type=Path, required=True, help="its sample_design.json")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--allow-missing", action="store_true", help="leave out unlabelled points (empty or cannot-tell)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    check_output_folder(args.output)
    design = read_design(args.design)
    check_maps_unchanged(design, args.design)
    rows = read_labelled_points(args.sample)
    labelled = labelled_sample(design, rows, args.sample, args.allow_missing)
    report = assessment_report(design, labelled, args.design, args.sample)
    with output_folder(args.output), ExitStack() as stack:
        staged = {role: stack.enter_context(atomic_file(args.output / name)) for role, name in OUTPUT_NAMES.items()}
        write_assessment(report, staged)
    if labelled.dropped:
        print(f"assess: {labelled.dropped} unlabelled points left out (--allow-missing)")
    overall = report["overall_accuracy"]
    print(
        f"assess: {labelled.labelled} points, overall accuracy {overall['estimate']:.3f} "
        f"± {overall['ci95_high'] - overall['estimate']:.3f} -> {args.output}"
    )


def console_main() -> None:
    """The `landcover-assess` console script."""
    run_stage(main)


if __name__ == "__main__":
    run_stage(main)
