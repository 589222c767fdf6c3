"""How often landcover-compare calls two equally good models different, and how wide an interval is for n test images.

    python -m tools.check_paired_comparison [metrics/confusion_per_image.json] [--images 20] [--repetitions 200]

A check, not a timed test. Pairs whose true difference is 0: each simulated test image is one of the file's images
(drawn with replacement), and the two models' confusion matrices of it are two independent draws of the same kind:
each ground-truth row's pixels shared among the predicted classes by a Dirichlet-multinomial around that row's
proportions (per-image differences between the models much larger than pixel noise). A 95% paired interval (the
expanded percentile interval of landcover/evaluation/intervals.py) should call such pairs different about 5% of the
time. It prints that share per headline score, seeded, and then the
95% interval's width of mIoU (land classes) for test splits of several sizes drawn from the file's images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from landcover.evaluation.intervals import paired_comparison, read_region_confusions, score_intervals
from landcover.evaluation.metrics import HEADLINE

CONCENTRATION = 100.0  # the Dirichlet's: smaller makes the two models differ more on each image


def redraw(matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another model's confusion matrix of the same image: each row's pixels shared out anew around its proportions."""
    redrawn = np.zeros_like(matrix)
    for row, counts in enumerate(matrix):
        total = int(counts.sum())
        if total:
            shares = rng.dirichlet(CONCENTRATION * counts / total + 1e-3)
            redrawn[row] = rng.multinomial(total, shares)
    return redrawn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("per_image", nargs="?", type=Path, default=Path("metrics/confusion_per_image.json"))
    parser.add_argument("--images", type=int, default=20, help="test images in each simulated pair")
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    table, regions = read_region_confusions(args.per_image)
    sources = np.array(list(regions.values()))
    rng = np.random.default_rng(2024)
    called = dict.fromkeys(HEADLINE, 0)
    for repetition in range(args.repetitions):
        drawn = sources[rng.integers(0, len(sources), size=args.images)]
        first, second = (np.array([redraw(m, rng) for m in drawn]) for _ in range(2))
        comparison = paired_comparison(first, second, table, seed=repetition, resamples=args.bootstrap)
        for key in HEADLINE:
            called[key] += comparison[key]["verdict"] in ("B better", "B worse")
    print(
        f"{args.repetitions} pairs with a true difference of 0, {args.images} test images each "
        f"(drawn from the {len(sources)} of {args.per_image}), {args.bootstrap} paired resamples:"
    )
    for key, count in called.items():
        print(f"  {key}: called different in {count} ({count / args.repetitions:.1%})")
    print("95% interval width of miou_land for a test split of n images like these (median of 20 draws):")
    for size in (6, 10, 20, 50, 100, 200, 500):
        widths = []
        for draw in range(20):
            split = sources[rng.integers(0, len(sources), size=size)]
            intervals = score_intervals(split, table, seed=draw, resamples=args.bootstrap, unit="images")
            widths.append(intervals["high"]["miou_land"] - intervals["low"]["miou_land"])
        print(f"  n = {size}: {np.median(widths):.3f}")


if __name__ == "__main__":
    main()
