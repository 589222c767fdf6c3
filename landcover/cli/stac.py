"""stac: validate offline the STAC records of the mapping, region and change commands (docs/mapping.md#stac-records).

    python -m landcover.cli.stac validate out/              # every STAC file in the folder, recursively
    python -m landcover.cli.stac validate out/119.item.json region/collection.json

Each Item, Collection or Catalog is checked against the STAC core schema of its type and the schema of each
extension in its stac_extensions, all vendored in landcover/geo/stac_schemas/ (nothing is fetched: a schema
that is not there is an error), and each asset's file:size and file:checksum against its file; every
relative link and asset href inside the folder must lead to a file. Prints each problem as
`file: field: why`; exits 1 where there is any.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.geo.stac import validate_stac
from landcover.io.errors import PipelineError, run_stage


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check STAC files against the vendored schemas and their files")
    validate.add_argument("paths", nargs="+", type=Path, help="STAC JSON files, or folders searched for them")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    for path in args.paths:
        if not path.exists():
            raise PipelineError(f"{path}: not found")
    files, problems = validate_stac(args.paths)
    if not files:
        raise PipelineError(f"{' '.join(map(str, args.paths))}: holds no STAC file")
    for problem in problems:
        print(problem)
    if problems:
        raise PipelineError(f"stac: {len(problems)} problems in {len(files)} STAC files (listed above)")
    print(f"stac: {len(files)} STAC files valid")


if __name__ == "__main__":
    run_stage(main)
