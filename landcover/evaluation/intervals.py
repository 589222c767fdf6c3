"""How far the test scores can be trusted: bootstrap intervals, and paired comparisons of two experiments.

The test images are a sample of images, and another sample would give other scores. The bootstrap resamples the
test regions (whole images, or the blocks of scenes that `split.method: blocks` scores) with replacement, as many
as there are, sums the drawn regions' confusion matrices and scores each resample exactly as the headline is
scored (pooled over pixels, `metrics.headline_arrays`). The interval is the resamples' scores between two
percentiles: the range of scores that test samples like this one give, not a range for the world's land cover
(docs/statistics.md). Those percentiles are the expanded percentile interval's (Hesterberg 2015, below), wider than
the middle 95% on few regions, as the plain percentile interval is too narrow there.

A paired comparison scores two experiments' predictions of the same test regions on the same resamples, so the
images that are hard for both move both scores together and only the difference between the models is left.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from landcover.data.palette import ClassTable
from landcover.evaluation.metrics import HEADLINE, headline_arrays
from landcover.io.errors import PipelineError

LEVEL = 0.95  # the intervals' coverage
METHOD = "expanded percentile bootstrap (Hesterberg 2015, The American Statistician 69(4))"
# Below this many test regions a bootstrap interval says little: it can only recombine the few regions there
# are, and understates how far another sample's score could fall. It is still written, with words saying so.
MIN_TRUSTED_REGIONS = 5
TOO_FEW = "too few test images to compare"
VERDICTS = ("B better", "B worse", "no difference shown", TOO_FEW)


def resample_counts(regions: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, regions): how often each region is drawn in each resample of `regions` draws with replacement."""
    if regions < 1 or resamples < 1:
        raise ValueError(f"a bootstrap needs regions and resamples, got {regions} and {resamples}")
    return np.random.default_rng(seed).multinomial(regions, np.full(regions, 1 / regions), size=resamples)


def resampled_scores(per_region: np.ndarray, counts: np.ndarray, table: ClassTable) -> dict[str, np.ndarray]:
    """Each resample's headline scores and per-class IoU: its regions' confusion matrices summed (a region drawn
    twice counts twice), then scored as the headline is."""
    confusions = np.einsum("br,rij->bij", counts, np.asarray(per_region, dtype=np.int64))
    return headline_arrays(confusions, table)


def expanded_level(regions: int, level: float = LEVEL) -> float:
    """The level of the bootstrap percentiles that give a `level` interval over `regions` regions: the expanded
    percentile interval's 1 - a', where z_(a'/2) = sqrt(n / (n - 1)) t_(a/2, n - 1) (Hesterberg 2015, 4.3).

    A percentile interval over n regions is about as wide as mean +- z sd / sqrt(n), where a t interval has
    t_(n-1) s / sqrt(n) and s is sqrt(n / (n - 1)) times the bootstrap's sd: it is too narrow on few regions,
    and taking wider percentiles makes up both factors. One region has no spread to widen: every percentile."""
    if regions < 1 or not 0 < level < 1:
        raise ValueError(f"an expanded level needs regions and a level in (0, 1), got {regions} and {level}")
    if regions == 1:
        return 1.0
    z = np.sqrt(regions / (regions - 1)) * stats.t.ppf(1 - (1 - level) / 2, regions - 1)
    return float(1 - 2 * stats.norm.sf(z))


def percentile_interval(values: np.ndarray, regions: int) -> dict[str, float] | None:
    """The resamples' values (along the first axis for one; resamples without a score left out) between the
    percentiles of the expanded level for `regions` regions, or None where no resample has one."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return None
    tail = (1 - expanded_level(regions)) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": float(low), "high": float(high)}


def trust(regions: int, unit: str) -> str:
    """The words that go with an interval from `regions` test regions (`unit`: images or blocks)."""
    if regions < MIN_TRUSTED_REGIONS:
        return (
            f"only {regions} test {unit}: too few (under {MIN_TRUSTED_REGIONS}) for the interval to be trusted; "
            "it is too wide to trust, and another sample's score could fall outside it"
        )
    return f"{regions} test {unit} resampled with replacement; the score of another sample of {unit} like these"


def score_intervals(per_region: np.ndarray, table: ClassTable, seed: int, resamples: int, unit: str) -> dict:
    """How the intervals were made and how far to trust them, each headline score's interval bounds (`low` and
    `high`, each keyed as the headline: DVC shows them as rows under its columns; None for a score no resample
    has) and each class's IoU interval, from one confusion matrix per test region."""
    per_region = np.asarray(per_region, dtype=np.int64)
    regions = len(per_region)
    resampled = resampled_scores(per_region, resample_counts(regions, resamples, seed), table)
    headline = {key: percentile_interval(resampled[key], regions) for key in HEADLINE}
    return {
        "level": LEVEL,
        "method": METHOD,
        "percentile_level": round(expanded_level(regions), 6),
        "resamples": resamples,
        "seed": seed,
        unit: regions,
        "trust": trust(regions, unit),
        "low": {key: None if interval is None else interval["low"] for key, interval in headline.items()},
        "high": {key: None if interval is None else interval["high"] for key, interval in headline.items()},
        "iou": {name: percentile_interval(resampled["iou"][:, k], regions) for k, name in enumerate(table.names)},
    }


