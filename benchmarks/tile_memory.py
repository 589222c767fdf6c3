"""Peak memory and throughput of the tile stage on full-size (2448x2448) images.

The tile stage streams (one image in memory at a time), so its peak memory on 20 images should
be within 20% of its peak on 2. Each measurement runs the stage in a fresh process and reads that
process's own peak RSS. Synthetic 2448 px images are generated once into a cache folder.

    .venv/bin/python benchmarks/tile_memory.py [--images 20] [--cache /tmp/landcover-bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: `stages` is the repository's package
SIZE = 2448  # DeepGlobe's image side
ALLOWED_GROWTH = 1.2

# Runs in the child: tile, then report wall time and this process's peak RSS. VmHWM, not
# getrusage's ru_maxrss: on Linux ru_maxrss survives exec, so a child would report its parent's peak.
CHILD = """
import json, re, sys, time
from pathlib import Path
from stages import tile
start = time.perf_counter()
tile.main(sys.argv[1:])
seconds = time.perf_counter() - start
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb / 1024}))
"""


def ensure_images(cache: Path, count: int) -> Path:
    """`count` synthetic 2448 px pairs in cache/raw (generated once, reused by later runs)."""
    raw = cache / f"raw-{count}"
    if not (raw / "metadata.csv").exists():
        from stages.synthetic.dataset import write_sample

        shutil.rmtree(raw, ignore_errors=True)
        raw.mkdir(parents=True)
        print(f"generating {count} synthetic {SIZE}x{SIZE} images into {raw} (once)...", flush=True)
        write_sample(raw, seed=1, train_images=count, valid_images=0, test_images=0, image_size=SIZE, jpeg_quality=90)
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


def measure(dataset: Path, work: Path, params: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(dataset), str(work / f"tiles-{dataset.name}"), "--params", str(params)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "landcover-bench")
    args = parser.parse_args()

    raw = ensure_images(args.cache, args.images)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        rows = []
        for count in (2, args.images):
            stats = measure(subset(raw, count, work / f"{count}-images"), work, work / "params.yaml")
            megapixels = count * SIZE * SIZE / 1e6
            rows.append((count, stats["peak_rss_mb"], megapixels / stats["seconds"], stats["seconds"]))

    print(f"\ntile stage, {SIZE}x{SIZE} images, tile.size {params['tile']['size']}, stride {params['tile']['stride']}")
    print(f"{'images':>7} {'peak RSS (MB)':>14} {'MP/s':>7} {'seconds':>8}")
    for count, peak, rate, seconds in rows:
        print(f"{count:>7} {peak:>14.0f} {rate:>7.1f} {seconds:>8.1f}")
    growth = rows[1][1] / rows[0][1]
    verdict = "OK" if growth <= ALLOWED_GROWTH else "FAIL"
    print(f"peak memory on {args.images} images is {growth:.2f}x the peak on 2 (allowed {ALLOWED_GROWTH}x): {verdict}")
    sys.exit(0 if verdict == "OK" else 1)


if __name__ == "__main__":
    main()
