"""The spread of the test scores over training seeds: the same params trained with several `train.seed`s.

A run's test score is one draw: another `train.seed` initialises the weights and orders and augments the tiles
otherwise, and gives another model and another score. Running the same params over a few seeds and summarising
each headline score (how many runs, mean, sample standard deviation, min, max) shows how far that draw moves.
The split's seed stays as it is, so every run is scored on the same test images: the spread is the training's,
which the test scores' bootstrap intervals (intervals.py) leave out, not the test sample's (docs/statistics.md).

Pure: the runs' scores in, the summary out as a Markdown table and JSON. `tools/seed_spread.py` runs the seeds as
queued DVC experiments and reads their scores.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from landcover.evaluation.metrics import HEADLINE
from landcover.io.errors import PipelineError

SEED_PARAM = "train.seed"
# How the JSON and the table name the standard deviation, so a reader knows which one it is.
SD = "sample standard deviation (n - 1 in the denominator); null for a single run, which has no spread"


@dataclass(frozen=True)
class Spread:
    """One score over the runs: how many, their mean, sample standard deviation (None for one run), min, max."""

    n: int
    mean: float
    sd: float | None
    min: float
    max: float


def score_of(run: str, scores: Mapping[str, object], metric: str) -> float:
    """`scores[metric]` as a finite number, or PipelineError naming the run and the metric."""
    value = scores.get(metric)
    # bool is an int to Python, but never a score
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        found = "is missing" if value is None else f"is {value!r}, not a number"
        raise PipelineError(f"{run}: its test score {metric} {found}")
    if not math.isfinite(value):
        raise PipelineError(f"{run}: its test score {metric} is {value}, not a finite number")
    return float(value)


def spreads(runs: Mapping[str, Mapping[str, object]], metrics: Sequence[str] = HEADLINE) -> dict[str, Spread]:
    """{metric: its Spread over the runs} of {run name: its test scores}; PipelineError where a run lacks one."""
    if not runs:
        raise PipelineError("no runs to summarise")
    summary = {}
    for metric in metrics:
        values = [score_of(run, scores, metric) for run, scores in runs.items()]
        sd = statistics.stdev(values) if len(values) > 1 else None
        summary[metric] = Spread(len(values), statistics.fmean(values), sd, min(values), max(values))
    return summary


def flat(params: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested params as {"train.seed": 7, ...}, the keys `dvc exp run -S` takes."""
    found: dict[str, object] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            found.update(flat(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def check_only_seeds_differ(params: Mapping[str, Mapping[str, object]]) -> None:
    """PipelineError where the runs' params differ in anything but train.seed, or two runs share a seed: their
    spread would then not be the seed's (another param's effect in it, or one draw counted twice)."""
    flattened = {run: flat(values) for run, values in params.items()}
    if not flattened:
        return
    (first, reference), *others = flattened.items()
    for run, values in others:
        differing = sorted(
            key
            for key in reference.keys() | values.keys()
            if key != SEED_PARAM and reference.get(key) != values.get(key)
        )
        if differing:
            raise PipelineError(f"{first} and {run} differ in {', '.join(differing)}, not only in {SEED_PARAM}")
    runs_of_seed: dict[object, list[str]] = {}
    for run, values in flattened.items():
        runs_of_seed.setdefault(values.get(SEED_PARAM), []).append(run)
    for seed, runs in runs_of_seed.items():
        if len(runs) > 1:
            raise PipelineError(f"{' and '.join(runs)} have the same {SEED_PARAM} ({seed}): one draw counted twice")


def markdown(summary: Mapping[str, Spread], runs: Sequence[str]) -> str:
    """The summary as a Markdown table, after a line saying what it is over."""
    n = len(runs)
    lines = [
        f"Test scores of {n} run{'s' if n != 1 else ''} that differ only in {SEED_PARAM} ({', '.join(runs)}): "
        "mean, sample standard deviation (sd), min and max.",
    ]
    if n == 1:
        lines += ["", "One run has no spread: sd needs two or more."]
    lines += ["", "| metric | n | mean | sd | min | max |", "|---|---:|---:|---:|---:|---:|"]
    for metric, spread in summary.items():
        sd = "-" if spread.sd is None else f"{spread.sd:.4f}"
        lines.append(f"| {metric} | {spread.n} | {spread.mean:.4f} | {sd} | {spread.min:.4f} | {spread.max:.4f} |")
    return "\n".join(lines) + "\n"


def as_json(
    summary: Mapping[str, Spread],
    runs: Mapping[str, Mapping[str, object]],
    about: Mapping[str, Mapping[str, object]] | None = None,
) -> dict:
    """The summary and each run's scores, after what `about` says of the run (its train.seed, its commit), as
    JSON-ready data."""
    about = about or {}
    return {
        "param": SEED_PARAM,
        "sd": SD,
        "runs": {run: {**about.get(run, {}), **{m: scores[m] for m in summary}} for run, scores in runs.items()},
        "spread": {metric: asdict(spread) for metric, spread in summary.items()},
    }