def verdict(interval: dict[str, float] | None, regions: int) -> str:
    """B against A from the interval of B's score minus A's: better or worse only where it excludes 0, and
    from MIN_TRUSTED_REGIONS test regions on."""
    if regions < MIN_TRUSTED_REGIONS:
        return TOO_FEW
    if interval is not None and interval["low"] > 0:
        return "B better"
    if interval is not None and interval["high"] < 0:
        return "B worse"
    return "no difference shown"


def paired_comparison(first: np.ndarray, second: np.ndarray, table: ClassTable, seed: int, resamples: int) -> dict:
    """Each headline score's difference, second minus first, over the same regions (in the same order), with the
    interval of that difference over resamples that draw the same regions for both, and the verdict."""
    first, second = (np.asarray(matrices, dtype=np.int64) for matrices in (first, second))
    if first.shape != second.shape:
        raise ValueError(f"confusion matrices of shapes {first.shape} and {second.shape}")
    counts = resample_counts(len(first), resamples, seed)
    resampled_first, resampled_second = (resampled_scores(matrices, counts, table) for matrices in (first, second))
    scored_first, scored_second = (headline_arrays(matrices.sum(axis=0), table) for matrices in (first, second))
    comparison = {}
    for key in HEADLINE:
        difference = float(scored_second[key] - scored_first[key])
        interval = percentile_interval(resampled_second[key] - resampled_first[key], len(first))
        comparison[key] = {
            "a": _score(scored_first[key]),
            "b": _score(scored_second[key]),
            "difference": None if np.isnan(difference) else difference,
            "interval": interval,
            "verdict": verdict(interval, len(first)),
        }
    return comparison


def _score(value: np.ndarray) -> float | None:
    return None if np.isnan(value) else float(value)


CONFUSION_FORMAT = 1


def write_region_confusions(path: str | Path, confusions: dict[str, np.ndarray], table: ClassTable) -> None:
    """metrics/confusion_per_image.json: each test region's confusion matrix (rows ground truth, columns
    prediction) by its name, one region a line so that diffs stay readable; with the class names and which
    classes count in the headline, all a comparison needs to score them."""
    regions = ",\n".join(
        f"    {json.dumps(name)}: {json.dumps(np.asarray(matrix).tolist())}" for name, matrix in confusions.items()
    )
    header = {
        "format": CONFUSION_FORMAT,
        "rows": "ground truth",
        "columns": "prediction",
        "classes": table.names,
        "headline": table.headline,
    }
    fields = "".join(f"  {json.dumps(key)}: {json.dumps(value)},\n" for key, value in header.items())
    Path(path).write_text("{\n" + fields + '  "regions": {\n' + regions + "\n  }\n}\n")


def read_region_confusions(path: str | Path) -> tuple[ClassTable, dict[str, np.ndarray]]:
    """(class table, each region's confusion matrix) of a file that write_region_confusions wrote, or PipelineError
    naming the file."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise PipelineError(f"{path}: cannot read the per-image confusion matrices ({error.strerror})") from None
    return parse_region_confusions(text, str(path))


def parse_region_confusions(text: str, origin: str) -> tuple[ClassTable, dict[str, np.ndarray]]:
    """The content of a per-image confusion file (from a file or a git revision, `origin` naming it in errors). Its
    class table has the names and headline flags, and no colours (black): the scores need none."""
    try:
        content = json.loads(text)
        classes = tuple(content["classes"])
        table = ClassTable(classes, np.zeros((len(classes), 3)), headline=tuple(content["headline"]))
        regions = {name: np.array(matrix, dtype=np.int64) for name, matrix in content["regions"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PipelineError(f"{origin}: not a per-image confusion file ({type(error).__name__}: {error})") from None
    for name, matrix in regions.items():
        if matrix.shape != (len(classes), len(classes)):
            side = len(classes)
            raise PipelineError(f"{origin}: {name}'s confusion matrix is {matrix.shape}, not {side} x {side}")
    return table, regions
