"""How often the 95% intervals of landcover-assess cover the truth, by simulation (docs/areas.md).

    python -m tools.check_area_coverage                  # 1000 samples: about 15 s on one core
    python -m tools.check_area_coverage --repetitions 30

A synthetic map with a known truth: blocks of 7 classes, one of them rare, and a biased map of it (a
quarter of the forest mapped as rangeland, a tenth of the rare class missed, 5% of all pixels another class).
Each repetition draws a sample with landcover-sample's design (Olofsson et al. 2014 eq. 13 for the total,
proportional allocation with at least 50 points a stratum, the same strip-by-strip draw), labels it from
the truth and estimates overall accuracy and every class's area as landcover-assess does. It prints, for
each, how often the 95% interval held the true value; a correct interval does so 95% of the time, and with
1000 repetitions the share lies within 93-97% but for chance (the binomial standard error is 0.7%). With
1000 or more repetitions it exits 1 where one does not.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from affine import Affine
from tqdm import tqdm

from landcover.evaluation.area_estimation import ALLOCATIONS, StratifiedSample, assess, cochran_sample_size
from landcover.geo.sampling import CodeRaster, MapFile, Strata, draw_pixels

NAMES = ("urban", "agriculture", "rangeland", "forest", "water", "barren", "wetland")
SIDE = 400
BLOCK = 8
EXPECTED_USERS_ACCURACY = 0.9
TARGET_STANDARD_ERROR = 0.01
MINIMUM = 50
COVERAGE_RANGE = (0.93, 0.97)
ENOUGH_TO_JUDGE = 1000  # repetitions from which a coverage outside the range fails the check


def truth_and_map(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shares = [0.12, 0.2, 0.12, 0.35, 0.1, 0.09, 0.02]
    blocks = rng.choice(len(NAMES), size=(SIDE // BLOCK, SIDE // BLOCK), p=shares)
    truth = blocks.repeat(BLOCK, 0).repeat(BLOCK, 1)
    mapped = truth.copy()
    mapped[(truth == 3) & (rng.random(truth.shape) < 0.25)] = 2
    mapped[(truth == 6) & (rng.random(truth.shape) < 0.1)] = 1
    noise = rng.random(truth.shape) < 0.05
    mapped[noise] = rng.integers(0, len(NAMES), noise.sum())
    return truth, mapped


def in_memory(mapped: np.ndarray) -> CodeRaster:
    """The map as the sampler reads it, from memory."""

    def read(top: int, bottom: int) -> np.ndarray:
        return mapped[top:bottom].astype(np.int16)

    return CodeRaster(
        NAMES, np.zeros((len(NAMES), 3), dtype=np.uint8), np.zeros(len(NAMES), dtype=bool), None,
        Affine.identity(), SIDE, SIDE, (MapFile("map", None),), read,  # type: ignore[arg-type]
    )  # fmt: skip


def coverage(repetitions: int, seed: int = 0, progress: bool = True) -> dict[str, float]:
    """{quantity: share of the repetitions whose 95% interval covered its true value}."""
    truth, mapped = truth_and_map(seed)
    raster = in_memory(mapped)
    pixels = np.bincount(mapped.ravel(), minlength=len(NAMES))
    strata = Strata(NAMES, tuple((code,) for code in range(len(NAMES))))
    weights = pixels / pixels.sum()
    total = cochran_sample_size(weights, [EXPECTED_USERS_ACCURACY] * len(NAMES), TARGET_STANDARD_ERROR)
    sizes = ALLOCATIONS["proportional"](total, pixels, MINIMUM, NAMES)
    true_overall = float((mapped == truth).mean())
    true_areas = np.bincount(truth.ravel(), minlength=len(NAMES)).astype(np.float64)  # in pixels
    covered = {name: 0 for name in ("overall accuracy", *(f"area of {n}" for n in NAMES))}
    for repetition in tqdm(range(repetitions), desc="samples", disable=not progress):
        rows, columns, point_strata = draw_pixels(raster, strata, pixels, sizes, seed + 1 + repetition, False)
        sample = StratifiedSample(weights, point_strata, mapped[rows, columns], truth[rows, columns], len(NAMES))
        result = assess(sample, float(pixels.sum()))
        estimates = [result.overall, *result.areas]
        for name, estimate, true in zip(covered, estimates, [true_overall, *true_areas]):
            covered[name] += abs(estimate.value - true) <= estimate.half_width
    return {name: count / repetitions for name, count in covered.items()} | {"points": float(sizes.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=ENOUGH_TO_JUDGE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shares = coverage(args.repetitions, args.seed)
    points = int(shares.pop("points"))
    print(f"{args.repetitions} samples of {points} points, a {SIDE} x {SIDE} map: 95% intervals that held the truth")
    low, high = COVERAGE_RANGE
    outside = []
    for name, share in shares.items():
        print(f"  {name:<20} {share:6.1%}")
        if not low <= share <= high:
            outside.append(name)
    if outside and args.repetitions >= ENOUGH_TO_JUDGE:
        print(f"outside {low:.0%}-{high:.0%}: {', '.join(outside)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
