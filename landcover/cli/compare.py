"""compare: two experiments scored on the same test split, compared image by image (docs/statistics.md).

    landcover-compare ci-baseline ci-loss-ce --json comparison.json
    (the same as python -m landcover.cli.compare ...)

A and B are each a DVC experiment's name, a git revision (a commit, branch or tag of this repository), a
per-image confusion file or a folder holding one (a project, or its metrics/ folder). For each headline score
it prints B minus A with its 95% paired-bootstrap interval (the same resampled test images for both) and a
verdict: B better, B worse or no difference shown, as Markdown (and as JSON with --json). Both must cover the
same test images with the same class table. The resamples follow the evaluate section of ./params.yaml
(evaluate.seed, evaluate.bootstrap) where there is one; --seed and --bootstrap override it.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np

from landcover.data.palette import ClassTable
from landcover.evaluation.intervals import (
    LEVEL,
    MIN_TRUSTED_REGIONS,
    paired_comparison,
    parse_region_confusions,
    read_region_confusions,
)
from landcover.evaluation.metrics import HEADLINE
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import write_json
from landcover.io.params import DEFAULT_PARAMS, EVALUATE_DEFAULTS, EvaluateParams, load_params, read_section

PER_IMAGE = Path("metrics/confusion_per_image.json")  # where the evaluate stage writes it (dvc.yaml)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="the reference: an experiment's name, a git revision, a file or a folder")
    parser.add_argument("b", help="the one compared with it, given the same way")
    parser.add_argument("--json", type=Path, help="write the comparison here as JSON too")
    parser.add_argument("--seed", type=int, help="the resamples' seed (default: evaluate.seed)")
    parser.add_argument("--bootstrap", type=int, help="paired resamples (default: evaluate.bootstrap)")
    return parser


def read_per_image(source: str) -> tuple[ClassTable, dict[str, np.ndarray]]:
    """The per-image confusion matrices of `source`: a file, a folder, a git revision or an experiment's name."""
    path = Path(source)
    if path.is_dir():
        path = next((p for p in (path / PER_IMAGE, path / PER_IMAGE.name) if p.is_file()), path / PER_IMAGE)
        return read_region_confusions(path)
    if path.is_file():
        return read_region_confusions(path)
    revision = _revision(source)
    shown = _git("show", f"{revision}:{PER_IMAGE.as_posix()}")
    if shown.returncode:
        raise PipelineError(f"{source}: has no {PER_IMAGE} (run the evaluate stage there first)")
    return parse_region_confusions(shown.stdout, f"{source}:{PER_IMAGE}")


def _git(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True)
    except OSError as error:
        raise PipelineError(f"git: cannot run it ({error.strerror})") from None


def _revision(source: str) -> str:
    """The commit of a git revision or of a DVC experiment's name (its ref under refs/exps)."""
    if not _git("rev-parse", "--verify", "--quiet", f"{source}^{{commit}}").returncode:
        return source
    experiments = _git("for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    matches = [ref for ref in experiments if ref.rsplit("/", 1)[-1] == source]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PipelineError(f"{source}: names {len(matches)} experiments; give one's commit instead")
    raise PipelineError(f"{source}: no such file, folder, git revision or experiment")


def matched(a: str, b: str) -> tuple[ClassTable, np.ndarray, np.ndarray]:
    """The class table and both sides' matrices in one order of regions, or PipelineError where the two files
    do not cover the same test images with the same class table."""
    (table_a, regions_a), (table_b, regions_b) = read_per_image(a), read_per_image(b)
    if (table_a.names, table_a.headline) != (table_b.names, table_b.headline):
        raise PipelineError(f"{a} and {b} have different class tables: {_classes(table_a)} against {_classes(table_b)}")
    only_a, only_b = sorted(set(regions_a) - set(regions_b)), sorted(set(regions_b) - set(regions_a))
    if only_a or only_b:
        raise PipelineError(
            f"{a} and {b} cover different test images: {len(only_a)} only in {a}{_example(only_a)}, "
            f"{len(only_b)} only in {b}{_example(only_b)}"
        )
    if not regions_a:
        raise PipelineError(f"{a} and {b} have no test images")
    names = sorted(regions_a)
    return table_a, np.array([regions_a[n] for n in names]), np.array([regions_b[n] for n in names])


def _classes(table: ClassTable) -> str:
    """The class names, those left out of the headline marked."""
    marks = ("" if counted else " (not in the headline)" for counted in table.headline)
    return ", ".join(name + mark for name, mark in zip(table.names, marks))


def _example(names: list[str]) -> str:
    return f" (e.g. {names[0]})" if names else ""


def resampling(args: argparse.Namespace) -> EvaluateParams:
    """--seed and --bootstrap over ./params.yaml's evaluate section, or EVALUATE_DEFAULTS outside a project."""
    section = read_section(load_params(), "evaluate", EvaluateParams) if DEFAULT_PARAMS.is_file() else None
    values = {**EVALUATE_DEFAULTS, **(vars(section) if section else {})}
    given = {key: getattr(args, key) for key in ("seed", "bootstrap") if getattr(args, key) is not None}
    return read_section({"evaluate": {**values, **given}}, "evaluate", EvaluateParams)


def markdown(a: str, b: str, regions: int, settings: EvaluateParams, comparison: dict) -> str:
    lines = [
        f"Paired comparison of {b} (B) against {a} (A) on the same {regions} test images: B minus A, with its "
        f"{LEVEL:.0%} interval over {settings.bootstrap} paired bootstrap resamples (seed {settings.seed}).",
    ]
    if regions < MIN_TRUSTED_REGIONS:
        lines += ["", f"Too few test images to compare ({regions}, under {MIN_TRUSTED_REGIONS}): no verdict is given."]
    lines += ["", f"| metric | A | B | B - A | {LEVEL:.0%} interval | verdict |", "|---|---:|---:|---:|---|---|"]
    for key in HEADLINE:
        row = comparison[key]
        interval = row["interval"]
        shown = "-" if interval is None else f"{interval['low']:+.4f} to {interval['high']:+.4f}"
        lines.append(
            f"| {key} | {_number(row['a'])} | {_number(row['b'])} | {_number(row['difference'], '+')} | {shown} "
            f"| {row['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def _number(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.4f}"


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = resampling(args)
    table, first, second = matched(args.a, args.b)
    comparison = paired_comparison(first, second, table, settings.seed, settings.bootstrap)
    print(markdown(args.a, args.b, len(first), settings, comparison), end="")
    if args.json:
        write_json(
            args.json,
            {
                "a": args.a,
                "b": args.b,
                "images": len(first),
                "level": LEVEL,
                "resamples": settings.bootstrap,
                "seed": settings.seed,
                **comparison,
            },
        )


def console_main() -> None:
    """The `landcover-compare` console script."""
    run_stage(main)


if __name__ == "__main__":
    run_stage(main)
