"""Peak memory and throughput of the tile stage on full-size (2448x2448) images.

The tile stage streams (one image in memory at a time), so its peak memory on 20 images should
be within 20% of its peak on 2. Each measurement runs the stage in a fresh process and reads that
process's own peak RSS (benchmarks.speed_tiling's measurement). Synthetic 2448 px images are generated
once into a cache folder.

    .venv/bin/python -m benchmarks.tile_memory [--images 20] [--cache /tmp/landcover-bench]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.common import (
    DEFAULT_CACHE,
    IMAGE_SIZE,
    answered_measurement,
    benchmark_parser,
    measure_in_child,
    params,
)
from benchmarks.speed_tiling import measure_tiling

ALLOWED_GROWTH = 1.2
MEASUREMENTS = {"tiling": measure_tiling}


def ensure_images(cache: Path, count: int) -> Path:
    """`count` synthetic 2448 px pairs in cache/raw (generated once, reused by later runs)."""
    raw = cache / f"raw-{count}"
    if not (raw / "metadata.csv").exists():
        from landcover.synthetic.dataset import write_sample

        shutil.rmtree(raw, ignore_errors=True)
        raw.mkdir(parents=True)
        print(f"generating {count} synthetic {IMAGE_SIZE}x{IMAGE_SIZE} images into {raw} (once)...", flush=True)
        write_sample(
            raw, seed=1, train_images=count, valid_images=0, test_images=0, image_size=IMAGE_SIZE, jpeg_quality=90
        )
    return raw


def subset(raw: Path, count: int, folder: Path) -> Path:
    """A plain-folder dataset of the first `count` pairs, as symbolic links."""
    folder.mkdir()
    images = sorted((raw / "train").glob("*_sat.jpg"))[:count]
    for image in images:
        mask = image.with_name(image.name.replace("_sat.jpg", "_mask.png"))
        (folder / image.name).symlink_to(image)
        (folder / mask.name).symlink_to(mask)
    return folder


def measure(dataset: Path, work: Path) -> dict:
    """The tile stage on `dataset` (params.yaml's tile section) in a fresh process: seconds, MP/s, peak RSS."""
    config = {"variant": "stage", "raw": str(dataset), "out": str(work / f"tiles-{dataset.name}")}
    return measure_in_child("benchmarks.tile_memory", "tiling", config)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("benchmarks.tile_memory", __doc__, measures=True)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    if answered_measurement(args, MEASUREMENTS):
        return

    raw = ensure_images(args.cache, args.images)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        rows = []
        for count in (2, args.images):
            stats = measure(subset(raw, count, work / f"{count}-images"), work)
            rows.append((count, stats["peak_rss_mb"], stats["mp_per_second"], stats["seconds"]))

    tile = params()["tile"]
    print(f"\ntile stage, {IMAGE_SIZE}x{IMAGE_SIZE} images, tile.size {tile['size']}, stride {tile['stride']}")
    print(f"{'images':>7} {'peak RSS (MB)':>14} {'MP/s':>7} {'seconds':>8}")
    for count, peak, rate, seconds in rows:
        print(f"{count:>7} {peak:>14.0f} {rate:>7.1f} {seconds:>8.1f}")
    growth = rows[1][1] / rows[0][1]
    verdict = "OK" if growth <= ALLOWED_GROWTH else "FAIL"
    print(f"peak memory on {args.images} images is {growth:.2f}x the peak on 2 (allowed {ALLOWED_GROWTH}x): {verdict}")
    sys.exit(0 if verdict == "OK" else 1)


if __name__ == "__main__":
    main()
